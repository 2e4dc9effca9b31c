//! Cross-node wake-ups over PostgreSQL `LISTEN/NOTIFY` (STYLE: "queue in the database").
//!
//! Writers hand a `Notifier` a hint once the transaction that made work available (a run
//! queued, a live run ended and its capacity freed) has committed; one task sends the hints
//! gathered meanwhile, each distinct one once. Each dispatcher holds one listening connection
//! of its own (outside the pool: a pooled connection would be handed to other requests) and
//! turns the payloads into `WorkHint`s. Hints only make dispatch prompt: the dispatcher still
//! polls and re-reads the queue counts, so a hint lost (the listener reconnecting, the process
//! stopping between a commit and its hint) delays work, never loses it.
//!
//! Why not NOTIFY inside the writing transaction: PostgreSQL takes one lock for the whole
//! database cluster at the commit of every transaction that notified, and holds it through
//! that commit's WAL flush, so those transactions committed one after another, one flush each
//! (measured: ~1 300 triggers/s at most on the benchmark machine, the rest of the time spent
//! waiting on that lock).

use crate::db::exec;
use callgate_store::{ConfigId, OrgId, WorkHint};
use deadpool_postgres::Pool;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_postgres::{AsyncMessage, NoTls};

/// The notification channel every node listens on.
const CHANNEL: &str = "callgate_work";
/// First and longest wait before reconnecting a dropped listener.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often an idle listener checks that its connection still answers: a server that
/// vanished without closing the socket would otherwise leave it deaf until TCP gives up.
const PROBE_EVERY: Duration = Duration::from_secs(15);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most hints one notifying statement carries.
const MAX_HINTS: usize = 1024;

/// Sends work hints to every node, after the writes they announce have committed.
#[derive(Clone)]
pub struct Notifier {
    tx: UnboundedSender<(ConfigId, OrgId)>,
}

impl Notifier {
    /// Starts the sending task on `pool`; it ends when every clone of this is dropped.
    pub fn start(pool: Pool) -> Self {
        let (tx, rx) = unbounded_channel();
        tokio::spawn(send_hints(pool, rx));
        Self { tx }
    }

    /// Work is available on `config` of `org`: call after the commit that made it so.
    pub fn work_available(&self, config: ConfigId, org: OrgId) {
        // The task only ends when this sender is gone.
        let _ = self.tx.send((config, org));
    }
}

/// Sends what gathered while the previous statement ran, duplicates folded, in one
/// transaction of its own.
async fn send_hints(pool: Pool, mut rx: UnboundedReceiver<(ConfigId, OrgId)>) {
    let mut batch = Vec::with_capacity(MAX_HINTS);
    while rx.recv_many(&mut batch, MAX_HINTS).await > 0 {
        let mut payloads: Vec<String> = batch
            .drain(..)
            .map(|(config, org)| format!("{config}:{org}"))
            .collect();
        payloads.sort_unstable();
        payloads.dedup();
        let sent = match pool.get().await {
            Ok(c) => exec(
                &c,
                "SELECT pg_notify('callgate_work', p) FROM unnest($1::text[]) AS p",
                &[&payloads],
            )
            .await
            .map(|_| ()),
            Err(e) => Err(crate::util::pool_err(e)),
        };
        if let Err(e) = sent {
            // The other nodes find the work at their next poll.
            tracing::warn!(error = %e, hints = payloads.len(), "work hints not sent");
        }
    }
}

/// Starts the listener task; it ends when the receiver is dropped.
pub fn spawn_listener(config: tokio_postgres::Config) -> UnboundedReceiver<WorkHint> {
    let (tx, rx) = unbounded_channel();
    tokio::spawn(listen_forever(config, tx));
    rx
}

async fn listen_forever(config: tokio_postgres::Config, tx: UnboundedSender<WorkHint>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        match listen_once(&config, &tx).await {
            Stop::ReceiverGone => return,
            Stop::Lost(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "work notification listener lost its connection; polling meanwhile");
            }
        }
        // A connection that lived a while was healthy: start the backoff over.
        if started.elapsed() > MAX_BACKOFF {
            backoff = MIN_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Stop {
    ReceiverGone,
    Lost(String),
}

/// One listening connection, until it fails or nobody listens to the hints any more.
async fn listen_once(config: &tokio_postgres::Config, tx: &UnboundedSender<WorkHint>) -> Stop {
    // The driver's `connect_timeout` covers only the TCP connect, not a server that accepts
    // and then never answers.
    let budget = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(PROBE_TIMEOUT);
    let (client, mut connection) = match tokio::time::timeout(budget, config.connect(NoTls)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Stop::Lost(e.to_string()),
        Err(_) => return Stop::Lost(format!("no answer within {budget:?}")),
    };
    // The connection must be polled for the client's statements to complete, and polling it
    // through `poll_message` is what surfaces notifications; a task does both and hands the
    // notifications over.
    let (msg_tx, mut msg_rx) = unbounded_channel::<Result<String, String>>();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if msg_tx.send(Ok(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                // Notices (e.g. server warnings) carry nothing for the dispatcher.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = msg_tx.send(Err(e.to_string()));
                    return;
                }
                None => {
                    let _ = msg_tx.send(Err("connection closed".to_owned()));
                    return;
                }
            }
        }
    });
    let stop = async {
        // The channel name is a constant, so it needs no quoting.
        let listen = format!("LISTEN {CHANNEL}");
        match tokio::time::timeout(PROBE_TIMEOUT, client.batch_execute(&listen)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Stop::Lost(e.to_string()),
            Err(_) => return Stop::Lost("LISTEN got no answer".to_owned()),
        }
        tracing::debug!("listening for work notifications");
        let mut probe =
            tokio::time::interval_at(tokio::time::Instant::now() + PROBE_EVERY, PROBE_EVERY);
        loop {
            tokio::select! {
                m = msg_rx.recv() => match m {
                    Some(Ok(payload)) => match parse(&payload) {
                        Some(hint) => {
                            if tx.send(hint).is_err() {
                                return Stop::ReceiverGone;
                            }
                        }
                        None => tracing::debug!(%payload, "ignoring a malformed work notification"),
                    },
                    Some(Err(e)) => return Stop::Lost(e),
                    None => return Stop::Lost("connection task ended".to_owned()),
                },
                _ = probe.tick() => {
                    match tokio::time::timeout(PROBE_TIMEOUT, client.simple_query("")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Stop::Lost(e.to_string()),
                        Err(_) => return Stop::Lost("the server stopped answering".to_owned()),
                    }
                }
                _ = tx.closed() => return Stop::ReceiverGone,
            }
        }
    }
    .await;
    drop(client);
    driver.abort();
    stop
}

/// `"<config_id>:<org_id>"`.
fn parse(payload: &str) -> Option<WorkHint> {
    let (config, org) = payload.split_once(':')?;
    Some(WorkHint {
        config_id: config.parse().ok()?,
        org_id: org.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;
    use callgate_store::WorkHint;

    #[test]
    fn payloads_are_config_then_organisation_and_anything_else_is_ignored() {
        assert_eq!(
            parse("12:3"),
            Some(WorkHint {
                config_id: 12,
                org_id: 3
            })
        );
        assert_eq!(parse("12"), None);
        assert_eq!(parse("a:3"), None);
        assert_eq!(parse("1:2:3"), None);
    }
}

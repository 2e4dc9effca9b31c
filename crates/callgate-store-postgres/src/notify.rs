//! Cross-node wake-ups over PostgreSQL `LISTEN/NOTIFY` (STYLE: "queue in the database").
//!
//! Writers call `notify_work` inside the transaction that makes work available (a run queued,
//! a live run ended and its capacity freed); PostgreSQL delivers the notification at commit, and
//! drops it on rollback. Each dispatcher holds one listening connection of its own (outside the
//! pool: a pooled connection would be handed to other requests) and turns the payloads into
//! `WorkHint`s. Hints only make dispatch prompt: the dispatcher still polls and re-reads the
//! queue counts, so a hint lost while the listener reconnects delays work, never loses it.

use crate::db::exec;
use callgate_store::{ConfigId, OrgId, StoreResult, WorkHint};
use deadpool_postgres::GenericClient;
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

/// Queues a wake-up for the nodes, sent when the caller's transaction commits (PostgreSQL also
/// folds identical payloads of one transaction into one notification).
pub async fn notify_work<C: GenericClient>(c: &C, config: ConfigId, org: OrgId) -> StoreResult<()> {
    exec(
        c,
        "SELECT pg_notify('callgate_work', $1)",
        &[&format!("{config}:{org}")],
    )
    .await
    .map(|_| ())
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

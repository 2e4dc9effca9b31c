//! The dispatcher (SPEC §8.2, §8.3): claims queued runs oldest first, per configuration, as
//! soon as the configuration's pacing and concurrency and the organisation's concurrency
//! allow, and dials them. The claim (status `dialing`, lease, event) is committed before the
//! provider hears of the call, so a crash can never cause a blind second dial.

use crate::app::AppState;
use callgate_domain::lifecycle::{CallSignal, Outcome};
use callgate_store::{ClaimLimits, ClaimedRun, ConfigId, RunUpdate, TelephonyConfig};
use callgate_telephony::{DialError, DialRequest, ProviderEvent};
use foldhash::{HashMap, HashMapExt};
use jiff::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most runs claimed for one configuration in one pass.
const MAX_CLAIM: u32 = 256;
/// How often the queue bookkeeping is re-read from the database, at most.
const RESYNC: Duration = Duration::from_secs(5);
/// The re-read counts every queued run, so its cost grows with the backlog (~80 ms on three
/// PostgreSQL processes for 1 000 000 queued runs); waiting this many times its last duration
/// keeps it to a small share of a CPU on every node however large the backlog grows.
const RESYNC_SPACING: u32 = 20;
/// Poll even without a wake-up, as a safety net (e.g. limits raised by another node).
const POLL: Duration = Duration::from_millis(250);

/// Per configuration, when its pacing next allows a dial (as its last claim said, on the
/// injected clock) and the rate that was for. Until then a claim could only find that out
/// again, and on PostgreSQL it does so under the organisation's row lock after counting the
/// due runs, holding up the claims of the organisation's other configurations. Other nodes'
/// claims can only move the next slot later, so waiting for it never dials late; a changed
/// rate starts a new schedule, so it ends the wait.
type PacedUntil = HashMap<ConfigId, (Timestamp, f64)>;

/// When to re-read the queue bookkeeping after a re-read that took `took`, at most every
/// `base`.
fn resync_interval(base: Duration, took: Duration) -> Duration {
    base.max(took.saturating_mul(RESYNC_SPACING))
}

/// How often a node without a dispatcher (`--role api`) re-reads the queue bookkeeping, at
/// most. It counts the runs it accepts as queued and nothing of its own ever lowers that
/// count: the worker nodes claim and end them. Its capacity check (SPEC §2.3 #21) sees the
/// other nodes' progress only through this re-read, so it is kept short; the spacing rule of
/// `resync_interval` still bounds its cost on a large backlog.
const API_NODE_RESYNC: Duration = Duration::from_secs(1);

/// The bookkeeping of a node that takes triggers but dials nothing: the counts of queued and
/// live runs, re-read from the database until `stop`.
pub async fn keep_counts(state: Arc<AppState>, stop: Arc<Notify>) {
    let mut wait = API_NODE_RESYNC;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.notified() => return,
        }
        let started = Instant::now();
        match state.store.queue_counts().await {
            Ok(counts) => state.capacity.seed(&counts),
            Err(e) => tracing::warn!(error = %e, "cannot re-read the queue counts"),
        }
        wait = resync_interval(API_NODE_RESYNC, started.elapsed());
    }
}

pub async fn run(state: Arc<AppState>, stop: Arc<Notify>) {
    let mut hints = state.store.work_hints();
    let mut rotation = 0usize;
    let mut last_resync = Instant::now();
    let resyncing = Arc::new(AtomicBool::new(false));
    let resync_every_ms = Arc::new(AtomicU64::new(millis(RESYNC)));
    let mut paced = PacedUntil::new();
    loop {
        if !state.accepting.load(Ordering::SeqCst) {
            return;
        }
        // Other nodes' queues and cancelled work: re-read the counts now and then, on a task of
        // its own. Counting a large, busy runs table can take longer than the pacing catch-up
        // allowance (250 ms), and the claims must not wait for it.
        let resync_every = Duration::from_millis(resync_every_ms.load(Ordering::Relaxed));
        if last_resync.elapsed() >= resync_every && !resyncing.swap(true, Ordering::SeqCst) {
            let (state, resyncing) = (state.clone(), resyncing.clone());
            let resync_every_ms = resync_every_ms.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                if let Ok(counts) = state.store.queue_counts().await {
                    state.capacity.seed(&counts);
                    state.dispatch.notify_one();
                }
                let next = resync_interval(RESYNC, started.elapsed());
                resync_every_ms.store(millis(next), Ordering::Relaxed);
                resyncing.store(false, Ordering::SeqCst);
            });
            last_resync = Instant::now();
        }
        let mut next_wake = Instant::now() + POLL;
        let mut work: Vec<(ConfigId, i64)> = state
            .capacity
            .with(|c| {
                c.queued_by_config
                    .iter()
                    .filter(|(_, (_, n))| *n > 0)
                    .map(|(cfg, (org, _))| (*cfg, *org))
                    .chain(c.look_again.iter().map(|(cfg, org)| (*cfg, *org)))
                    .collect()
            })
            .unwrap_or_default();
        crate::metrics::queue_depth(state.capacity.total_queued());
        work.sort_unstable();
        work.dedup();
        // Start each pass at a different configuration so no organisation always goes first.
        if !work.is_empty() {
            rotation = rotation.wrapping_add(1);
            let len = work.len();
            work.rotate_left(rotation % len);
        }
        let pass_started = state.clock.now();
        paced.retain(|_, (until, _)| *until > pass_started);
        for (config_id, org_id) in work {
            if let Some(at) = dispatch_config(&state, config_id, org_id, &mut paced).await {
                next_wake = next_wake.min(at);
            }
        }
        tokio::select! {
            _ = state.dispatch.notified() => {}
            Some(h) = next_hint(&mut hints) => {
                state.capacity.hinted(h.org_id, h.config_id);
                // A burst of hints (every trigger on every node sends one) is one pass, not
                // one pass per hint.
                if let Some(rx) = hints.as_mut() {
                    while let Ok(h) = rx.try_recv() {
                        state.capacity.hinted(h.org_id, h.config_id);
                    }
                }
            }
            _ = tokio::time::sleep_until(next_wake.into()) => {}
            _ = stop.notified() => return,
        }
    }
}

async fn next_hint(
    hints: &mut Option<tokio::sync::mpsc::UnboundedReceiver<callgate_store::WorkHint>>,
) -> Option<callgate_store::WorkHint> {
    match hints {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// One paced claim for a configuration; returns when pacing allows the next dial.
async fn dispatch_config(
    state: &Arc<AppState>,
    config_id: ConfigId,
    org_id: i64,
    paced: &mut PacedUntil,
) -> Option<Instant> {
    let cfg = state.catalog.config_any(config_id).await.ok()?;
    if let Some(&(until, rate)) = paced.get(&config_id)
        && rate == cfg.calls_per_second
        && state.clock.now() < until
    {
        return Some(instant_at(state, until));
    }
    let org = state.catalog.org(org_id).await.ok()?;
    let limits = ClaimLimits {
        org_max_live: org.settings.max_concurrent_calls,
        config_max_live: cfg.max_concurrent_calls,
        calls_per_second: cfg.calls_per_second,
        max_batch: MAX_CLAIM,
    };
    // Read before the clock: a run announced before this has `scheduled_for` ≤ `now` and
    // was committed before the claim, so the claim sees it.
    let arrivals = state.capacity.arrivals();
    let now = state.clock.now();
    let claim = match state
        .store
        .claim_paced(config_id, org_id, &limits, &state.config.node_id, now)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, config_id, "claiming runs failed; will retry");
            return None;
        }
    };
    state
        .capacity
        .dialled(org_id, config_id, claim.runs.len() as i64);
    if claim.drained && state.capacity.arrivals() == arrivals {
        state.capacity.drained(org_id, config_id);
    } else if !claim.drained && !claim.runs.is_empty() {
        // Cut short by pacing or capacity: more may be queued than the counts say.
        state.capacity.keep_looking(org_id, config_id);
    }
    if !claim.runs.is_empty() {
        // One client per pass, shared by its dials: opening the credentials is not free.
        let provider = provider_for(state, &cfg);
        for run in claim.runs {
            let latency = now.duration_since(run.created_at);
            crate::metrics::dispatch_latency(latency.as_secs_f64().max(0.0));
            tokio::spawn(dial(state.clone(), provider.clone(), run));
        }
    }
    match claim.retry_at {
        Some(at) => paced.insert(config_id, (at, cfg.calls_per_second)),
        None => paced.remove(&config_id),
    };
    claim.retry_at.map(|at| instant_at(state, at))
}

/// The monotonic instant the dispatcher sleeps until for a time on the injected clock.
fn instant_at(state: &AppState, at: Timestamp) -> Instant {
    let wait = at.duration_since(state.clock.now()).as_secs_f64().max(0.0);
    Instant::now() + Duration::from_secs_f64(wait)
}

fn ended(outcome: Outcome, reason: &str, error: String, state: &AppState) -> RunUpdate {
    let mut u = RunUpdate::new(
        CallSignal::Ended {
            outcome,
            reason: reason.to_owned(),
        },
        state.clock.now(),
    );
    u.error = Some(error);
    u
}

/// Counts a dial as in flight for as long as it lives.
struct InFlightDial(Arc<AppState>);

impl InFlightDial {
    fn new(state: Arc<AppState>) -> Self {
        state.dials_in_flight.fetch_add(1, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InFlightDial {
    fn drop(&mut self) {
        self.0.dials_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Dials a run the store claimed as it was written (`RunStore::enqueue_or_claim`), as a
/// dispatcher pass would have.
pub async fn dial_claimed(state: &Arc<AppState>, run: &callgate_store::Run) {
    state.capacity.dialled_direct(run.org_id, run.config_id);
    let latency = run
        .dialed_at
        .map(|d| d.duration_since(run.created_at).as_secs_f64().max(0.0))
        .unwrap_or(0.0);
    crate::metrics::dispatch_latency(latency);
    let claimed = ClaimedRun {
        id: run.id,
        call_id: run.call_id,
        org_id: run.org_id,
        config_id: run.config_id,
        phone_number: run.phone_number.clone(),
        from_number: run.from_number.clone(),
        greeting: run.greeting.clone(),
        created_at: run.created_at,
        attempt: run.attempt,
    };
    let provider = match state.catalog.config_any(run.config_id).await {
        Ok(cfg) => provider_for(state, &cfg),
        Err(e) => Err(format!("telephony configuration unavailable: {e}")),
    };
    tokio::spawn(dial(state.clone(), provider, claimed));
}

/// The configuration's provider client, or why there is none. Built once per configuration
/// and version of its credentials: opening them is not free.
pub(crate) fn provider_for(
    state: &AppState,
    cfg: &TelephonyConfig,
) -> Result<Arc<dyn callgate_telephony::Telephony>, String> {
    if let Ok(cache) = state.providers.lock()
        && let Some((sealed, p)) = cache.get(&cfg.id)
        && *sealed == cfg.credentials_sealed
    {
        return Ok(p.clone());
    }
    let built = build_provider(state, cfg)?;
    if let Ok(mut cache) = state.providers.lock() {
        cache.insert(cfg.id, (cfg.credentials_sealed.clone(), built.clone()));
    }
    Ok(built)
}

fn build_provider(
    state: &AppState,
    cfg: &TelephonyConfig,
) -> Result<Arc<dyn callgate_telephony::Telephony>, String> {
    let credentials = state
        .sealer
        .open(&cfg.credentials_sealed)
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    callgate_telephony::build(
        &cfg.provider,
        &credentials,
        state.clock.clone(),
        state.events.clone(),
        state.simulated.clone(),
    )
}

/// Sends the dial request; transient errors are retried within the attempt (SPEC §8.3).
async fn dial(
    state: Arc<AppState>,
    provider: Result<Arc<dyn callgate_telephony::Telephony>, String>,
    run: ClaimedRun,
) {
    let _in_flight = InFlightDial::new(state.clone());
    // SPEC §9: the balance may go below zero by the calls already live when it ran out, never
    // more. A run still queued then was claimed here but is not dialled; it ends failed
    // (SPEC §2.3, a quota race). The organisation is read through the cache, which drops it at
    // every call end of this node (other nodes' call ends show within the cache's TTL).
    if let Ok(org) = state.catalog.org(run.org_id).await
        && org.quota_seconds_remaining.is_some_and(|q| q <= 0)
    {
        finish_failed(
            &state,
            run.id,
            "quota_exhausted",
            crate::trigger::QUOTA_EXHAUSTED.to_owned(),
        );
        return;
    }
    let provider = match provider {
        Ok(p) => p,
        Err(message) => {
            finish_failed(&state, run.id, "provider_error", message);
            return;
        }
    };
    let req = DialRequest {
        run_id: run.id,
        call_id: run.call_id,
        to: run.phone_number.clone(),
        from: run.from_number.clone(),
        greeting: run.greeting.clone(),
    };
    let mut backoff = Duration::from_millis(250);
    let mut tries = 0;
    loop {
        tries += 1;
        match provider.dial(req.clone()).await {
            Ok(d) => {
                if !d.id_in_events {
                    let mut u = RunUpdate::new(CallSignal::Dialing, state.clock.now());
                    u.provider_call_id = Some(d.provider_call_id);
                    let _ = state.events.send(ProviderEvent {
                        run_id: run.id,
                        update: u,
                    });
                }
                state.dial_settled(run.id, Ok(()));
                return;
            }
            Err(DialError::Transient(m)) if tries < 4 => {
                tracing::warn!(run_id = run.id, tries, message = %m, "transient dial error; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 4;
            }
            Err(DialError::Transient(m)) => {
                finish_failed(&state, run.id, "provider_error", m);
                return;
            }
            Err(DialError::Rejected(m)) => {
                finish_failed(&state, run.id, "provider_error", m);
                return;
            }
        }
    }
}

fn finish_failed(state: &AppState, run_id: i64, reason: &str, message: String) {
    let _ = state.events.send(ProviderEvent {
        run_id,
        update: ended(Outcome::Failed, reason, message.clone(), state),
    });
    state.dial_settled(run_id, Err(message));
}

/// How long a node may stay silent before its live runs are treated as orphans.
pub const NODE_STALE: Duration = Duration::from_secs(10);

/// Settles runs left live by a node that stopped (a crash, or this process before a restart).
/// The simulator cannot resume a call another process was playing, and a run whose dial
/// request may have left is never dialled again blindly (SPEC §8.3): it ends as `failed` with
/// `dial_unknown` (or `provider_timeout` once the call was ringing or answered).
pub async fn reap_orphans(state: &AppState) {
    let orphans = match state.store.orphaned_runs(stale_before(state)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list orphaned runs");
            return;
        }
    };
    settle_orphans(state, orphans);
}

/// A node last heard from before this instant counts as stopped.
fn stale_before(state: &AppState) -> jiff::Timestamp {
    state.clock.now()
        - jiff::SignedDuration::try_from(NODE_STALE).unwrap_or(jiff::SignedDuration::ZERO)
}

/// How often a running node heartbeats (the maintenance loop's tick).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Takes this node's id before the node dispatches anything: refuses an id another running
/// process holds, then settles the runs an earlier process under this id left live.
///
/// A heartbeat of this id younger than `NODE_STALE` is either this process's predecessor,
/// stopped moments ago (a quick restart), or a running peer given the same id by mistake.
/// A running peer heartbeats every second, so the id is read again a few heartbeats later:
/// had it moved, this node would settle the peer's live calls as its own leftovers and both
/// would keep each other's leases alive, so it does not start. Any store error here stops
/// the start too: a node that could not settle its predecessor's calls would leave them live
/// for good (the reaper never takes the runs of an id that heartbeats).
pub async fn take_node_id(state: &AppState) -> Result<(), String> {
    let id = &state.config.node_id;
    let read = || async {
        state
            .store
            .node_last_seen(id)
            .await
            .map_err(|e| format!("cannot read the heartbeat of node id {id}: {e}"))
    };
    let seen = read().await?;
    // Not stale by the reaper's measure: the id may belong to a running process.
    if seen.is_some_and(|t| t >= stale_before(state)) {
        tokio::time::sleep(HEARTBEAT * 5 / 2).await;
        if read().await? != seen {
            return Err(format!(
                "node id {id} is in use: another running process heartbeats under it; \
                 give each process its own id (--node-id or CALLGATE_NODE_ID)"
            ));
        }
    }
    let runs = state
        .store
        .runs_leased_to(id)
        .await
        .map_err(|e| format!("cannot list the runs an earlier process left live: {e}"))?;
    settle_orphans(state, runs);
    Ok(())
}

fn settle_orphans(state: &AppState, orphans: Vec<(i64, String)>) {
    for (run_id, status) in orphans {
        let reason = if status == "dialing" {
            "dial_unknown"
        } else {
            "provider_timeout"
        };
        tracing::warn!(run_id, %status, "settling a run whose node stopped");
        let _ = state.events.send(ProviderEvent {
            run_id,
            update: ended(
                Outcome::Failed,
                reason,
                "the node handling this call stopped; its outcome is unknown".into(),
                state,
            ),
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_re_read_waits_longer_as_it_takes_longer() {
        assert_eq!(resync_interval(RESYNC, Duration::ZERO), RESYNC);
        assert_eq!(resync_interval(RESYNC, Duration::from_millis(80)), RESYNC);
        assert_eq!(resync_interval(RESYNC, Duration::from_millis(250)), RESYNC);
        assert_eq!(
            resync_interval(RESYNC, Duration::from_millis(800)),
            Duration::from_secs(16)
        );
        assert_eq!(
            resync_interval(RESYNC, Duration::from_secs(3)),
            Duration::from_secs(60)
        );
        assert_eq!(resync_interval(RESYNC, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn a_node_without_a_dispatcher_re_reads_the_counts_every_second_unless_that_is_slow() {
        assert_eq!(
            resync_interval(API_NODE_RESYNC, Duration::ZERO),
            API_NODE_RESYNC
        );
        assert_eq!(
            resync_interval(API_NODE_RESYNC, Duration::from_millis(50)),
            API_NODE_RESYNC
        );
        assert_eq!(
            resync_interval(API_NODE_RESYNC, Duration::from_millis(200)),
            Duration::from_secs(4)
        );
    }
}

//! The dispatcher (SPEC §8.2, §8.3): claims queued runs oldest first, per configuration, as
//! soon as the configuration's pacing and concurrency and the organisation's concurrency
//! allow, and dials them. The claim (status `dialing`, lease, event) is committed before the
//! provider hears of the call, so a crash can never cause a blind second dial.

use crate::app::AppState;
use callgate_domain::lifecycle::{CallSignal, Outcome};
use callgate_domain::pacing::Pacer;
use callgate_store::{ClaimedRun, ConfigId, RunUpdate, TelephonyConfig};
use callgate_telephony::{DialError, DialRequest, ProviderEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most runs claimed for one configuration in one pass.
const MAX_CLAIM: i64 = 256;
/// Poll even without a wake-up, as a safety net (e.g. limits raised by another node).
const POLL: Duration = Duration::from_millis(250);

pub async fn run(state: Arc<AppState>, stop: Arc<Notify>) {
    recover(&state).await;
    let epoch = Instant::now();
    let mut pacers: HashMap<ConfigId, (f64, Pacer)> = HashMap::new();
    let mut rotation = 0usize;
    loop {
        if !state.accepting.load(Ordering::SeqCst) {
            return;
        }
        let mut next_wake = Instant::now() + POLL;
        let mut work: Vec<(ConfigId, i64, i64)> = state
            .capacity
            .with(|c| {
                c.queued_by_config
                    .iter()
                    .filter(|(_, (_, n))| *n > 0)
                    .map(|(cfg, (org, n))| (*cfg, *org, *n))
                    .collect()
            })
            .unwrap_or_default();
        crate::metrics::queue_depth(state.capacity.total_queued());
        work.sort_unstable();
        // Start each pass at a different configuration so no organisation always goes first.
        if !work.is_empty() {
            rotation = rotation.wrapping_add(1);
            let len = work.len();
            work.rotate_left(rotation % len);
        }
        for (config_id, org_id, queued) in work {
            let Ok(cfg) = state.catalog.config_any(config_id).await else {
                continue;
            };
            let Ok(org) = state.catalog.org(org_id).await else {
                continue;
            };
            let (live_org, live_cfg) = state
                .capacity
                .with(|c| {
                    (
                        c.live_by_org.get(&org_id).copied().unwrap_or(0),
                        c.live_by_config.get(&config_id).copied().unwrap_or(0),
                    )
                })
                .unwrap_or((0, 0));
            let mut free = (i64::from(org.settings.max_concurrent_calls) - live_org)
                .min(queued)
                .min(MAX_CLAIM);
            if let Some(max) = cfg.max_concurrent_calls {
                free = free.min(i64::from(max) - live_cfg);
            }
            if free <= 0 {
                continue;
            }
            let entry = pacers
                .entry(config_id)
                .or_insert_with(|| (cfg.calls_per_second, Pacer::new(cfg.calls_per_second)));
            if entry.0 != cfg.calls_per_second {
                *entry = (cfg.calls_per_second, Pacer::new(cfg.calls_per_second));
            }
            let now_ns = epoch.elapsed().as_nanos() as i128;
            let mut slots = 0i64;
            while slots < free {
                match entry.1.try_take(now_ns) {
                    Ok(()) => slots += 1,
                    Err(at_ns) => {
                        let at = epoch + Duration::from_nanos(at_ns.max(0) as u64);
                        next_wake = next_wake.min(at);
                        break;
                    }
                }
            }
            if slots == 0 {
                continue;
            }
            let claimed = match state
                .store
                .claim_runs(
                    config_id,
                    slots as u32,
                    &state.config.node_id,
                    state.clock.now(),
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, config_id, "claiming runs failed; will retry");
                    continue;
                }
            };
            state
                .capacity
                .dialled(org_id, config_id, claimed.len() as i64);
            if (claimed.len() as i64) < slots {
                state.capacity.drained(org_id, config_id);
            }
            for run in claimed {
                let latency = state.clock.now().duration_since(run.created_at);
                crate::metrics::dispatch_latency(latency.as_secs_f64().max(0.0));
                tokio::spawn(dial(state.clone(), cfg.clone(), run));
            }
        }
        tokio::select! {
            _ = state.dispatch.notified() => {}
            _ = tokio::time::sleep_until(next_wake.into()) => {}
            _ = stop.notified() => return,
        }
    }
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

/// Sends the dial request; transient errors are retried within the attempt (SPEC §8.3).
async fn dial(state: Arc<AppState>, cfg: Arc<TelephonyConfig>, run: ClaimedRun) {
    let credentials = state
        .sealer
        .open(&cfg.credentials_sealed)
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    let provider = match callgate_telephony::build(
        &cfg.provider,
        &credentials,
        state.clock.clone(),
        state.events.clone(),
    ) {
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
                let mut u = RunUpdate::new(CallSignal::Dialing, state.clock.now());
                u.provider_call_id = Some(d.provider_call_id);
                let _ = state.events.send(ProviderEvent {
                    run_id: run.id,
                    update: u,
                });
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

/// Runs left live by a previous process. The simulator cannot resume a call it was playing,
/// and a run whose dial request may have left is never dialled again blindly (SPEC §8.3).
async fn recover(state: &AppState) {
    let live = match state.store.live_runs().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list live runs at start");
            return;
        }
    };
    for (run_id, status) in live {
        let reason = if status == "dialing" {
            "dial_unknown"
        } else {
            "provider_timeout"
        };
        let _ = state.events.send(ProviderEvent {
            run_id,
            update: ended(
                Outcome::Failed,
                reason,
                "callgate restarted while this call was live; its outcome is unknown".into(),
                state,
            ),
        });
    }
}

//! Applies provider events to runs in batches (one transaction per batch with group commit),
//! in arrival order, and keeps the capacity bookkeeping and metrics in step.

use crate::app::AppState;
use callgate_domain::lifecycle::RunStatus;
use callgate_store::{AppliedUpdate, RunId, RunUpdate, StoreError, StoreResult};
use callgate_telephony::ProviderEvent;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events applied per store call. One task applies every call's events, and while a trigger
/// load keeps every worker busy it gets a turn only after the other ready tasks (at 256
/// connections on one worker, roughly each connection's request in between): with 512 per
/// turn it fell behind the three events each trigger brings, and runs waiting for their
/// first event piled up in memory (RSS peak 202 MiB against 67 MiB with 4 096;
/// docs/benchmarks.md, "Twelfth round"). Batches are only this large while events wait.
const MAX_BATCH: usize = 4096;

pub async fn run(state: Arc<AppState>, mut rx: mpsc::UnboundedReceiver<ProviderEvent>) {
    // Grows to the largest backlog met, not to MAX_BATCH up front.
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let updates: Updates = batch.drain(..).map(|e| (e.run_id, e.update)).collect();
        let results = apply_all(Arc::clone(&updates), |u| {
            let store = Arc::clone(&state.store);
            async move { store.apply_updates(u).await }
        })
        .await;
        for ((run_id, _), r) in updates.iter().zip(results) {
            match r {
                Ok(a) if a.changed && a.after == RunStatus::Ended => {
                    state.capacity.ended(a.org_id, a.config_id, a.before);
                    if let Some(o) = a.outcome {
                        crate::metrics::run_ended(o.as_str());
                    }
                    state.catalog.call_ended(a.org_id);
                    state.dispatch.notify_one();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(run_id, error = %e, "call event not applied"),
            }
        }
    }
}

type Updates = Arc<[(RunId, RunUpdate)]>;
type Applied = StoreResult<Vec<StoreResult<AppliedUpdate>>>;

/// Applies a batch and answers one result per update, in order. A single update the store
/// refuses comes back as its own error; when the batch fails as a whole (its transaction did
/// not commit), its updates are applied again one at a time, so that one update the store
/// cannot take does not take the others with it (a run left unended would hold its
/// organisation's concurrency slot until a restart).
async fn apply_all<F, Fut>(updates: Updates, apply: F) -> Vec<StoreResult<AppliedUpdate>>
where
    F: Fn(Updates) -> Fut,
    Fut: Future<Output = Applied>,
{
    let whole = match apply_held(Arc::clone(&updates), &apply).await {
        Ok(results) => return results,
        Err(e) => e,
    };
    if updates.len() == 1 {
        return vec![Err(whole)];
    }
    tracing::error!(error = %whole, updates = updates.len(), "a batch of call events failed; applying them one at a time");
    let mut results = Vec::with_capacity(updates.len());
    for one in updates.iter() {
        let result = match apply_held(Arc::from([one.clone()]), &apply).await {
            Ok(mut r) => r
                .pop()
                .unwrap_or_else(|| Err(StoreError::Internal("no result for a call event".into()))),
            Err(e) => Err(e),
        };
        results.push(result);
    }
    results
}

/// Applies updates, holding them while the database is unavailable: nothing is lost.
async fn apply_held<F, Fut>(updates: Updates, apply: &F) -> Applied
where
    F: Fn(Updates) -> Fut,
    Fut: Future<Output = Applied>,
{
    loop {
        match apply(Arc::clone(&updates)).await {
            Err(StoreError::Unavailable(m)) => {
                tracing::warn!(message = %m, "database unavailable; holding call events");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_domain::lifecycle::CallSignal;
    use std::sync::Mutex;

    fn update(id: i64) -> (RunId, RunUpdate) {
        let at = jiff::Timestamp::from_second(1_800_000_000).expect("time");
        (id, RunUpdate::new(CallSignal::Ringing, at))
    }

    fn applied(id: RunId) -> AppliedUpdate {
        AppliedUpdate {
            run_id: id,
            org_id: 1,
            config_id: 1,
            before: RunStatus::Dialing,
            after: RunStatus::Ringing,
            changed: true,
            outcome: None,
        }
    }

    /// A store whose transaction fails whenever it holds run 3; every call is recorded.
    fn store_failing_on_3(calls: &Mutex<Vec<Vec<i64>>>, u: Updates) -> Applied {
        let ids: Vec<i64> = u.iter().map(|(id, _)| *id).collect();
        calls.lock().expect("lock").push(ids.clone());
        if ids.contains(&3) {
            return Err(StoreError::Internal("constraint failed".into()));
        }
        Ok(u.iter().map(|(id, _)| Ok(applied(*id))).collect())
    }

    #[tokio::test]
    async fn a_batch_that_fails_whole_is_applied_one_update_at_a_time() {
        let calls = Mutex::new(Vec::new());
        let updates: Updates = (1..=4).map(update).collect();
        let results = apply_all(updates, |u| {
            let r = store_failing_on_3(&calls, u);
            async move { r }
        })
        .await;
        let got: Vec<Result<i64, String>> = results
            .into_iter()
            .map(|r| r.map(|a| a.run_id).map_err(|e| e.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                Ok(1),
                Ok(2),
                Err("database error: constraint failed".into()),
                Ok(4)
            ]
        );
        assert_eq!(
            *calls.lock().expect("lock"),
            [vec![1, 2, 3, 4], vec![1], vec![2], vec![3], vec![4]]
        );
    }

    #[tokio::test]
    async fn a_batch_that_applies_is_applied_once() {
        let calls = Mutex::new(Vec::new());
        let updates: Updates = [1, 2].into_iter().map(update).collect();
        let results = apply_all(updates, |u| {
            let r = store_failing_on_3(&calls, u);
            async move { r }
        })
        .await;
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(*calls.lock().expect("lock"), [vec![1, 2]]);
    }

    #[tokio::test(start_paused = true)]
    async fn updates_are_held_while_the_database_is_unavailable() {
        let tries = Mutex::new(0);
        let updates: Updates = [7].into_iter().map(update).collect();
        let results = apply_all(updates, |u| {
            let mut n = tries.lock().expect("lock");
            *n += 1;
            let r = if *n < 3 {
                Err(StoreError::Unavailable("connection refused".into()))
            } else {
                Ok(u.iter().map(|(id, _)| Ok(applied(*id))).collect())
            };
            async move { r }
        })
        .await;
        assert_eq!(*tries.lock().expect("lock"), 3);
        assert_eq!(results.len(), 1);
        assert!(results[0].is_ok());
    }
}

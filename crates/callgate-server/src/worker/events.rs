//! Applies provider events to runs in batches (one transaction per batch with group commit),
//! in arrival order, and keeps the capacity bookkeeping and metrics in step.

use crate::app::AppState;
use callgate_domain::lifecycle::RunStatus;
use callgate_store::StoreError;
use callgate_telephony::ProviderEvent;
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
        let updates: std::sync::Arc<[_]> = batch.drain(..).map(|e| (e.run_id, e.update)).collect();
        let results = loop {
            match state
                .store
                .apply_updates(std::sync::Arc::clone(&updates))
                .await
            {
                Ok(r) => break r,
                Err(StoreError::Unavailable(m)) => {
                    // Nothing is lost: hold the batch until the database is back.
                    tracing::warn!(message = %m, "database unavailable; holding call events");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "applying call events failed");
                    break Vec::new();
                }
            }
        };
        for r in results {
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
                Err(e) => tracing::warn!(error = %e, "call event not applied"),
            }
        }
    }
}

//! Applies provider events to runs in batches (one transaction per batch with group commit),
//! in arrival order, and keeps the capacity bookkeeping and metrics in step.

use crate::app::AppState;
use callgate_domain::lifecycle::RunStatus;
use callgate_store::StoreError;
use callgate_telephony::ProviderEvent;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const MAX_BATCH: usize = 512;

pub async fn run(state: Arc<AppState>, mut rx: mpsc::UnboundedReceiver<ProviderEvent>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
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

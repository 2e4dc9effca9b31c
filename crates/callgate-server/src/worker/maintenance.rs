//! Periodic chores: this node's heartbeat and the orphan reaper, API-key `last_used_at` in
//! batches, expired idempotency keys.

use crate::app::AppState;
use std::sync::Arc;
use tokio::sync::Notify;

pub async fn run(state: Arc<AppState>, stop: Arc<Notify>) {
    let mut tick = tokio::time::interval(crate::worker::dispatcher::HEARTBEAT);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.notified() => return,
        }
        n += 1;
        if state.config.run_worker {
            let now = state.clock.now();
            if let Err(e) = state.store.heartbeat(&state.config.node_id, now).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
            if n % 5 == 1 {
                crate::worker::dispatcher::reap_orphans(&state).await;
            }
        }
        if n.is_multiple_of(5) {
            let used = state.take_key_usage();
            if let Err(e) = state.store.touch_api_keys(used).await {
                tracing::warn!(error = %e, "could not record API key use");
            }
        }
        // Idempotency keys live 24 hours (SPEC §2.1); purge hourly.
        if n % 3600 == 1 {
            let before = state.clock.now() - jiff::SignedDuration::from_hours(24);
            if let Err(e) = state.store.purge_idempotency(before).await {
                tracing::warn!(error = %e, "could not purge idempotency keys");
            }
        }
    }
}

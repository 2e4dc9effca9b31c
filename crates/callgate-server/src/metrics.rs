//! Prometheus metrics (SPEC §12 `/metrics`): triggers by route and status, runs by outcome,
//! queue depth and dispatch latency. One process-wide recorder, installed on first use.

use foldhash::HashMap;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Mutex, OnceLock};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide handle; `None` if another recorder was installed first.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// Handles of labelled metrics, registered once each: registering hashes and copies the key
/// and allocates its label text, ~1 500 instructions per trigger; a handle is an atomic add.
/// The recorder is installed first (`handle`), so that no handle is kept from before it.
fn cached<K: std::hash::Hash + Eq, H: Clone>(
    cache: &OnceLock<Mutex<HashMap<K, H>>>,
    key: K,
    register: impl FnOnce(&K) -> H,
) -> H {
    let map = cache.get_or_init(|| {
        handle();
        Mutex::default()
    });
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(h) = map.get(&key) {
        return h.clone();
    }
    let h = register(&key);
    map.insert(key, h.clone());
    h
}

pub fn trigger(route: &'static str, status: u16) {
    static COUNTERS: OnceLock<Mutex<HashMap<(&'static str, u16), Counter>>> = OnceLock::new();
    cached(&COUNTERS, (route, status), |&(route, status)| {
        metrics::counter!("callgate_triggers_total", "route" => route, "status" => status.to_string())
    })
    .increment(1);
}

pub fn run_ended(outcome: &'static str) {
    static COUNTERS: OnceLock<Mutex<HashMap<&'static str, Counter>>> = OnceLock::new();
    cached(
        &COUNTERS,
        outcome,
        |&outcome| metrics::counter!("callgate_runs_ended_total", "outcome" => outcome),
    )
    .increment(1);
}

pub fn queue_depth(n: i64) {
    metrics::gauge!("callgate_queue_depth").set(n as f64);
}

pub fn dispatch_latency(seconds: f64) {
    static HISTOGRAM: OnceLock<Histogram> = OnceLock::new();
    HISTOGRAM
        .get_or_init(|| {
            handle();
            metrics::histogram!("callgate_dispatch_latency_seconds")
        })
        .record(seconds);
}

//! Application state and lifecycle: `App::build` opens everything and binds the listener;
//! `App::run` serves until the shutdown future resolves, then drains.

use crate::cache::Catalog;
use crate::capacity::Capacity;
use crate::config::Config;
use crate::crypto::Sealer;
use callgate_domain::clock::Clock;
use callgate_store::{ApiKeyId, ConfigId, Run, RunId, Store};
use callgate_telephony::{EventSink, ProviderEvent};
use foldhash::{HashMap, HashMapExt};
use jiff::Timestamp;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot};

pub type DialResult = Result<(), String>;

/// How long shutdown waits for dial requests already sent to a provider.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub catalog: Catalog,
    pub capacity: Capacity,
    pub sealer: Sealer,
    /// Base of absolute URLs.
    pub public_url: String,
    /// Wakes the dispatcher when work arrives or a slot frees up.
    pub dispatch: Notify,
    pub events: EventSink,
    /// Idempotency keys being processed on this node: (api key, route, key).
    pub inflight: Mutex<HashSet<(i64, String, String)>>,
    /// Last use of each key, flushed in batches (no write on the trigger path).
    key_usage: Mutex<HashMap<ApiKeyId, Timestamp>>,
    /// Triggers waiting for the provider's verdict (`Prefer: wait`).
    waiters: Mutex<HashMap<RunId, oneshot::Sender<DialResult>>>,
    /// False once shutdown began: no new leases.
    pub accepting: AtomicBool,
    /// Dial requests on their way to a provider; shutdown waits for them (SPEC §12 drain).
    pub dials_in_flight: AtomicUsize,
    /// Provider clients by configuration, with the sealed credentials they were built from
    /// (a changed configuration gets a new client).
    pub providers: Mutex<HashMap<ConfigId, CachedProvider>>,
    /// The calls this process's simulators play (how a hangup reaches one).
    pub simulated: Arc<callgate_telephony::simulator::Playing>,
}

/// A provider client and the sealed credentials it was built from.
pub type CachedProvider = (Vec<u8>, Arc<dyn callgate_telephony::Telephony>);

impl AppState {
    pub fn note_key_use(&self, id: ApiKeyId) {
        let now = self.clock.now();
        if let Ok(mut m) = self.key_usage.lock() {
            m.insert(id, now);
        }
    }

    pub fn take_key_usage(&self) -> Vec<(ApiKeyId, Timestamp)> {
        self.key_usage
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }

    pub fn register_dial_waiter(&self, run: RunId) -> oneshot::Receiver<DialResult> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.waiters.lock() {
            m.insert(run, tx);
        }
        rx
    }

    pub fn forget_dial_waiter(&self, run: RunId) {
        if let Ok(mut m) = self.waiters.lock() {
            m.remove(&run);
        }
    }

    pub fn dial_settled(&self, run: RunId, result: DialResult) {
        let tx = self.waiters.lock().ok().and_then(|mut m| m.remove(&run));
        if let Some(tx) = tx {
            let _ = tx.send(result);
        }
    }

    /// Bookkeeping after a run was durably queued.
    pub fn run_enqueued(&self, run: &Run) {
        self.capacity.queued(run.org_id, run.config_id);
        self.dispatch.notify_one();
    }

    /// Absolute URL for a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.public_url.trim_end_matches('/'), path)
    }
}

pub struct App {
    listener: TcpListener,
    state: Arc<AppState>,
    events_rx: mpsc::UnboundedReceiver<ProviderEvent>,
}

impl App {
    /// Opens the sealer, binds the listener and seeds the bookkeeping from the store.
    pub async fn build(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> anyhow_like::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            anyhow_like::Error(format!(
                "cannot create data dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let sealer = match &config.server_key {
            Some(k) => Sealer::from_base64(k.expose()),
            None => Sealer::load_or_create(&config.data_dir),
        }
        .map_err(|e| anyhow_like::Error(e.to_string()))?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| anyhow_like::Error(format!("cannot listen on {}: {e}", config.bind)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| anyhow_like::Error(e.to_string()))?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        crate::metrics::handle();
        let (events, events_rx) = mpsc::unbounded_channel();
        let catalog = Catalog::new(store.clone(), Duration::from_millis(config.cache_ttl_ms));
        let capacity = Capacity::default();
        let counts = store
            .queue_counts()
            .await
            .map_err(|e| anyhow_like::Error(e.to_string()))?;
        capacity.seed(&counts);
        let state = Arc::new(AppState {
            config,
            store,
            clock,
            catalog,
            capacity,
            sealer,
            public_url,
            dispatch: Notify::new(),
            events,
            inflight: Mutex::new(HashSet::new()),
            key_usage: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            accepting: AtomicBool::new(true),
            dials_in_flight: AtomicUsize::new(0),
            providers: Mutex::new(HashMap::new()),
            simulated: Arc::default(),
        });
        // Before the node says it listens: a start refused here is an error and an exit.
        if state.config.run_worker {
            crate::worker::dispatcher::take_node_id(&state)
                .await
                .map_err(anyhow_like::Error)?;
        }
        Ok(Self {
            listener,
            state,
            events_rx,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then stops taking leases and lets requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let stop = Arc::new(Notify::new());
        let mut workers = Vec::new();
        if state.config.run_worker {
            // Announce this node before it takes any lease, so no peer mistakes its first
            // claims for orphans.
            if let Err(e) = state
                .store
                .heartbeat(&state.config.node_id, state.clock.now())
                .await
            {
                tracing::warn!(error = %e, "first heartbeat failed");
            }
            workers.push(tokio::spawn(crate::worker::events::run(
                state.clone(),
                self.events_rx,
            )));
            workers.push(tokio::spawn(crate::worker::dispatcher::run(
                state.clone(),
                stop.clone(),
            )));
        } else {
            workers.push(tokio::spawn(crate::worker::dispatcher::keep_counts(
                state.clone(),
                stop.clone(),
            )));
        }
        workers.push(tokio::spawn(crate::worker::maintenance::run(
            state.clone(),
            stop.clone(),
        )));
        let service = crate::http::service(state.clone());
        let served = if state.config.run_api {
            axum::serve(self.listener, axum::ServiceExt::into_make_service(service))
                .with_graceful_shutdown(shutdown)
                .await
        } else {
            shutdown.await;
            Ok(())
        };
        state.accepting.store(false, Ordering::SeqCst);
        stop.notify_waiters();
        // In-flight provider requests finish; queued runs stay for other nodes.
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while state.dials_in_flight.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the event worker record what those dials reported.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for w in workers {
            w.abort();
        }
        // A last flush of key usage; losing it would only make `last_used_at` stale.
        let used = state.take_key_usage();
        let _ = state.store.touch_api_keys(used).await;
        served
    }
}

/// A tiny string error for start-up failures; the binary prints it and exits non-zero.
pub mod anyhow_like {
    #[derive(Debug)]
    pub struct Error(pub String);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Error {}
    pub type Result<T> = std::result::Result<T, Error>;
}

//! Test helpers: `TestApp::spawn()` starts a real callgate server (SQLite in a temp dir, or a fresh
//! PostgreSQL database when `CALLGATE_TEST_POSTGRES_URL` is set; the simulator as provider) on a
//! free port and talks HTTP to it. Each test gets its own server and database.
//! Helpers panic with context on failure; they are for tests only.
#![allow(clippy::unwrap_used)]

use callgate_domain::clock::{Clock, SystemClock};
use callgate_domain::definition::Definition;
use callgate_server::http::keys::issue_api_key;
use callgate_server::{App, AppState, Config};
use callgate_store::{KeyScopes, NewAgent, NewTelephonyConfig, Store};
use callgate_store_postgres::PgStore;
use callgate_store_postgres::scratch::ScratchDatabase;
use callgate_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The problem `code` of an error response.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }
}

/// One tenant: an organisation with an admin key, a simulator configuration and a demo agent.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub org_id: i64,
    pub user_id: i64,
    pub api_key: String,
    pub config_id: i64,
    pub agent_id: i64,
    pub workflow_uuid: String,
    pub trigger_path: String,
}

/// How the default tenant's simulator behaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub simulator: Value,
    pub calls_per_second: f64,
    pub max_concurrent_calls: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            simulator: json!({"ring_ms": 20, "talk_ms": 60}),
            calls_per_second: 1000.0,
            max_concurrent_calls: None,
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: Arc<AppState>,
    pub store: Arc<dyn Store>,
    pub tenant: Tenant,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    /// The PostgreSQL database of this app, dropped with it (see `open_test_store`).
    _db: Option<ScratchDatabase>,
}

/// A small demo definition with a trigger and a greeting using `{{customer_name}}`.
pub fn definition_with_trigger(path: Option<&str>) -> Value {
    let mut trigger = json!({"name": "API Trigger", "enabled": true});
    if let Some(p) = path {
        trigger["trigger_path"] = json!(p);
    }
    json!({
        "nodes": [
            {"id": "start", "type": "startCall", "position": {"x": 0, "y": 0}, "data": {
                "greeting": "Hi {{customer_name}}, this is Ava.",
                "prompt": "Confirm the appointment on {{appointment_date | the booked day}}."
            }},
            {"id": "end", "type": "endCall", "position": {"x": 0, "y": 100}, "data": {"prompt": "Say goodbye."}},
            {"id": "trigger", "type": "trigger", "position": {"x": 0, "y": -100}, "data": trigger}
        ],
        "edges": [{"id": "e1", "source": "start", "target": "end", "data": {"label": "done", "condition": "done"}}]
    })
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, db) = open_test_store(dir.path()).await;
        let mut config = node_config(dir.path());
        config.admin_token = Some(callgate_server::config::Secret::new(ADMIN_TOKEN));
        let (base, state, tx) = start_node(config, &store).await;
        let tenant = seed_tenant(&state, "Acme", &opts).await;
        Self {
            base,
            client: reqwest::Client::new(),
            state,
            store,
            tenant,
            shutdown: Some(tx),
            _dir: dir,
            _db: db,
        }
    }

    /// Another organisation on the same server.
    pub async fn add_tenant(&self, name: &str) -> Tenant {
        seed_tenant(&self.state, name, &Options::default()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .post(self.url(path))
                .header("X-API-Key", key)
                .json(body),
        )
        .await
    }

    pub async fn put(&self, path: &str, key: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .put(self.url(path))
                .header("X-API-Key", key)
                .json(body),
        )
        .await
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.send(self.client.get(self.url(path)).header("X-API-Key", key))
            .await
    }

    pub async fn delete(&self, path: &str, key: &str) -> Resp {
        self.send(self.client.delete(self.url(path)).header("X-API-Key", key))
            .await
    }

    /// An instance-admin request.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .request(method, self.url(path))
                .bearer_auth(ADMIN_TOKEN)
                .json(body),
        )
        .await
    }

    /// POST to the default tenant's production trigger URL.
    pub async fn trigger(&self, body: &Value) -> Resp {
        let path = format!("/api/v1/public/agent/{}", self.tenant.trigger_path);
        self.post(&path, &self.tenant.api_key, body).await
    }

    /// Polls a call until it has ended (at most 20 s) and returns it.
    pub async fn wait_for_end(&self, key: &str, call_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get(&format!("/api/v1/calls/{call_id}"), key).await;
            assert_eq!(r.status, 200, "GET call failed: {}", r.text);
            if r.body["status"] == "ended" {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "call {call_id} did not end: {}",
                r.text
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A second node on a `TestApp`'s database that takes triggers and dials nothing, as
/// `callgate serve --role api` does; the app's own node dials what it accepts.
pub struct ApiNode {
    pub base: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ApiNode {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for ApiNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    /// Starts an API-only node on this app's database (and data directory, so both open the
    /// same sealed credentials).
    pub async fn spawn_api_node(&self) -> ApiNode {
        let mut config = node_config(self._dir.path());
        config.run_worker = false;
        config.node_id = "api-only".into();
        let (base, _, tx) = start_node(config, &self.store).await;
        ApiNode {
            base,
            shutdown: Some(tx),
        }
    }
}

/// A node's settings with its data in `dir`, on a free port, without the first-start tenant.
fn node_config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir.to_path_buf());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.bootstrap = false;
    config
}

/// Starts a node on `store`; it serves until the returned sender is used or dropped.
async fn start_node(
    config: Config,
    store: &Arc<dyn Store>,
) -> (String, Arc<AppState>, tokio::sync::oneshot::Sender<()>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let app = App::build(config, store.clone(), clock).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    (base, state, tx)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Set to a PostgreSQL admin URL (`postgres://postgres@127.0.0.1:5432/test`) to run every
/// `TestApp` on PostgreSQL instead of SQLite.
pub const POSTGRES_ENV: &str = "CALLGATE_TEST_POSTGRES_URL";

/// SQLite in `dir` by default; with `POSTGRES_ENV` set, a fresh PostgreSQL database created
/// through that admin URL, so the same black-box tests check both backends.
async fn open_test_store(dir: &std::path::Path) -> (Arc<dyn Store>, Option<ScratchDatabase>) {
    match std::env::var(POSTGRES_ENV) {
        Ok(admin) if !admin.is_empty() => {
            let db = ScratchDatabase::create(&admin).await.unwrap();
            let store = PgStore::connect(db.url(), 8).await.unwrap();
            (Arc::new(store), Some(db))
        }
        _ => (
            Arc::new(SqliteStore::open(&dir.join("callgate.db")).unwrap()),
            None,
        ),
    }
}

/// Creates an organisation with an admin user and key, a default simulator configuration and
/// the demo agent (published), directly through the store.
pub async fn seed_tenant(state: &AppState, name: &str, opts: &Options) -> Tenant {
    let store = state.store.as_ref();
    let now = state.clock.now();
    let org = store.create_org(name, now).await.unwrap();
    let user = store
        .create_user(
            org.id,
            &format!("owner@{}.test", name.to_lowercase()),
            None,
            now,
        )
        .await
        .unwrap();
    let scopes = KeyScopes {
        admin: true,
        ..KeyScopes::default()
    };
    let (_, api_key) = issue_api_key(store, org.id, user.id, "test key", scopes, now)
        .await
        .unwrap();
    let creds = serde_json::to_vec(&opts.simulator).unwrap();
    let cfg = store
        .create_config(
            NewTelephonyConfig {
                org_id: org.id,
                name: "Simulator".into(),
                provider: "simulator".into(),
                credentials_sealed: state.sealer.seal(&creds),
                credential_fields: opts
                    .simulator
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default(),
                is_default_outbound: true,
                calls_per_second: opts.calls_per_second,
                max_concurrent_calls: opts.max_concurrent_calls,
            },
            now,
        )
        .await
        .unwrap();
    let def = Definition::parse_for_save(definition_with_trigger(None)).unwrap();
    let trigger_path = def.triggers()[0].path.as_str().to_owned();
    let agent = store
        .create_agent(
            NewAgent {
                org_id: org.id,
                name: format!("{name} agent"),
                owner_user_id: user.id,
                definition: def.into_json(),
                trigger_paths: vec![trigger_path.clone()],
            },
            now,
        )
        .await
        .unwrap();
    state.catalog.invalidate_all();
    Tenant {
        org_id: org.id,
        user_id: user.id,
        api_key,
        config_id: cfg.id,
        agent_id: agent.agent.id,
        workflow_uuid: agent.agent.uuid.to_string(),
        trigger_path,
    }
}

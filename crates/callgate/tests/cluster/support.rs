//! Harness: `callgate serve` child processes on free ports, the scratch database they share, and
//! small HTTP and SQL helpers. Every wait is bounded; every child is killed when its `Node` is
//! dropped, including when a test panics.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const POSTGRES_ENV: &str = "CALLGATE_TEST_POSTGRES_URL";
/// Shared by every node of a cluster: credentials sealed by one node are opened by the others.
pub const SERVER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const ADMIN_TOKEN: &str = "cluster-test-admin-token-0123456789";

/// The PostgreSQL tests of this binary start several processes each and check timings; one
/// at a time keeps them from competing for a small machine's cores.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The admin URL, or `None` after saying the test is skipped. Written straight to stderr so the
/// line shows in `cargo test` output even though the harness captures `println!`.
pub fn postgres_admin_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {POSTGRES_ENV}=postgres://postgres@127.0.0.1:5432/test to \
                 run the PostgreSQL cluster tests"
            );
            None
        }
    }
}

/// How to start one node.
pub struct NodeSpec<'a> {
    pub node_id: &'a str,
    pub database_url: &'a str,
    /// Create the demo organisation (only the first node of a cluster does).
    pub bootstrap: bool,
    /// Further `CALLGATE_*` variables.
    pub env: Vec<(&'a str, String)>,
}

/// A running `callgate serve` process.
pub struct Node {
    pub node_id: String,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    child: Option<Child>,
    output: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// Variables a developer's shell might set that would change what the test starts.
const INHERITED: &[&str] = &[
    "CALLGATE_CONFIG",
    "CALLGATE_BIND",
    "CALLGATE_PUBLIC_URL",
    "CALLGATE_DATA_DIR",
    "CALLGATE_DATABASE_URL",
    "CALLGATE_DATABASE_TIMEOUT",
    "CALLGATE_ADMIN_TOKEN",
    "CALLGATE_SERVER_KEY",
    "CALLGATE_BOOTSTRAP",
    "CALLGATE_NODE_ID",
    "CALLGATE_LOG",
    "CALLGATE_LOG_FORMAT",
];

impl Node {
    /// Starts the binary on a port of its choosing and waits (at most 30 s) until it listens.
    pub fn start(spec: NodeSpec<'_>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callgate"));
        for var in INHERITED {
            cmd.env_remove(var);
        }
        cmd.arg("serve")
            .args(["--bind", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env("CALLGATE_DATA_DIR", dir.path().join("data"))
            .env("CALLGATE_DATABASE_URL", spec.database_url)
            .env("CALLGATE_SERVER_KEY", SERVER_KEY)
            .env("CALLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("CALLGATE_BOOTSTRAP", spec.bootstrap.to_string())
            .env("CALLGATE_NODE_ID", spec.node_id)
            .env("CALLGATE_LOG_FORMAT", "json")
            .env("CALLGATE_LOG", "info,tower_http=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        // Readers keep the pipes drained (a full pipe would block the child) and end with it.
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    out.lock().unwrap().push(line);
                }
            });
        }
        let mut node = Node {
            node_id: spec.node_id.to_owned(),
            base: String::new(),
            child: Some(child),
            output,
            _dir: dir,
        };
        let line = node.wait_for_line("callgate is listening on ", Duration::from_secs(30));
        node.base = line
            .trim()
            .trim_start_matches("callgate is listening on ")
            .trim_end_matches('/')
            .to_owned();
        node
    }

    /// The first output line containing `needle`, waiting at most `limit`; panics (with the
    /// output) if it never comes or the process exits first.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self
                .output
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            let exited = self
                .child
                .as_mut()
                .map(|c| c.try_wait().ok().flatten().is_some())
                .unwrap_or(true);
            assert!(
                !exited && Instant::now() < deadline,
                "node {}: no line with {needle:?} ({}); output:\n{}",
                self.node_id,
                if exited { "it exited" } else { "timed out" },
                self.output_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn output_text(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// The admin key and the demo trigger path a bootstrapping node prints on first start.
    pub fn first_start_credentials(&mut self) -> (String, String) {
        self.wait_for_line("Or trigger and watch it live", Duration::from_secs(30));
        let out = self.output_text();
        let key = out
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("cg_"))
            .unwrap_or_else(|| panic!("no admin key printed:\n{out}"))
            .to_owned();
        let marker = "/api/v1/public/agent/";
        let trigger = out
            .lines()
            .filter_map(|l| l.split_once(marker).map(|(_, rest)| rest))
            .find(|rest| !rest.starts_with("test/"))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no trigger URL printed:\n{out}"))
            .to_owned();
        (key, trigger)
    }

    /// SIGKILL: the process gets no chance to drain or release anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `GET /metrics`, the value of the sample named `name` (0 when absent).
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> f64 {
        let text = http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|rest| rest.trim().parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Node {
    /// Kills the process; after a failure, keeps its whole output in the target directory and
    /// shows the end of it.
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let out = self.output_text();
            let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
                "cluster-{}-{}.log",
                self.node_id,
                std::process::id()
            ));
            let saved = std::fs::write(&file, &out).is_ok();
            let lines: Vec<&str> = out.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            let _ = writeln!(
                std::io::stderr(),
                "--- node {} (full output{} {}) ---\n{tail}",
                self.node_id,
                if saved {
                    " in"
                } else {
                    " could not be saved to"
                },
                file.display()
            );
        }
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        content_type,
        body,
        text,
    }
}

/// Starts `callgate serve` on `database_url` with `env`, which must make it exit with an error
/// within 30 s; returns its stderr.
pub async fn start_must_fail(database_url: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callgate"));
    for var in INHERITED {
        cmd.env_remove(var);
    }
    cmd.args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("CALLGATE_DATA_DIR", dir.path())
        .env("CALLGATE_DATABASE_URL", database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("callgate kept running; it was expected to refuse to start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = child.wait_with_output().unwrap();
    assert!(!status.success(), "exit status {status}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh SQLite database file in a temporary directory (removed when dropped), and its URL.
pub fn sqlite_database() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("callgate.db").display());
    (dir, url)
}

/// The tests' HTTP client: no request waits more than 10 s.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POST to a production trigger URL of `base`.
pub async fn trigger(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    phone: &str,
) -> Resp {
    send(
        http.post(format!("{base}/api/v1/public/agent/{path}"))
            .header("X-API-Key", key)
            .json(&json!({"phone_number": phone, "initial_context": {"customer_name": "Jane"}})),
    )
    .await
}

/// Points the organisation's (first) simulator configuration at `credentials` and `cps`, and
/// applies `org_settings` (instance admin settings such as `max_concurrent_calls`), through
/// the API of `base`.
pub async fn configure(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    credentials: Value,
    cps: f64,
    org_settings: Value,
) {
    let settings = send(
        http.get(format!("{base}/api/v1/organizations/settings"))
            .header("X-API-Key", key),
    )
    .await;
    let org_id = settings.body["organization_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no organization_id: {}", settings.text));
    let configs = send(
        http.get(format!("{base}/api/v1/organizations/telephony-configs"))
            .header("X-API-Key", key),
    )
    .await;
    let config_id = configs
        .body
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["provider"] == "simulator")
        .and_then(|c| c["id"].as_i64())
        .unwrap_or_else(|| panic!("no simulator configuration: {}", configs.text));
    let r = send(
        http.put(format!(
            "{base}/api/v1/organizations/telephony-configs/{config_id}"
        ))
        .header("X-API-Key", key)
        .json(&json!({"credentials": credentials, "calls_per_second": cps})),
    )
    .await;
    assert_eq!(r.status, 200, "configuring the simulator: {}", r.text);
    let r = send(
        http.put(format!(
            "{base}/api/v1/admin/organizations/{org_id}/settings"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&org_settings),
    )
    .await;
    assert_eq!(
        r.status, 200,
        "setting the organisation's limits: {}",
        r.text
    );
}

/// A plain connection to the test database, for assertions.
pub async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Polls `check` every 50 ms until it returns `Some`, at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

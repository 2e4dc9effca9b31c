//! Layered configuration (SPEC §12): built-in defaults, then `callgate.toml` (or `--config`),
//! then `CALLGATE_*` environment variables and flags, which win.

use anyhow::{Context, Result, bail};
use callgate_server::Config;
use callgate_server::config::Secret;
use clap::{Args, ValueEnum};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Configuration file (default: ./callgate.toml when present).
    #[arg(long, global = true, env = "CALLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded database and the server key.
    #[arg(long, global = true, env = "CALLGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL; default is a SQLite file in the data directory.
    #[arg(long, global = true, env = "CALLGATE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL: seconds a request waits for a database connection (opening one or a free
    /// pooled one) before answering 503 (default 10; the URL's `connect_timeout` wins for
    /// opening).
    #[arg(long, global = true, env = "CALLGATE_DATABASE_TIMEOUT")]
    pub database_timeout: Option<f64>,
    /// Log filter, e.g. `info` or `callgate_server=debug`.
    #[arg(long, global = true, env = "CALLGATE_LOG")]
    pub log: Option<String>,
    #[arg(long, global = true, env = "CALLGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
    All,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "CALLGATE_BIND")]
    pub bind: Option<SocketAddr>,
    /// Base URL used in trigger and callback URLs (default http:// + bind).
    #[arg(long, env = "CALLGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Enables the instance admin API.
    #[arg(long, env = "CALLGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Base64 32-byte key sealing credentials (generated into the data dir when absent).
    #[arg(long, env = "CALLGATE_SERVER_KEY", hide_env_values = true)]
    pub server_key: Option<String>,
    /// Create the demo organisation on first start (default true).
    #[arg(long, env = "CALLGATE_BOOTSTRAP")]
    pub bootstrap: Option<bool>,
    #[arg(long, env = "CALLGATE_ALLOW_PRIVATE_WEBHOOK_TARGETS")]
    pub allow_private_webhook_targets: Option<bool>,
    /// Which parts to run on this node.
    #[arg(long, value_enum)]
    pub role: Option<Role>,
    /// This node's name in run leases and logs (default `node-` + random); must differ
    /// between the nodes sharing a database.
    #[arg(long, env = "CALLGATE_NODE_ID")]
    pub node_id: Option<String>,
    /// Threads serving HTTP and running calls (default: one per CPU, less one on SQLite).
    #[arg(long, env = "CALLGATE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

impl ServeArgs {
    /// The serve options from the environment alone, for `callgate` run without a command
    /// (flags need the `serve` command; its variables must work either way).
    pub fn from_env() -> Result<Self> {
        let cmd = <Self as Args>::augment_args(clap::Command::new("serve"));
        let matches = cmd
            .try_get_matches_from(["serve"])
            .context("invalid serve settings in the environment")?;
        Ok(<Self as clap::FromArgMatches>::from_arg_matches(&matches)?)
    }
}

/// `callgate.toml`: every setting optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<SocketAddr>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    admin_token: Option<String>,
    server_key: Option<String>,
    bootstrap: Option<bool>,
    allow_private_webhook_targets: Option<bool>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    database_timeout: Option<f64>,
    node_id: Option<String>,
    worker_threads: Option<usize>,
}

/// Where the store lives and how patiently to wait for it.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `None`: the SQLite file in the data directory.
    pub url: Option<String>,
    pub timeout: Duration,
}

fn read_file(path: Option<&PathBuf>) -> Result<FileConfig> {
    let (path, required) = match path {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("callgate.toml"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("invalid {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Everything `serve` needs before it starts.
pub struct Resolved {
    pub config: Config,
    pub db: DatabaseSettings,
    /// Size of the async runtime (its worker threads).
    pub worker_threads: usize,
}

/// Whether a database URL names PostgreSQL (anything else is SQLite or an error).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Most worker threads a setting may ask for.
const MAX_WORKER_THREADS: usize = 1024;

/// The runtime's worker threads: the setting, else one per CPU, less one on SQLite.
///
/// On SQLite every write goes through one writer thread, the serial step of every trigger and
/// call; with a worker on every CPU the workers preempt it, and it waits runnable while
/// callers wait on it. Leaving it a CPU measured ~10 % more triggers per second on 2 CPUs
/// (docs/benchmarks.md, "Twelfth round"). PostgreSQL does its writing in its own processes.
pub fn worker_threads(setting: Option<usize>, cpus: usize, postgres: bool) -> Result<usize> {
    match setting {
        Some(n) if (1..=MAX_WORKER_THREADS).contains(&n) => Ok(n),
        Some(n) => bail!("worker threads must be between 1 and {MAX_WORKER_THREADS}, got {n}"),
        None if postgres => Ok(cpus.max(1)),
        None => Ok(cpus.saturating_sub(1).max(1)),
    }
}

/// The server configuration, the database settings and the runtime's size.
pub fn resolve(g: &GlobalArgs, s: &ServeArgs) -> Result<Resolved> {
    let file = read_file(g.config.as_ref())?;
    init_logging(
        g.log.clone().or(file.log.clone()),
        g.log_format.or(file.log_format),
    );
    let data_dir = g
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("./callgate-data"));
    let mut cfg = Config::new(data_dir);
    if let Some(b) = s.bind.or(file.bind) {
        cfg.bind = b;
    }
    cfg.public_url = s.public_url.clone().or(file.public_url);
    cfg.admin_token = s
        .admin_token
        .clone()
        .or(file.admin_token)
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    if cfg
        .admin_token
        .as_ref()
        .is_some_and(|t| t.expose().len() < 16)
    {
        bail!("the admin token must be at least 16 characters");
    }
    cfg.server_key = s.server_key.clone().or(file.server_key).map(Secret::new);
    cfg.bootstrap = s.bootstrap.or(file.bootstrap).unwrap_or(true);
    cfg.allow_private_webhook_targets = s
        .allow_private_webhook_targets
        .or(file.allow_private_webhook_targets)
        .unwrap_or(false);
    if let Some(id) = s.node_id.clone().or(file.node_id) {
        if id.trim().is_empty() || id.len() > 64 {
            bail!("the node id must be 1 to 64 characters");
        }
        cfg.node_id = id;
    }
    match s.role.unwrap_or(Role::All) {
        Role::Api => cfg.run_worker = false,
        Role::Worker => cfg.run_api = false,
        Role::All => {}
    }
    let timeout = g.database_timeout.or(file.database_timeout).unwrap_or(10.0);
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0) {
        bail!("the database timeout must be between 0 and 3600 seconds, got {timeout}");
    }
    let db = DatabaseSettings {
        url: g.database_url.clone().or(file.database_url),
        timeout: Duration::from_secs_f64(timeout),
    };
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let postgres = db.url.as_deref().is_some_and(is_postgres_url);
    role_fits(s.role.unwrap_or(Role::All), postgres)?;
    let worker_threads = worker_threads(s.worker_threads.or(file.worker_threads), cpus, postgres)?;
    Ok(Resolved {
        config: cfg,
        db,
        worker_threads,
    })
}

/// `--role api` and `--role worker` split one deployment's work across processes sharing a
/// PostgreSQL database. An SQLite database is served by one process, which keeps its pacing
/// and claims in memory: an API-only node there would accept calls that nothing ever dials.
fn role_fits(role: Role, postgres: bool) -> Result<()> {
    if role != Role::All && !postgres {
        bail!(
            "--role api and --role worker need a PostgreSQL database shared by the nodes \
             (CALLGATE_DATABASE_URL=postgres://...); on SQLite one process runs both, so \
             leave --role out"
        );
    }
    Ok(())
}

/// Installs the subscriber once (flags and env win over the file).
fn init_logging(log: Option<String>, format: Option<LogFormat>) {
    let filter = log.unwrap_or_else(|| "info,tower_http=warn".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format.unwrap_or(LogFormat::Pretty) {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_leaves_its_writer_a_cpu_and_postgres_takes_them_all() {
        assert_eq!(worker_threads(None, 2, false).ok(), Some(1));
        assert_eq!(worker_threads(None, 8, false).ok(), Some(7));
        assert_eq!(worker_threads(None, 1, false).ok(), Some(1));
        assert_eq!(worker_threads(None, 2, true).ok(), Some(2));
        assert_eq!(worker_threads(None, 8, true).ok(), Some(8));
        assert_eq!(worker_threads(None, 0, true).ok(), Some(1));
    }

    #[test]
    fn a_worker_threads_setting_wins_within_bounds() {
        assert_eq!(worker_threads(Some(3), 2, false).ok(), Some(3));
        assert_eq!(worker_threads(Some(1), 64, true).ok(), Some(1));
        assert_eq!(worker_threads(Some(1024), 2, false).ok(), Some(1024));
        for bad in [0, 1025] {
            let e = worker_threads(Some(bad), 2, false).expect_err("out of bounds");
            assert!(e.to_string().contains("between 1 and 1024"), "{e}");
        }
    }

    #[test]
    fn a_split_role_needs_postgres() {
        assert!(role_fits(Role::All, false).is_ok());
        assert!(role_fits(Role::Api, true).is_ok());
        assert!(role_fits(Role::Worker, true).is_ok());
        for role in [Role::Api, Role::Worker] {
            let e = role_fits(role, false).expect_err("a split role on SQLite");
            assert!(e.to_string().contains("need a PostgreSQL database"), "{e}");
        }
    }

    #[test]
    fn postgres_urls_are_told_from_sqlite_ones() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("sqlite://./x.db"));
        assert!(!is_postgres_url("sqlite:x.db"));
        assert!(!is_postgres_url("mysql://h/db"));
    }
}

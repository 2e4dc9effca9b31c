//! The `callgate` binary: parses the command line and configuration, picks the store from the
//! database URL and runs the server or an administrative command.
#![forbid(unsafe_code)]

mod admin;
mod call;
mod settings;

use anyhow::{Context, Result, bail};
use callgate_domain::clock::{Clock, SystemClock};
use callgate_server::{App, Config};
use callgate_store::Store;
use callgate_store_postgres::{PgOptions, PgStore};
use callgate_store_sqlite::SqliteStore;
use clap::{Parser, Subcommand};
use std::sync::Arc;

/// Requests allocate and free many small buffers across threads; mimalloc's per-thread heaps
/// do that for a fraction of glibc's cost (measured in docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "callgate",
    version,
    about = "Place AI voice-agent phone calls from one HTTP request"
)]
struct Cli {
    #[command(flatten)]
    global: settings::GlobalArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API, the dispatcher and the workers (the default).
    Serve(settings::ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage organisations, users, keys and quotas without the HTTP API.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Trigger a call on a running server and follow it until it ends.
    Call(call::CallArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // `callgate` alone is `callgate serve`, environment variables included.
        None => start(&cli.global, settings::ServeArgs::from_env()?),
        Some(Command::Serve(args)) => start(&cli.global, args),
        Some(Command::Migrate) => runtime(None)?.block_on(migrate(cli.global)),
        Some(Command::Admin(cmd)) => runtime(None)?.block_on(admin_command(cli.global, cmd)),
        Some(Command::Call(args)) => runtime(None)?.block_on(call::run(args)),
    }
}

/// Runs the server; its settings come first, as they size the runtime.
fn start(global: &settings::GlobalArgs, args: settings::ServeArgs) -> Result<()> {
    let resolved = settings::resolve(global, &args)?;
    runtime(Some(resolved.worker_threads))?.block_on(serve(resolved))
}

/// The async runtime; `None` sizes it by tokio's default (one worker per CPU).
fn runtime(worker_threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Connections each process keeps to PostgreSQL: enough for the API, the dispatcher and the
/// webhook sender to work at once, few enough that several nodes fit the server's default
/// `max_connections` (100).
const POSTGRES_POOL_SIZE: usize = 16;

/// Opens the store named by the configuration, applying pending migrations. An unreachable
/// PostgreSQL server is an error here, so the process exits instead of serving 503s.
pub async fn open_store(cfg: &Config, db: &settings::DatabaseSettings) -> Result<Arc<dyn Store>> {
    let path = match db.url.as_deref() {
        None | Some("") => cfg.data_dir.join("callgate.db"),
        Some(url) if settings::is_postgres_url(url) => {
            let options = PgOptions {
                pool_size: POSTGRES_POOL_SIZE,
                timeout: db.timeout,
            };
            let store = PgStore::connect_with(url, &options)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the PostgreSQL database: {e}"))?;
            return Ok(Arc::new(store));
        }
        Some(url) => match url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            Some(p) => p.into(),
            None => {
                bail!("unsupported database URL scheme in {url:?}; expected sqlite: or postgres://")
            }
        },
    };
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let store = SqliteStore::open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", path.display()))?;
    Ok(Arc::new(store))
}

async fn migrate(global: settings::GlobalArgs) -> Result<()> {
    let r = settings::resolve(&global, &settings::ServeArgs::default())?;
    open_store(&r.config, &r.db).await?;
    println!("migrations applied");
    Ok(())
}

async fn admin_command(global: settings::GlobalArgs, cmd: admin::AdminCommand) -> Result<()> {
    let r = settings::resolve(&global, &settings::ServeArgs::default())?;
    let store = open_store(&r.config, &r.db).await?;
    admin::run(store, cmd).await
}

async fn serve(resolved: settings::Resolved) -> Result<()> {
    let settings::Resolved {
        config: cfg, db, ..
    } = resolved;
    let store = open_store(&cfg, &db).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let bootstrap = cfg.bootstrap;
    let app = App::build(cfg, store.clone(), clock.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = app.state();
    tracing::info!(
        addr = %app.local_addr(),
        node_id = %state.config.node_id,
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "callgate listening"
    );
    println!("callgate is listening on {}", state.public_url);
    if bootstrap {
        let first =
            callgate_server::bootstrap::first_start(store.as_ref(), &state.sealer, clock.as_ref())
                .await
                .map_err(|e| anyhow::anyhow!("first-start setup failed: {e}"))?;
        if let Some(f) = first {
            print_first_start(&state.public_url, &f);
        }
    }
    app.run(shutdown_signal())
        .await
        .context("server stopped with an error")?;
    println!("callgate stopped");
    Ok(())
}

fn print_first_start(base: &str, f: &callgate_server::bootstrap::FirstStart) {
    let body = r#"{"phone_number": "+14155550100", "initial_context": {"customer_name": "Jane"}}"#;
    println!();
    println!("First start: created the organisation 'Default organization', a simulator");
    println!(
        "telephony configuration and the demo agent (workflow {}).",
        f.workflow_id
    );
    println!();
    println!("Admin API key (shown only this once; store it now):");
    println!("  {}", f.api_key);
    println!();
    println!("Place a simulated call (production URL, published version):");
    println!(
        "  curl -X POST {base}/api/v1/public/agent/{} -H 'Content-Type: application/json' -H 'X-API-Key: {}' -d '{body}'",
        f.trigger_path, f.api_key
    );
    println!();
    println!("Test URL (runs the latest draft):");
    println!(
        "  curl -X POST {base}/api/v1/public/agent/test/{} -H 'Content-Type: application/json' -H 'X-API-Key: {}' -d '{body}'",
        f.trigger_path, f.api_key
    );
    println!();
    println!(
        "Then follow the call: curl {base}/api/v1/calls/<call_id> -H 'X-API-Key: {}'",
        f.api_key
    );
    println!(
        "Or trigger and watch it live: callgate call {} +14155550100 --api-key {}",
        f.trigger_path, f.api_key
    );
    println!();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining");
}

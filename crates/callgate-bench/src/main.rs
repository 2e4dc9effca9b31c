//! `callgate-bench`: starts the release `callgate` binary as a separate process on its embedded
//! default (SQLite + simulator), or on PostgreSQL with `--database-url`, drives it with a
//! built-in load generator and writes the figures as markdown tables (docs/benchmarks.md
//! explains each one).
//!
//! The hidden `hello-server` subcommand is the hello-world reference the bench starts as a
//! child of itself, so both servers are measured the same way from outside.
#![forbid(unsafe_code)]

mod db;
mod disk;
mod hello;
mod load;
mod pg_preload;
mod process;
mod report;
mod runsdb;
mod scenarios;
mod server;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use report::{Machine, Results};
use scenarios::{ScaleKind, Settings, Targets};
use server::{Callgate, Launch};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "callgate-bench",
    about = "Benchmarks the callgate binary: trigger throughput and latency, dispatch latency, pacing, scale and memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand)]
enum Sub {
    /// The hello-world reference server (started by the bench itself).
    #[command(hide = true)]
    HelloServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// The hello-world reference.
    Reference,
    /// Production trigger route, 200.
    Trigger,
    /// Bad API key, 401.
    Unauthorized,
    /// Unknown trigger path, 404.
    NotFound,
    /// Dispatch latency at a steady moderate rate.
    Dispatch,
    /// Pacing accuracy at a low calls-per-second limit.
    Pacing,
    /// Throughput and dispatch latency with many runs already in the database.
    Scale,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    Stored,
    Queued,
}

#[derive(clap::Args)]
struct Opts {
    /// The callgate binary to benchmark (build it with --release).
    #[arg(long, default_value = "target/release/callgate")]
    server_bin: PathBuf,
    /// Where to write the markdown report.
    #[arg(long, default_value = "docs/benchmarks-latest.md")]
    out: PathBuf,
    /// A smoke run: short scenarios and small databases, to check everything works.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Warm-up before each measurement, seconds [2; quick 0.5].
    #[arg(long)]
    warmup: Option<f64>,
    /// Measurement per scenario, seconds [10; quick 2].
    #[arg(long)]
    duration: Option<f64>,
    /// Concurrent connections of the closed-loop scenarios.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    connections: Vec<usize>,
    /// Steady trigger rates of the dispatch-latency scenario (64 connections, open loop), per
    /// second; the first is also the scale steps' [200,3000; quick 100].
    #[arg(long, value_delimiter = ',')]
    dispatch_rates: Vec<f64>,
    /// Length of the dispatch-latency scenario, seconds [15; quick 3].
    #[arg(long)]
    dispatch_secs: Option<f64>,
    /// calls_per_second of the pacing configuration.
    #[arg(long, default_value_t = 10.0)]
    pacing_cps: f64,
    /// Pacing observation window, seconds [60; quick 5].
    #[arg(long)]
    pacing_secs: Option<u64>,
    /// Runs pre-loaded per scale step; an empty baseline runs first and last [100000,1000000; quick 10000].
    #[arg(long, value_delimiter = ',')]
    scale_sizes: Vec<u64>,
    /// What the scale steps pre-load.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "stored,queued"
    )]
    scale_kinds: Vec<Kind>,
    /// Connections of the scale scenario's trigger load.
    #[arg(long, default_value_t = 64)]
    scale_connections: usize,
    /// Parent of the temporary working directory (data directories, server logs).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the working directory afterwards (and the PostgreSQL databases).
    #[arg(long)]
    keep: bool,
    /// CALLGATE_LOG for the server under test.
    #[arg(long, default_value = "warn")]
    server_log: String,
    /// Benchmark callgate on PostgreSQL instead of the embedded SQLite: a URL the bench can
    /// create and drop databases with (e.g. postgres://postgres@127.0.0.1:5432/test). Each
    /// server start gets a fresh database named callgate_bench_<random hex>, dropped when it
    /// stops; the scale steps run on copies of one seeded database.
    #[arg(long)]
    database_url: Option<String>,
    /// Worker threads of the load generator's runtime [number of CPUs].
    #[arg(long)]
    client_threads: Option<usize>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Sub::HelloServer { bind }) = cli.command {
        return hello::serve(bind);
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.opts.client_threads {
        rt.worker_threads(n.max(1));
    }
    let runtime = rt
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(bench(cli.opts))
}

fn secs(v: Option<f64>, full: f64, quick: f64, is_quick: bool) -> Result<Duration> {
    let s = v.unwrap_or(if is_quick { quick } else { full });
    Duration::try_from_secs_f64(s).with_context(|| format!("invalid duration {s}"))
}

async fn bench(o: Opts) -> Result<()> {
    let started = Instant::now();
    let q = o.quick;
    if !o.server_bin.is_file() {
        bail!(
            "{} not found; build it first: cargo build --release -p callgate -p callgate-bench",
            o.server_bin.display()
        );
    }
    if o.connections.is_empty() || o.connections.contains(&0) {
        bail!("--connections needs positive numbers");
    }
    let postgres = o
        .database_url
        .as_deref()
        .map(runsdb::parse_admin_url)
        .transpose()?;
    let machine = Machine::probe();
    let parent = o.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix("callgate-bench-")
        .tempdir_in(&parent)
        .context("cannot create the working directory")?;
    let scale_sizes = if o.scale_sizes.is_empty() {
        if q {
            vec![10_000]
        } else {
            vec![100_000, 1_000_000]
        }
    } else {
        o.scale_sizes.iter().copied().filter(|n| *n > 0).collect()
    };
    let s = Settings {
        launch: Launch {
            bin: o.server_bin.canonicalize()?,
            admin_token: format!("bench-admin-{}", uuid::Uuid::new_v4().simple()),
            log_filter: o.server_log.clone(),
            postgres,
            keep_databases: o.keep,
        },
        work: tmp.path().to_owned(),
        warmup: secs(o.warmup, 2.0, 0.5, q)?,
        measure: secs(o.duration, 10.0, 2.0, q)?,
        connections: o.connections.clone(),
        dispatch_rates: if !o.dispatch_rates.is_empty() {
            o.dispatch_rates.clone()
        } else if q {
            vec![100.0]
        } else {
            vec![200.0, 3000.0]
        },
        dispatch_time: secs(o.dispatch_secs, 15.0, 3.0, q)?,
        pacing_cps: o.pacing_cps,
        pacing_time: Duration::from_secs(o.pacing_secs.unwrap_or(if q { 5 } else { 60 })),
        scale_connections: o.scale_connections,
        scale_sizes,
        scale_kinds: o
            .scale_kinds
            .iter()
            .map(|k| match k {
                Kind::Stored => ScaleKind::Stored,
                Kind::Queued => ScaleKind::Queued,
            })
            .collect(),
        keep: o.keep,
    };
    if s.dispatch_rates.iter().any(|r| *r <= 0.0) || s.pacing_cps <= 0.0 {
        bail!("rates must be positive");
    }
    // A rate is counted over its window: an empty window has none to report.
    if s.measure.is_zero() || s.dispatch_time.is_zero() || s.pacing_time.is_zero() {
        bail!("--duration, --dispatch-secs and --pacing-secs must be positive");
    }
    let wants = |x: Scenario| o.only.is_empty() || o.only.contains(&x);
    eprintln!(
        "callgate-bench: {} CPUs ({}), load average {}; working in {}",
        machine.cpus,
        machine.cpu_model,
        machine.load_before,
        s.work.display()
    );

    let mut r = Results {
        mode: if q { "quick".into() } else { "full".into() },
        on_postgres: s.launch.postgres.is_some(),
        settings: settings_table(&s),
        ..Results::default()
    };
    r.disk_before = Some(
        disk::probe(&s.work, disk::PROBE_WRITES, disk::PROBE_BLOCK)
            .context("disk probe before the scenarios")?,
    );
    let bodies = scenarios::trigger_bodies(64, None)?;

    if wants(Scenario::Reference) {
        eprintln!("reference: hello-world axum route");
        let (rows, idle) = scenarios::reference(&s, &bodies).await?;
        r.reference = rows;
        r.reference_idle_kib = Some(idle);
    }

    let main_scenarios = [
        Scenario::Trigger,
        Scenario::Unauthorized,
        Scenario::NotFound,
        Scenario::Dispatch,
        Scenario::Pacing,
    ];
    if main_scenarios.iter().any(|x| wants(*x)) {
        let dir = s.work.join("main");
        let (mut server, first) =
            Callgate::start(&s.launch, &dir, &s.work.join("main.log"), true).await?;
        let first = first.context("the server printed no first-start banner")?;
        let tenant = server.configure(&first, s.pacing_cps).await?;
        eprintln!(
            "callgate pid {} on {} (started in {:.2} s)",
            server.proc.pid(),
            server.base,
            server.startup.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.callgate_idle_kib = Some(server.proc.rss_kib()?);
        let targets = Targets::new(&tenant, &bodies)?;
        if wants(Scenario::Trigger) {
            eprintln!("trigger, production route (200)");
            r.trigger = scenarios::sweep(&s, &server, "trigger", &targets.trigger).await?;
            if wants(Scenario::Reference) {
                // At the counts of the 25 % target's reading (docs/benchmarks.md).
                let counts: Vec<usize> = s
                    .connections
                    .iter()
                    .copied()
                    .filter(|&c| c >= s.scale_connections)
                    .collect();
                r.trigger_vs_reference =
                    scenarios::reference_in_turns(&s, &server, &targets.trigger, &bodies, &counts)
                        .await?;
            }
        }
        if wants(Scenario::Unauthorized) {
            eprintln!("bad API key (401)");
            r.unauthorized =
                scenarios::sweep(&s, &server, "bad key", &targets.unauthorized).await?;
        }
        if wants(Scenario::NotFound) {
            eprintln!("unknown trigger (404)");
            r.not_found = scenarios::sweep(&s, &server, "unknown path", &targets.not_found).await?;
        }
        if wants(Scenario::Dispatch) {
            eprintln!("dispatch latency");
            for rate in &s.dispatch_rates {
                let d = scenarios::dispatch(&s, &server, &targets.trigger, *rate).await?;
                r.dispatch.push(d);
            }
        }
        if wants(Scenario::Pacing) {
            eprintln!("pacing accuracy");
            r.pacing = Some(scenarios::pacing(&s, &server, &tenant).await?);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        r.callgate_idle_after_kib = Some(server.proc.rss_kib()?);
        if !r.on_postgres {
            let mut wal = server::db_path(&dir).into_os_string();
            wal.push("-wal");
            r.wal_high_water_bytes = std::fs::metadata(wal).ok().map(|m| m.len());
        }
        server.stop().await?;
    }

    if wants(Scenario::Scale) {
        eprintln!("scale");
        r.scale = scenarios::scale(&s, &bodies).await?;
    }

    r.load_after = report::load_average();
    r.disk_after = Some(
        disk::probe(&s.work, disk::PROBE_WRITES, disk::PROBE_BLOCK)
            .context("disk probe after the scenarios")?,
    );
    r.elapsed_secs = started.elapsed().as_secs_f64();
    let text = report::render(&machine, &r)?;
    if let Some(parent) = o.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let existing = std::fs::read_to_string(&o.out).unwrap_or_default();
    std::fs::write(&o.out, report::splice(&existing, &text))
        .with_context(|| format!("cannot write {}", o.out.display()))?;
    println!("{text}");
    eprintln!("report written to {}", o.out.display());
    if s.keep {
        let kept = tmp.keep();
        eprintln!("working directory kept: {}", kept.display());
    }
    Ok(())
}

fn settings_table(s: &Settings) -> Vec<(String, String)> {
    let list = |v: &[usize]| {
        v.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let store = match &s.launch.postgres {
        Some(u) => format!(
            "PostgreSQL at {} (a fresh database per server start; scale steps on copies of one)",
            runsdb::shown(u)
        ),
        None => "embedded SQLite".into(),
    };
    let mut rows = vec![
        (
            "Server".into(),
            format!(
                "`{}` (separate process, {store}, simulator), `CALLGATE_LOG={}`",
                s.launch.bin.display(),
                s.launch.log_filter
            ),
        ),
        (
            "Load".into(),
            format!(
                "closed loop, HTTP/1.1 keep-alive, one connection per worker; {:.1} s warm-up, then {:.1} s measured",
                s.warmup.as_secs_f64(),
                s.measure.as_secs_f64()
            ),
        ),
        ("Connections".into(), list(&s.connections)),
        (
            "Request".into(),
            format!(
                "`POST`, JSON body with a phone number and a {} B `initial_context`",
                scenarios::CONTEXT_BYTES
            ),
        ),
        (
            "Simulator".into(),
            format!(
                "`{}`, 100 000 calls/s; organisation limits 100 000 concurrent, 10 000 000 queued",
                server::simulator_credentials()
            ),
        ),
        (
            "Dispatch scenario".into(),
            format!(
                "{} triggers/s (64 connections, open loop) for {:.0} s each",
                s.dispatch_rates
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                s.dispatch_time.as_secs_f64()
            ),
        ),
        (
            "Pacing scenario".into(),
            format!(
                "{} calls/s observed for {} s",
                s.pacing_cps,
                s.pacing_time.as_secs()
            ),
        ),
    ];
    if s.launch.postgres.is_some() {
        return rows;
    }
    rows.push((
        "Scale scenario".into(),
        format!(
            "0 and {} runs pre-loaded ({}), {} connections",
            s.scale_sizes
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            s.scale_kinds
                .iter()
                .map(|k| match k {
                    ScaleKind::Stored => "stored",
                    ScaleKind::Queued => "queued",
                })
                .collect::<Vec<_>>()
                .join(", "),
            s.scale_connections
        ),
    ));
    rows
}

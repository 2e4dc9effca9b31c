//! The measurements. Each scenario drives a server process from outside and returns figures;
//! `report` turns them into tables.

use crate::db::{self, Preload};
use crate::load::{self, Outcome, Plan, RequestTemplate};
use crate::pg_preload;
use crate::process::{self, Proc};
use crate::runsdb::{PG_PREFIX, RunsDb};
use crate::server::{Callgate, Launch, Tenant};
use anyhow::{Context, Result, bail};
use callgate_store_postgres::scratch::ScratchDatabase;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::{Map, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs triggered in one scenario must all be dialled and ended within this long.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Size of the `initial_context` object in every trigger body, as compact JSON.
pub const CONTEXT_BYTES: usize = 1024;
/// Connections of the steady-rate scenarios: the 64 of the trigger targets.
const DISPATCH_CONNECTIONS: usize = 64;

/// Everything the scenarios share.
pub struct Settings {
    pub launch: Launch,
    pub work: PathBuf,
    pub warmup: Duration,
    pub measure: Duration,
    pub connections: Vec<usize>,
    /// Steady trigger rates of the dispatch scenario; the first is also used by scale steps.
    pub dispatch_rates: Vec<f64>,
    pub dispatch_time: Duration,
    pub pacing_cps: f64,
    pub pacing_time: Duration,
    pub scale_connections: usize,
    pub scale_sizes: Vec<u64>,
    pub scale_kinds: Vec<ScaleKind>,
    pub keep: bool,
}

impl Settings {
    fn plan(&self, connections: usize) -> Plan {
        Plan {
            connections,
            warmup: self.warmup,
            measure: self.measure,
            interval: None,
            max_requests: None,
        }
    }
}

/// A percentile summary of latencies, in milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// Runs of the sample that had not been dialled when it was taken.
    pub undialled: i64,
}

impl Latency {
    pub fn from_micros(mut us: Vec<i64>, undialled: i64) -> Self {
        us.sort_unstable();
        let at = |q: f64| -> f64 {
            if us.is_empty() {
                return 0.0;
            }
            let i = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1;
            us[i] as f64 / 1000.0
        };
        Self {
            count: us.len() as u64,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: us.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
            undialled,
        }
    }
}

/// One closed-loop load run with what the server did meanwhile.
pub struct LoadRow {
    pub target: &'static str,
    pub connections: usize,
    pub outcome: Outcome,
    pub rss_peak_kib: u64,
    /// CPU time over wall time during the measurement window (100 = one core busy).
    pub server_cpu_pct: f64,
    pub client_cpu_pct: f64,
    /// For the trigger route: dispatch latency of the runs created in the window.
    pub dispatch: Option<Latency>,
    /// Bytes the server sent towards the disk during the window (`write_bytes` of
    /// /proc/<pid>/io: WAL frames, checkpoint copies), when the system reports them.
    pub server_written: Option<u64>,
    /// The server's CPU seconds during the window, by thread name.
    pub server_threads: BTreeMap<String, f64>,
}

impl LoadRow {
    /// Requests answered in the window, successful or not.
    pub fn answered(&self) -> u64 {
        self.outcome.ok + self.outcome.errors
    }

    /// Disk bytes per answered request in the window.
    pub fn written_per_request(&self) -> Option<f64> {
        let requests = self.answered();
        self.server_written
            .filter(|_| requests > 0)
            .map(|b| b as f64 / requests as f64)
    }
}

/// Runs `plan` while sampling the target's memory and CPU.
async fn probed(
    target: &'static str,
    addr: SocketAddr,
    req: Arc<RequestTemplate>,
    plan: Plan,
    server: &Proc,
) -> Result<LoadRow> {
    let connections = plan.connections;
    let (warmup, measure) = (plan.warmup, plan.measure);
    let load = tokio::spawn(load::run(addr, req, plan));
    tokio::time::sleep(warmup).await;
    let server_cpu0 = server.cpu_time()?;
    let threads0 = server.thread_cpu()?;
    let written0 = server.written_bytes();
    let client_cpu0 = process::cpu_time("/proc/self/stat")?;
    let t0 = Instant::now();
    let mut peak = server.rss_kib()?;
    while !load.is_finished() && t0.elapsed() < measure {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(server.rss_kib()?);
    }
    let wall = t0.elapsed().as_secs_f64().max(1e-9);
    let server_cpu = (server.cpu_time()? - server_cpu0).as_secs_f64();
    let server_threads = server
        .thread_cpu()?
        .into_iter()
        .map(|(name, cpu)| {
            let before = threads0.get(&name).copied().unwrap_or_default();
            (name, cpu.saturating_sub(before).as_secs_f64())
        })
        .collect();
    let server_written = written0
        .zip(server.written_bytes())
        .map(|(a, b)| b.saturating_sub(a));
    let client_cpu = (process::cpu_time("/proc/self/stat")? - client_cpu0).as_secs_f64();
    let outcome = load.await.context("load generator panicked")??;
    Ok(LoadRow {
        target,
        connections,
        outcome,
        rss_peak_kib: peak,
        server_cpu_pct: server_cpu / wall * 100.0,
        client_cpu_pct: client_cpu / wall * 100.0,
        dispatch: None,
        server_written,
        server_threads,
    })
}

/// Request bodies: a valid phone number and a realistic ~1 KiB `initial_context`, varied a
/// little so caches of identical bodies cannot help.
pub fn trigger_bodies(count: usize, config_id: Option<i64>) -> Result<Vec<Bytes>> {
    const NAMES: &[&str] = &[
        "Jane Doe",
        "Rahul Mehta",
        "Sofía Álvarez",
        "Chen Wei",
        "Olusegun Adeyemi",
        "Marie Dubois",
        "Hiroshi Tanaka",
        "Fatima Zahra",
    ];
    const NOTES: &str = "Patient asked to be reminded to bring the insurance card and a list of \
        current medication. Prefers a short call; if voicemail, leave the clinic number and the \
        booking reference. Parking is available behind the building, entrance on Oak Street. ";
    (0..count)
        .map(|i| {
            let mut ctx = Map::new();
            ctx.insert("customer_name".into(), json!(NAMES[i % NAMES.len()]));
            ctx.insert("appointment_date".into(), json!("2025-07-14"));
            ctx.insert(
                "appointment_time".into(),
                json!(format!("{:02}:30", 9 + i % 8)),
            );
            ctx.insert(
                "clinic".into(),
                json!("Northside Family Practice, 1200 Market Street, Suite 400, San Francisco"),
            );
            ctx.insert("doctor".into(), json!("Dr. Amelia Hartmann"));
            ctx.insert("account_id".into(), json!(format!("ACC-{:08}", 1000 + i)));
            ctx.insert(
                "booking_reference".into(),
                json!(format!("BK-{:06}", 424_242 + i)),
            );
            ctx.insert("language".into(), json!("en-US"));
            ctx.insert(
                "previous_visits".into(),
                json!([
                    {"date": "2025-01-10", "reason": "annual checkup"},
                    {"date": "2024-06-02", "reason": "flu vaccination"}
                ]),
            );
            ctx.insert(
                "tags".into(),
                json!(["reminder", "existing-patient", "sms-opt-in"]),
            );
            ctx.insert("notes".into(), json!(""));
            let bare = serde_json::to_vec(&ctx)?.len();
            let pad = CONTEXT_BYTES.saturating_sub(bare);
            let notes: String = NOTES.chars().cycle().take(pad).collect();
            ctx.insert("notes".into(), json!(notes));
            let mut body = json!({
                "phone_number": format!("+141555501{:02}", i % 100),
                "initial_context": ctx,
            });
            if let Some(id) = config_id {
                body["telephony_configuration_id"] = json!(id);
            }
            Ok(Bytes::from(serde_json::to_vec(&body)?))
        })
        .collect()
}

fn header(name: &'static str, value: &str) -> Result<(HeaderName, HeaderValue)> {
    Ok((
        HeaderName::from_static(name),
        HeaderValue::from_str(value).context("invalid header value")?,
    ))
}

/// The three callgate request shapes and the reference, all with the same bodies.
pub struct Targets {
    pub trigger: Arc<RequestTemplate>,
    pub unauthorized: Arc<RequestTemplate>,
    pub not_found: Arc<RequestTemplate>,
}

impl Targets {
    pub fn new(tenant: &Tenant, bodies: &[Bytes]) -> Result<Self> {
        let json_ct = (CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let template = |path: String, key: &str, expect: StatusCode| -> Result<_> {
            Ok(Arc::new(RequestTemplate {
                method: Method::POST,
                path,
                headers: vec![json_ct.clone(), header("x-api-key", key)?],
                bodies: bodies.to_vec(),
                expect,
            }))
        };
        let trigger_url = format!("/api/v1/public/agent/{}", tenant.trigger_path);
        // A key of the right shape that was never issued: the full lookup runs and fails.
        let bad_key = format!("cg_{}", uuid::Uuid::new_v4().simple());
        let unknown = format!("/api/v1/public/agent/{}", uuid::Uuid::new_v4());
        Ok(Self {
            trigger: template(trigger_url.clone(), &tenant.api_key, StatusCode::OK)?,
            unauthorized: template(trigger_url, &bad_key, StatusCode::UNAUTHORIZED)?,
            not_found: template(unknown, &tenant.api_key, StatusCode::NOT_FOUND)?,
        })
    }
}

/// The reference: the hello-world server under the same requests.
pub async fn reference(s: &Settings, bodies: &[Bytes]) -> Result<(Vec<LoadRow>, u64)> {
    let (mut proc, addr, req) = start_reference(s, bodies).await?;
    let idle = proc.rss_kib()?;
    let mut rows = Vec::new();
    for &c in &s.connections {
        let row = probed("reference", addr, req.clone(), s.plan(c), &proc).await?;
        progress(&row);
        rows.push(row);
    }
    proc.stop(Duration::from_secs(5)).await?;
    Ok((rows, idle))
}

/// Starts the hello-world reference (the bench's hidden `hello-server` subcommand, a child
/// process) and the request it takes: the trigger's bodies and headers, its own path.
async fn start_reference(
    s: &Settings,
    bodies: &[Bytes],
) -> Result<(Proc, SocketAddr, Arc<RequestTemplate>)> {
    let exe = std::env::current_exe().context("cannot find the bench binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["hello-server", "--bind", "127.0.0.1:0"]);
    let mut proc = Proc::spawn("hello-server", cmd, &s.work.join("hello.log"))?;
    let addr: SocketAddr = proc
        .wait_for(Duration::from_secs(30), |t| {
            t.lines()
                .find_map(|l| l.strip_prefix("hello-server listening on http://"))
                .and_then(|a| a.trim().parse().ok())
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let req = Arc::new(RequestTemplate {
        method: Method::POST,
        path: crate::hello::PATH.into(),
        headers: vec![
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            header(
                "x-api-key",
                "cg_reference_key_of_the_same_length_as_a_real_one",
            )?,
        ],
        bodies: bodies.to_vec(),
        expect: StatusCode::OK,
    });
    Ok((proc, addr, req))
}

/// The trigger load and the same load on the reference, in turns ([`Paired`]: callgate is
/// side 0, the reference side 1), at each of `connections`. The reference step and the
/// trigger steps run minutes apart, and this VM's speed drifts by ±30 % over minutes; turns
/// seconds apart see the same machine, so their ratio is the share of the reference.
pub async fn reference_in_turns(
    s: &Settings,
    server: &Callgate,
    trigger: &Arc<RequestTemplate>,
    bodies: &[Bytes],
    connections: &[usize],
) -> Result<Vec<(usize, Paired)>> {
    let (mut proc, addr, req) = start_reference(s, bodies).await?;
    let sides = [
        Side::callgate(server, trigger),
        Side {
            addr,
            request: req,
            runs: None,
        },
    ];
    let measured = async {
        let mut out = Vec::new();
        for &c in connections {
            let paired = take_turns(s, &sides, c).await?;
            let share = format!("{:.1} %", paired.share().unwrap_or(0.0) * 100.0);
            log_turns(
                &format!("{c} conns, in turns with the reference"),
                &share,
                &paired,
            );
            out.push((c, paired));
        }
        Ok(out)
    }
    .await;
    proc.stop(Duration::from_secs(5)).await?;
    measured
}

/// One comparison in turns in the log, with every turn's rate.
fn log_turns(what: &str, figure: &str, p: &Paired) {
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!(
        "  {what}: {:.0} against {:.0} req/s ({figure}); turns {} / {}",
        p.rates[0],
        p.rates[1],
        list(&p.turns[0]),
        list(&p.turns[1])
    );
}

fn progress(row: &LoadRow) {
    let o = &row.outcome;
    eprintln!(
        "  {:<13} {:>3} conns: {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
        row.target,
        row.connections,
        o.throughput(),
        o.ms(0.5),
        o.ms(0.99),
        o.error_summary()
    );
}

/// Closed-loop runs of `req` at every connection count; for the trigger route also the
/// dispatch latency of the runs each created.
pub async fn sweep(
    s: &Settings,
    server: &Callgate,
    target: &'static str,
    req: &Arc<RequestTemplate>,
) -> Result<Vec<LoadRow>> {
    let mut rows = Vec::new();
    for &c in &s.connections {
        rows.push(trigger_load(s, server, target, req, c).await?);
    }
    Ok(rows)
}

async fn trigger_load(
    s: &Settings,
    server: &Callgate,
    target: &'static str,
    req: &Arc<RequestTemplate>,
    connections: usize,
) -> Result<LoadRow> {
    let before = server.runs.max_run_id().await?;
    let mut row = probed(
        target,
        server.addr,
        req.clone(),
        s.plan(connections),
        &server.proc,
    )
    .await?;
    if req.expect == StatusCode::OK {
        let pending = server.runs.wait_settled(before, SETTLE_TIMEOUT).await?;
        if pending > 0 {
            eprintln!("  warning: {pending} runs had not ended {SETTLE_TIMEOUT:?} after the load");
        }
        let (lat, undialled) = server
            .runs
            .dispatch_latencies(before, Some(row.outcome.window))
            .await?;
        row.dispatch = Some(Latency::from_micros(lat, undialled));
    }
    progress(&row);
    Ok(row)
}

/// Dispatch latency at a moderate, steady trigger rate on the unthrottled configuration.
pub struct DispatchResult {
    pub rate: f64,
    pub duration: Duration,
    pub triggered: u64,
    pub errors: String,
    pub latency: Latency,
    /// The triggers' own answer times (ms) at this rate: p50, p90, p99, max.
    pub answer_ms: [f64; 4],
    /// Disk bytes the server wrote per run created, its whole call included (from before the
    /// load until every run ended), when the system reports them.
    pub written_per_run: Option<f64>,
}

pub async fn dispatch(
    s: &Settings,
    server: &Callgate,
    trigger: &Arc<RequestTemplate>,
    rate: f64,
) -> Result<DispatchResult> {
    let before = server.runs.max_run_id().await?;
    let plan = Plan {
        connections: DISPATCH_CONNECTIONS,
        // Connections open and caches fill first: the figures are for a running server.
        warmup: Duration::from_secs(1),
        measure: s.dispatch_time,
        interval: Some(Duration::from_secs_f64(DISPATCH_CONNECTIONS as f64 / rate)),
        max_requests: None,
    };
    let written0 = server.proc.written_bytes();
    let out = load::run(server.addr, trigger.clone(), plan).await?;
    let pending = server.runs.wait_settled(before, SETTLE_TIMEOUT).await?;
    if pending > 0 {
        eprintln!("  warning: {pending} runs had not ended {SETTLE_TIMEOUT:?} after the load");
    }
    let created = server.runs.max_run_id().await?.saturating_sub(before);
    let written_per_run = written0
        .zip(server.proc.written_bytes())
        .filter(|_| created > 0)
        .map(|(a, b)| b.saturating_sub(a) as f64 / created as f64);
    let (lat, undialled) = server
        .runs
        .dispatch_latencies(before, Some(out.window))
        .await?;
    let latency = Latency::from_micros(lat, undialled);
    eprintln!(
        "  dispatch at {:.0}/s: {} runs, p50 {:.2} ms, p99 {:.2} ms; answers p99 {:.2} ms",
        rate,
        latency.count,
        latency.p50,
        latency.p99,
        out.ms(0.99)
    );
    Ok(DispatchResult {
        answer_ms: [out.ms(0.50), out.ms(0.90), out.ms(0.99), out.max_ms()],
        rate,
        duration: s.dispatch_time,
        triggered: out.ok,
        errors: out.error_summary(),
        latency,
        written_per_run,
    })
}

/// Pacing accuracy over an observation window that starts at the first dial.
#[derive(Debug, Clone)]
pub struct PacingResult {
    pub configured: f64,
    pub window_secs: u64,
    pub enqueued: u64,
    pub dials: u64,
    pub achieved: f64,
    /// Fewest and most dials in one of the window's consecutive whole seconds.
    pub min_second: u64,
    pub max_second: u64,
    /// The whole second whose count is furthest from the configured rate: (index, count).
    pub worst_second: (u64, u64),
    /// Most dials in any one-second interval, wherever it starts.
    pub max_sliding: u64,
}

impl PacingResult {
    pub fn error_pct(&self) -> f64 {
        (self.achieved - self.configured) / self.configured * 100.0
    }

    /// Computes the figures from sorted dial times (µs).
    pub fn from_dials(times: &[i64], configured: f64, window_secs: u64, enqueued: u64) -> Self {
        let t0 = times.first().copied().unwrap_or(0);
        let end = t0 + window_secs as i64 * 1_000_000;
        let inside: Vec<i64> = times.iter().copied().filter(|t| *t < end).collect();
        let mut buckets = vec![0u64; window_secs.max(1) as usize];
        for t in &inside {
            let i = ((t - t0) / 1_000_000) as usize;
            if let Some(b) = buckets.get_mut(i) {
                *b += 1;
            }
        }
        let worst = buckets
            .iter()
            .enumerate()
            .max_by(|a, b| {
                let da = (*a.1 as f64 - configured).abs();
                let db = (*b.1 as f64 - configured).abs();
                da.total_cmp(&db)
            })
            .map(|(i, n)| (i as u64, *n))
            .unwrap_or((0, 0));
        let mut max_sliding = 0u64;
        let mut j = 0usize;
        for i in 0..inside.len() {
            while j < inside.len() && inside[j] < inside[i] + 1_000_000 {
                j += 1;
            }
            max_sliding = max_sliding.max((j - i) as u64);
        }
        Self {
            configured,
            window_secs,
            enqueued,
            dials: inside.len() as u64,
            achieved: inside.len() as f64 / window_secs.max(1) as f64,
            min_second: buckets.iter().copied().min().unwrap_or(0),
            max_second: buckets.iter().copied().max().unwrap_or(0),
            worst_second: worst,
            max_sliding,
        }
    }
}

pub async fn pacing(s: &Settings, server: &Callgate, tenant: &Tenant) -> Result<PacingResult> {
    let before = server.runs.max_run_id().await?;
    let secs = s.pacing_time.as_secs().max(1);
    // Enough that the queue never runs dry during the window.
    let enqueue = (s.pacing_cps * secs as f64 * 1.15).ceil() as u64 + 10;
    let bodies = trigger_bodies(64, Some(tenant.pacing_config))?;
    let targets = Targets::new(tenant, &bodies)?;
    let started = Instant::now();
    let plan = Plan {
        connections: 16,
        warmup: Duration::ZERO,
        measure: Duration::from_secs(120),
        interval: None,
        max_requests: Some(enqueue),
    };
    let out = load::run(server.addr, targets.trigger.clone(), plan).await?;
    if out.errors > 0 {
        bail!("enqueueing the pacing runs failed: {}", out.error_summary());
    }
    eprintln!(
        "  pacing: {} runs enqueued in {:.2} s; observing {secs} s at {} calls/s",
        out.ok,
        started.elapsed().as_secs_f64(),
        s.pacing_cps
    );
    tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(1500)).await;
    let window_us = secs as i64 * 1_000_000;
    let mut times = server.runs.dial_times(tenant.pacing_config, before).await?;
    if let Some(first) = times.first().copied() {
        let now = db::micros(std::time::SystemTime::now());
        if now < first + window_us + 200_000 {
            tokio::time::sleep(Duration::from_micros(
                (first + window_us + 200_000 - now) as u64,
            ))
            .await;
            times = server.runs.dial_times(tenant.pacing_config, before).await?;
        }
    } else {
        bail!("no pacing run was dialled within {secs} s");
    }
    let r = PacingResult::from_dials(&times, s.pacing_cps, secs, out.ok);
    eprintln!(
        "  pacing: achieved {:.3} calls/s ({:+.2} %), per-second min {} max {}, sliding max {}",
        r.achieved,
        r.error_pct(),
        r.min_second,
        r.max_second,
        r.max_sliding
    );
    Ok(r)
}

/// What the scale scenario pre-loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleKind {
    Stored,
    Queued,
}

/// One database size.
pub struct ScaleRow {
    pub preloaded: u64,
    pub kind: Option<ScaleKind>,
    pub preload_time: Duration,
    pub db_bytes: u64,
    pub startup: Duration,
    pub idle_rss_kib: u64,
    pub load: LoadRow,
    pub moderate: DispatchResult,
    /// For a pre-loaded database: the same load alternated with an empty copy.
    pub paired: Option<Paired>,
}

/// Throughput of two servers under the same load, measured in short turns, one server after
/// the other (`PAIRED_ROUNDS` each, in ABBA order): a pre-loaded server and an empty one beside
/// it, or callgate and the reference. This VM's speed drifts by more than what is measured
/// between steps a minute apart; turns a few seconds apart see the same machine.
pub struct Paired {
    /// Answers per second over each side's turns: [pre-loaded or callgate, empty or reference].
    pub rates: [f64; 2],
    pub rounds: usize,
    /// The measured part of each turn.
    pub turn: Duration,
    /// Each turn's answers per second, in order, by side.
    pub turns: [Vec<f64>; 2],
}

impl Paired {
    /// Side 0's throughput against side 1's, as a change (−0.1 = 10 % slower).
    pub fn change(&self) -> Option<f64> {
        self.share().map(|r| r - 1.0)
    }

    /// Side 0's throughput as a share of side 1's.
    pub fn share(&self) -> Option<f64> {
        (self.rates[1] > 0.0).then(|| self.rates[0] / self.rates[1])
    }
}

/// One side of a comparison in turns: where its load goes and, for a callgate server, its
/// runs, whose calls end before the other side's turn starts.
struct Side<'a> {
    addr: SocketAddr,
    request: Arc<RequestTemplate>,
    runs: Option<&'a RunsDb>,
}

impl<'a> Side<'a> {
    /// A callgate server under the trigger load.
    fn callgate(server: &'a Callgate, trigger: &Arc<RequestTemplate>) -> Self {
        Side {
            addr: server.addr,
            request: trigger.clone(),
            runs: Some(&server.runs),
        }
    }
}

/// Turns per server of the paired comparison; even, so that ABBA order balances them.
const PAIRED_ROUNDS: usize = 6;
const PAIRED_WARMUP: Duration = Duration::from_secs(1);
const PAIRED_TURN: Duration = Duration::from_millis(2500);

/// Builds a seed data directory once (configured tenant and one finished run to copy), then
/// for the baseline, each size and the baseline again: copy, pre-load, start, measure, stop.
/// The empty database runs at both ends because this VM's speed drifts over a run by more
/// than the cost being measured, and the first step follows the quiet pacing minute. Each
/// pre-loaded step is also compared with an empty copy started beside it ([`Paired`]).
pub async fn scale(s: &Settings, bodies: &[Bytes]) -> Result<Vec<ScaleRow>> {
    let seed = s.work.join("scale-seed");
    let (server, first) =
        Callgate::start(&s.launch, &seed, &s.work.join("scale-seed.log"), true).await?;
    let first = first.context("the seed server printed no first-start banner")?;
    let tenant = server.configure(&first, s.pacing_cps).await?;
    let template = server.one_finished_run(&tenant, &bodies[0]).await?;
    // On PostgreSQL the seed's database is kept and copied for every step, as its data
    // directory is (the server key stays there).
    let seed_db = server.stop_keeping_database().await?;
    let seed = Seed {
        dir: seed,
        db: seed_db,
    };

    let mut variants: Vec<(u64, Option<ScaleKind>)> = vec![(0, None)];
    for &n in &s.scale_sizes {
        for &k in &s.scale_kinds {
            variants.push((n, Some(k)));
        }
    }
    variants.push((0, None));
    let targets = Targets::new(&tenant, bodies)?;
    let mut rows = Vec::new();
    for (step, (n, kind)) in variants.into_iter().enumerate() {
        let label = match kind {
            None if step == 0 => "baseline".to_owned(),
            None => "baseline-again".to_owned(),
            Some(ScaleKind::Stored) => format!("{n}-stored"),
            Some(ScaleKind::Queued) => format!("{n}-queued"),
        };
        eprintln!("scale: {label}");
        let (dir, database) = seed.copy(s, &label).await?;
        let db_file = crate::server::db_path(&dir);
        let how = kind.map(|k| match k {
            ScaleKind::Stored => Preload::Stored,
            ScaleKind::Queued => Preload::Queued {
                config_id: tenant.backlog_config,
            },
        });
        let preload_time = match (how, &database) {
            (None, _) => Duration::ZERO,
            (Some(how), Some(db)) => pg_preload::preload(db.url(), template, n, how).await?,
            (Some(how), None) => db::preload(&db_file, template, n, how)?,
        };
        if how.is_some() {
            eprintln!(
                "  pre-loaded {n} runs in {:.1} s",
                preload_time.as_secs_f64()
            );
        }
        let db_bytes = match &database {
            Some(db) => pg_preload::size_bytes(db.url()).await?,
            None => db::size_bytes(&db_file),
        };
        let server = start_step(s, &dir, &label, database).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle_rss_kib = server.proc.rss_kib()?;
        let load =
            trigger_load(s, &server, "trigger", &targets.trigger, s.scale_connections).await?;
        let first = s.dispatch_rates.first().copied().unwrap_or(200.0);
        let moderate = dispatch(s, &server, &targets.trigger, first).await?;
        let paired = match how {
            None => None,
            Some(_) => Some(paired_with_empty(s, &seed, &label, &server, &targets.trigger).await?),
        };
        rows.push(ScaleRow {
            preloaded: n,
            kind,
            preload_time,
            db_bytes,
            startup: server.startup,
            idle_rss_kib,
            load,
            moderate,
            paired,
        });
        stop_step(s, server, &dir).await?;
    }
    if let Some(seed) = seed.db {
        if s.launch.keep_databases {
            eprintln!("database kept: {}", seed.keep());
        } else {
            seed.drop_database()
                .await
                .map_err(|e| anyhow::anyhow!("cannot drop the seed database: {e}"))?;
        }
    }
    Ok(rows)
}

/// The configured database every scale step starts from.
struct Seed {
    dir: PathBuf,
    /// On PostgreSQL, the seed's database (its data directory holds only the server key).
    db: Option<ScratchDatabase>,
}

impl Seed {
    /// A fresh copy for one step: its data directory and, on PostgreSQL, its database.
    async fn copy(&self, s: &Settings, label: &str) -> Result<(PathBuf, Option<ScratchDatabase>)> {
        let dir = s.work.join(format!("scale-{label}"));
        copy_dir(&self.dir, &dir)?;
        let database = match &self.db {
            Some(seed) => Some(
                ScratchDatabase::copy_of(seed, PG_PREFIX)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot copy the seed database: {e}"))?,
            ),
            None => None,
        };
        Ok((dir, database))
    }
}

/// Starts a server on a step's copy of the seed, logging to `scale-<label>.log`.
async fn start_step(
    s: &Settings,
    dir: &Path,
    label: &str,
    database: Option<ScratchDatabase>,
) -> Result<Callgate> {
    let log = s.work.join(format!("scale-{label}.log"));
    let (server, _) = Callgate::start_on(&s.launch, dir, &log, false, database).await?;
    Ok(server)
}

/// Stops a step's server (dropping its database on PostgreSQL) and removes its copy unless
/// the run keeps its files.
async fn stop_step(s: &Settings, mut server: Callgate, dir: &Path) -> Result<()> {
    server.stop().await?;
    drop(server);
    if !s.keep {
        std::fs::remove_dir_all(dir).ok();
    }
    Ok(())
}

/// Starts an empty copy of the seed beside `loaded` and runs the trigger load on the two in
/// turns ([`Paired`]); the copy is stopped and removed afterwards.
async fn paired_with_empty(
    s: &Settings,
    seed: &Seed,
    label: &str,
    loaded: &Callgate,
    trigger: &Arc<RequestTemplate>,
) -> Result<Paired> {
    let label = format!("{label}-empty-beside");
    let (dir, database) = seed.copy(s, &label).await?;
    let empty = start_step(s, &dir, &label, database).await?;
    let sides = [loaded, &empty].map(|server| Side::callgate(server, trigger));
    let measured = take_turns(s, &sides, s.scale_connections).await;
    drop(sides);
    stop_step(s, empty, &dir).await?;
    let paired = measured?;
    let change = format!("{:+.1} %", paired.change().unwrap_or(0.0) * 100.0);
    log_turns("beside an empty copy, in turns", &change, &paired);
    Ok(paired)
}

/// Which server takes each turn (0 the pre-loaded, 1 the empty one): A B B A A B B A…, so that
/// over an even number of rounds both sit at the same mean position and a steady drift of the
/// machine's speed favours neither.
fn abba(rounds: usize) -> impl Iterator<Item = usize> {
    (0..rounds).flat_map(|round| if round % 2 == 0 { [0, 1] } else { [1, 0] })
}

/// The same closed-loop load on the two sides in turns ([`abba`]).
async fn take_turns(s: &Settings, sides: &[Side<'_>; 2], connections: usize) -> Result<Paired> {
    // By side: answers and measured seconds.
    let mut ok = [0u64; 2];
    let mut secs = [0f64; 2];
    let mut turns: [Vec<f64>; 2] = Default::default();
    for which in abba(PAIRED_ROUNDS) {
        let side = &sides[which];
        let before = match side.runs {
            Some(runs) => Some((runs, runs.max_run_id().await?)),
            None => None,
        };
        let plan = Plan {
            connections,
            // Each turn opens its connections afresh; the server is already warm.
            warmup: s.warmup.min(PAIRED_WARMUP),
            measure: s.measure.min(PAIRED_TURN),
            interval: None,
            max_requests: None,
        };
        let out = load::run(side.addr, side.request.clone(), plan).await?;
        // This turn's calls end before the other side's turn starts.
        if let Some((runs, before)) = before {
            runs.wait_settled(before, SETTLE_TIMEOUT).await?;
        }
        ok[which] += out.ok;
        secs[which] += out.measured.as_secs_f64();
        turns[which].push(out.throughput());
    }
    let rate = |i: usize| ok[i] as f64 / secs[i].max(1e-9);
    Ok(Paired {
        rates: [rate(0), rate(1)],
        rounds: PAIRED_ROUNDS,
        turn: s.measure.min(PAIRED_TURN),
        turns,
    })
}

/// Copies a stopped server's data directory (database, WAL, server key).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn trigger_bodies_carry_a_one_kibibyte_context() {
        for body in trigger_bodies(20, Some(7)).unwrap() {
            let v: Value = serde_json::from_slice(&body).unwrap();
            let ctx = serde_json::to_vec(&v["initial_context"]).unwrap();
            assert_eq!(ctx.len(), CONTEXT_BYTES);
            assert_eq!(v["telephony_configuration_id"], 7);
            assert!(
                v["phone_number"]
                    .as_str()
                    .unwrap()
                    .starts_with("+141555501")
            );
        }
    }

    #[test]
    fn turns_in_abba_order_give_both_servers_the_same_mean_position() {
        let order: Vec<usize> = abba(PAIRED_ROUNDS).collect();
        assert_eq!(order.len(), 2 * PAIRED_ROUNDS);
        assert_eq!(&order[..4], &[0, 1, 1, 0]);
        let position_sum =
            |who: usize| -> usize { (0..order.len()).filter(|&i| order[i] == who).sum() };
        assert_eq!(position_sum(0), position_sum(1));
        assert_eq!(order.iter().filter(|&&w| w == 0).count(), PAIRED_ROUNDS);
    }

    #[test]
    fn latency_percentiles_use_the_nearest_rank() {
        let l = Latency::from_micros((1..=100).map(|v| v * 1000).collect(), 2);
        assert_eq!(l.count, 100);
        assert_eq!(l.p50, 50.0);
        assert_eq!(l.p99, 99.0);
        assert_eq!(l.max, 100.0);
        assert_eq!(l.undialled, 2);
    }

    #[test]
    fn an_even_ten_per_second_schedule_is_exact() {
        let times: Vec<i64> = (0..700).map(|i| 5_000_000 + i * 100_000).collect();
        let r = PacingResult::from_dials(&times, 10.0, 60, 700);
        assert_eq!(r.dials, 600);
        assert_eq!(r.achieved, 10.0);
        assert_eq!((r.min_second, r.max_second, r.max_sliding), (10, 10, 10));
        assert_eq!(r.error_pct(), 0.0);
    }

    #[test]
    fn a_burst_shows_in_the_worst_and_sliding_windows() {
        let mut times: Vec<i64> = (0..20).map(|i| i * 100_000).collect();
        times.extend((0..5).map(|i| 1_950_000 + i * 1_000));
        times.sort_unstable();
        let r = PacingResult::from_dials(&times, 10.0, 2, 25);
        assert_eq!(r.worst_second, (1, 15));
        assert_eq!(r.max_sliding, 15);
        assert_eq!(r.achieved, 12.5);
        assert!((r.error_pct() - 25.0).abs() < 1e-9);
    }
}

//! The machine description and the markdown tables written to `--out` and printed.

use crate::disk::DiskProbe;
use crate::scenarios::{
    DispatchResult, Latency, LoadRow, PacingResult, Paired, ScaleKind, ScaleRow,
};
use anyhow::Result;
use std::fmt::Write;
use std::process::Command;

/// Where the figures were taken.
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub load_before: String,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            memory,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            load_before: load_average(),
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// `git describe` of the working tree, when there is one.
pub fn revision() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// Markers of the figures section in a hand-written document (docs/benchmarks.md).
pub const FIGURES_START: &str = "<!-- callgate-bench:figures:start -->";
pub const FIGURES_END: &str = "<!-- callgate-bench:figures:end -->";

/// The new file content: `report` between the markers when `existing` has both, else the
/// report alone (headings one level down inside a document, as its own file as rendered).
pub fn splice(existing: &str, report: &str) -> String {
    let (Some(a), Some(b)) = (existing.find(FIGURES_START), existing.find(FIGURES_END)) else {
        return report.to_owned();
    };
    if b < a {
        return report.to_owned();
    }
    let nested: String = report
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("#{l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    format!(
        "{}{FIGURES_START}\n\n{}\n{}",
        &existing[..a],
        nested.trim_end(),
        &existing[b..]
    )
}

/// Everything measured in one run.
#[derive(Default)]
pub struct Results {
    pub mode: String,
    /// The server kept its data in PostgreSQL (else the embedded SQLite).
    pub on_postgres: bool,
    pub settings: Vec<(String, String)>,
    pub reference: Vec<LoadRow>,
    pub reference_idle_kib: Option<u64>,
    pub callgate_idle_kib: Option<u64>,
    pub callgate_idle_after_kib: Option<u64>,
    /// The SQLite WAL file's size after the main server's scenarios: its high-water mark,
    /// as a restart rewrites the log from the top without shrinking the file.
    pub wal_high_water_bytes: Option<u64>,
    pub trigger: Vec<LoadRow>,
    /// The trigger load and the reference in turns, by connection count.
    pub trigger_vs_reference: Vec<(usize, Paired)>,
    pub unauthorized: Vec<LoadRow>,
    pub not_found: Vec<LoadRow>,
    pub dispatch: Vec<DispatchResult>,
    pub pacing: Option<PacingResult>,
    pub scale: Vec<ScaleRow>,
    pub load_after: String,
    /// The working directory's disk before and after the scenarios.
    pub disk_before: Option<DiskProbe>,
    pub disk_after: Option<DiskProbe>,
    pub elapsed_secs: f64,
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn lat_pair(l: &Latency) -> String {
    let mut s = format!("{} / {}", ms(l.p50), ms(l.p99));
    if l.undialled > 0 {
        s.push_str(&format!(" ({} undialled)", l.undialled));
    }
    s
}

/// Renders the whole report.
pub fn render(machine: &Machine, r: &Results) -> Result<String> {
    let mut out = String::new();
    let o = &mut out;
    writeln!(o, "# callgate benchmark results\n")?;
    writeln!(
        o,
        "Measured by `callgate-bench` ({} mode) at {} on revision `{}`, in {:.0} s.\n",
        r.mode,
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        revision(),
        r.elapsed_secs
    )?;
    writeln!(o, "## Machine\n")?;
    writeln!(o, "| | |\n|---|---|")?;
    writeln!(o, "| CPUs (nproc) | {} |", machine.cpus)?;
    writeln!(o, "| CPU model | {} |", machine.cpu_model)?;
    writeln!(o, "| Memory | {} |", machine.memory)?;
    writeln!(o, "| Kernel | {} |", machine.kernel)?;
    writeln!(
        o,
        "| Load average before / after | {} / {} |",
        machine.load_before, r.load_after
    )?;
    for (when, d) in [("before", &r.disk_before), ("after", &r.disk_after)] {
        if let Some(d) = d {
            writeln!(
                o,
                "| Disk {when} ({} × {} KiB writes, each flushed) | {} |",
                d.writes,
                d.block_bytes / 1024,
                d.summary()
            )?;
        }
    }
    writeln!(
        o,
        "\nThe load generator runs on the same machine and shares its CPUs with the server. Every accepted trigger waits for a WAL flush: a disk that flushes slowly, or takes only a few MiB/s, bounds the trigger rate whatever the CPUs do (the disk rows).\n"
    )?;
    writeln!(o, "## Settings\n")?;
    writeln!(o, "| | |\n|---|---|")?;
    for (k, v) in &r.settings {
        writeln!(o, "| {k} | {v} |")?;
    }
    writeln!(o)?;

    let reference_at = |c: usize| {
        r.reference
            .iter()
            .find(|x| x.connections == c)
            .map(|x| x.outcome.throughput())
    };
    // The last member: whether the section ends with the CPU-by-thread table.
    let sections: [(&str, &str, &[LoadRow], bool); 4] = [
        (
            "Reference: hello-world axum JSON route",
            "What this machine can do at all with the same requests: one axum route that reads the body and answers a constant JSON object, in its own process.",
            &r.reference,
            false,
        ),
        (
            "Trigger, production route (200)",
            "`POST /api/v1/public/agent/{trigger_path}` with a valid key and a ~1 KiB `initial_context`; every answer must be 200. Each accepted trigger is a durable run that the dispatcher dials on the simulator (ring 10 ms, talk 10 ms). Dispatch = from the run's creation to the simulator receiving its dial request (its first event), for the runs created inside the measurement window, read after they all ended.",
            &r.trigger,
            true,
        ),
        (
            "Bad API key (401)",
            "The same request with a well-formed key that was never issued.",
            &r.unauthorized,
            false,
        ),
        (
            "Unknown trigger path (404)",
            "The same request with a valid key to a trigger path that does not exist.",
            &r.not_found,
            false,
        ),
    ];
    for (title, what, rows, by_thread) in sections {
        if rows.is_empty() {
            continue;
        }
        writeln!(o, "## {title}\n\n{what}\n")?;
        let with_dispatch = rows.iter().any(|x| x.dispatch.is_some());
        write!(
            o,
            "| Conns | Req/s | vs reference | p50 ms | p90 ms | p99 ms | max ms | Errors | Server RSS peak MiB | Server CPU % | Client CPU % | Server disk writes KiB/req |"
        )?;
        if with_dispatch {
            write!(o, " Dispatch p50 / p99 ms |")?;
        }
        write!(
            o,
            "\n|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
        )?;
        if with_dispatch {
            write!(o, "---:|")?;
        }
        writeln!(o)?;
        for x in rows {
            let t = x.outcome.throughput();
            let ratio = reference_at(x.connections)
                .filter(|rt| *rt > 0.0 && x.target != "reference")
                .map(|rt| format!("{:.0} %", t / rt * 100.0))
                .unwrap_or_else(|| "–".into());
            write!(
                o,
                "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} |",
                x.connections,
                t,
                ratio,
                ms(x.outcome.ms(0.50)),
                ms(x.outcome.ms(0.90)),
                ms(x.outcome.ms(0.99)),
                ms(x.outcome.max_ms()),
                x.outcome.error_summary(),
                mib(x.rss_peak_kib),
                x.server_cpu_pct,
                x.client_cpu_pct,
                x.written_per_request()
                    .map(|b| format!("{:.1}", b / 1024.0))
                    .unwrap_or_else(|| "–".into())
            )?;
            if with_dispatch {
                let d = x.dispatch.as_ref().map(lat_pair).unwrap_or_default();
                write!(o, " {d} |")?;
            }
            writeln!(o)?;
        }
        writeln!(o)?;
        if by_thread {
            thread_table(o, rows)?;
            turns_with_reference(o, &r.trigger_vs_reference)?;
        }
    }

    if !r.dispatch.is_empty() {
        writeln!(
            o,
            "## Dispatch latency, and trigger answers below saturation\n"
        )?;
        writeln!(
            o,
            "Triggers at steady rates (open loop over 64 connections, {} s each) on a configuration allowing 100 000 calls/s. Dispatch = from the moment each run was built (before its durable write) to the simulator receiving its dial request (its first event, `ringing`), both on the server's clock; a run that nothing waits before is claimed as it is written, so this includes its commit. Answer = the trigger's own response time at the client.\n",
            r.dispatch[0].duration.as_secs_f64()
        )?;
        writeln!(
            o,
            "| Rate /s | Triggered | Dialled | Dispatch p50 ms | p90 ms | p99 ms | max ms | Not dialled | Answer p50 ms | Answer p99 ms | Answer max ms | Trigger errors | Server disk writes KiB/run |"
        )?;
        writeln!(
            o,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
        )?;
        for d in &r.dispatch {
            let l = &d.latency;
            writeln!(
                o,
                "| {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                d.rate,
                d.triggered,
                l.count,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.max),
                l.undialled,
                ms(d.answer_ms[0]),
                ms(d.answer_ms[2]),
                ms(d.answer_ms[3]),
                d.errors,
                d.written_per_run
                    .map(|b| format!("{:.1}", b / 1024.0))
                    .unwrap_or_else(|| "–".into())
            )?;
        }
        writeln!(o)?;
    }

    if let Some(p) = &r.pacing {
        writeln!(o, "## Pacing accuracy\n")?;
        writeln!(
            o,
            "{} runs queued at once on a simulator configuration limited to {} calls/s; the window starts at the first dial and lasts {} s. \"Per second\" counts dials in each of the window's consecutive whole seconds; \"sliding\" is the most dials in any one-second interval.\n",
            p.enqueued, p.configured, p.window_secs
        )?;
        writeln!(
            o,
            "| Configured /s | Window s | Dials | Achieved /s | Error | Per second min / max | Worst second (index: dials) | Sliding 1 s max |"
        )?;
        writeln!(o, "|---:|---:|---:|---:|---:|---|---|---:|")?;
        writeln!(
            o,
            "| {} | {} | {} | {:.3} | {:+.2} % | {} / {} | {}: {} | {} |\n",
            p.configured,
            p.window_secs,
            p.dials,
            p.achieved,
            p.error_pct(),
            p.min_second,
            p.max_second,
            p.worst_second.0,
            p.worst_second.1,
            p.max_sliding
        )?;
    }

    if !r.scale.is_empty() {
        writeln!(o, "## Scale: runs already in the database\n")?;
        writeln!(
            o,
            "Each row starts the server on a copy of one configured database to which the runs were added directly {} while it was stopped. *Stored*: ended runs (copies of a real one, ~1 KiB context each), one second apart. *Queued*: runs waiting on a configuration that dials one call per 1000 s, so the backlog stays queued. Then the {}-connection trigger load and the steady-rate dispatch measurement run as above. The empty database (0) runs first and again last; *vs 0* compares with the mean of those two, as the machine's speed drifts over a run. The machine's speed also drifts between steps a minute apart by more than the cost being measured, so each pre-loaded step is also compared in turns: an empty copy is started beside the pre-loaded server and the same load runs on the two alternately, {} turns of {:.1} s each in ABBA order; *vs empty, in turns* is the pre-loaded server's throughput over its turns against the empty copy's over its turns.\n",
            if r.on_postgres {
                "(one `INSERT … SELECT` per table, then `VACUUM (ANALYZE)` and `CHECKPOINT`)"
            } else {
                "in SQLite"
            },
            r.scale.first().map(|x| x.load.connections).unwrap_or(64),
            r.scale
                .iter()
                .find_map(|x| x.paired.as_ref())
                .map(|p| p.rounds)
                .unwrap_or(0),
            r.scale
                .iter()
                .find_map(|x| x.paired.as_ref())
                .map(|p| p.turn.as_secs_f64())
                .unwrap_or(0.0)
        )?;
        writeln!(
            o,
            "| Runs in DB | Kind | DB size MiB | Pre-load s | Start-up s | Idle RSS MiB | Req/s | vs 0 | vs empty, in turns | p50 ms | p99 ms | Errors | Peak RSS MiB | Dispatch under load p50 / p99 ms | Dispatch at {:.0}/s p50 / p99 ms |",
            r.scale.first().map(|x| x.moderate.rate).unwrap_or(0.0)
        )?;
        writeln!(
            o,
            "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|"
        )?;
        let empty: Vec<f64> = r
            .scale
            .iter()
            .filter(|x| x.kind.is_none())
            .map(|x| x.load.outcome.throughput())
            .collect();
        let base = (!empty.is_empty()).then(|| empty.iter().sum::<f64>() / empty.len() as f64);
        for x in &r.scale {
            let t = x.load.outcome.throughput();
            let vs = base
                .filter(|b| *b > 0.0)
                .map(|b| format!("{:+.1} %", (t / b - 1.0) * 100.0))
                .unwrap_or_else(|| "–".into());
            let paired = x
                .paired
                .as_ref()
                .and_then(|p| Some((p, p.change()?)))
                .map(|(p, c)| {
                    format!(
                        "{:+.1} % ({:.0} / {:.0}; turns {} / {})",
                        c * 100.0,
                        p.rates[0],
                        p.rates[1],
                        range(&p.turns[0]),
                        range(&p.turns[1])
                    )
                })
                .unwrap_or_else(|| "–".into());
            let kind = match x.kind {
                None => "–",
                Some(ScaleKind::Stored) => "stored",
                Some(ScaleKind::Queued) => "queued",
            };
            writeln!(
                o,
                "| {} | {} | {:.1} | {:.1} | {:.2} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                x.preloaded,
                kind,
                x.db_bytes as f64 / 1024.0 / 1024.0,
                x.preload_time.as_secs_f64(),
                x.startup.as_secs_f64(),
                mib(x.idle_rss_kib),
                t,
                vs,
                paired,
                ms(x.load.outcome.ms(0.50)),
                ms(x.load.outcome.ms(0.99)),
                x.load.outcome.error_summary(),
                mib(x.load.rss_peak_kib),
                x.load.dispatch.as_ref().map(lat_pair).unwrap_or_default(),
                lat_pair(&x.moderate.latency)
            )?;
        }
        writeln!(o)?;
    }

    writeln!(o, "## Memory (resident set size, VmRSS)\n")?;
    writeln!(
        o,
        "Peaks are sampled every 100 ms. The trigger, 401 and 404 rows are one server process in that order, so memory kept from an earlier scenario shows in later ones; each scale row is a fresh process.\n"
    )?;
    writeln!(o, "| Process, state | MiB |\n|---|---:|")?;
    let mut mem = |label: String, kib: Option<u64>| -> Result<()> {
        if let Some(k) = kib {
            writeln!(o, "| {label} | {} |", mib(k))?;
        }
        Ok(())
    };
    mem("reference, idle".into(), r.reference_idle_kib)?;
    mem(
        "reference, peak under load".into(),
        r.reference.iter().map(|x| x.rss_peak_kib).max(),
    )?;
    mem("callgate, idle after start".into(), r.callgate_idle_kib)?;
    for (name, rows) in [
        ("trigger 200", &r.trigger),
        ("bad key 401", &r.unauthorized),
        ("unknown trigger 404", &r.not_found),
    ] {
        for x in rows.iter() {
            mem(
                format!("callgate, peak under {name} at {} conns", x.connections),
                Some(x.rss_peak_kib),
            )?;
        }
    }
    mem(
        "callgate, idle after all load".into(),
        r.callgate_idle_after_kib,
    )?;
    let mut empty_seen = false;
    for x in &r.scale {
        let what = match x.kind {
            None if empty_seen => "an empty database, again".to_owned(),
            None => {
                empty_seen = true;
                "an empty database".to_owned()
            }
            Some(ScaleKind::Stored) => format!("{} stored runs", x.preloaded),
            Some(ScaleKind::Queued) => format!("{} queued runs", x.preloaded),
        };
        mem(format!("callgate, idle on {what}"), Some(x.idle_rss_kib))?;
        mem(
            format!("callgate, peak under load on {what}"),
            Some(x.load.rss_peak_kib),
        )?;
    }
    writeln!(o)?;
    if let Some(b) = r.wal_high_water_bytes {
        writeln!(
            o,
            "SQLite WAL file at the end of the main server's scenarios (trigger, 401, 404, dispatch, pacing): {} MiB, the most the log held at once (a restart rewrites it from the top without shrinking the file; the writer copies it all back by 32 MiB at the latest).\n",
            mib(b / 1024)
        )?;
    }
    Ok(out)
}

/// The server's threads as the report groups them. Linux keeps 15 bytes of a thread's name,
/// so `sqlite-checkpoint` reads `sqlite-checkpoi`.
const THREAD_GROUPS: [(&str, &str); 3] = [
    ("request workers", "tokio-rt-worker"),
    ("SQLite writer (and its WAL flush)", "sqlite-writer"),
    ("checkpoint", "sqlite-checkpoi"),
];

/// CPU time per answered request by server thread (and the load generator's), for the rows
/// whose thread times were read: where each request's CPU goes, steadier from run to run
/// than the rates themselves.
/// The trigger load and the reference in turns: the share of the reference that a drift of
/// the machine between the two steps cannot decide.
fn turns_with_reference(o: &mut String, rows: &[(usize, Paired)]) -> std::fmt::Result {
    let Some((_, first)) = rows.first() else {
        return Ok(());
    };
    writeln!(
        o,
        "The same load on callgate and on the reference in turns, so that both see the same machine (the reference step above runs minutes before): {} turns of {:.1} s a side in ABBA order, each turn's calls ending before the next turn starts. *Share* = callgate's answers per second over its turns ÷ the reference's over its turns.\n",
        first.rounds,
        first.turn.as_secs_f64()
    )?;
    writeln!(
        o,
        "| Conns | callgate req/s | reference req/s | Share | callgate turns | reference turns |"
    )?;
    writeln!(o, "|---:|---:|---:|---:|---|---|")?;
    for (c, p) in rows {
        writeln!(
            o,
            "| {c} | {:.0} | {:.0} | {} | {} | {} |",
            p.rates[0],
            p.rates[1],
            p.share()
                .map(|x| format!("{:.1} %", x * 100.0))
                .unwrap_or_else(|| "–".into()),
            range(&p.turns[0]),
            range(&p.turns[1])
        )?;
    }
    writeln!(o)
}

fn thread_table(o: &mut String, rows: &[LoadRow]) -> std::fmt::Result {
    let rows: Vec<&LoadRow> = rows
        .iter()
        .filter(|x| !x.server_threads.is_empty() && x.answered() > 0)
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        o,
        "CPU time per answered request in the same windows, by server thread (µs; the load generator shares the machine):\n"
    )?;
    write!(o, "| Conns |")?;
    for (heading, _) in THREAD_GROUPS {
        write!(o, " {heading} |")?;
    }
    writeln!(o, " other | server | load generator |")?;
    writeln!(
        o,
        "|---:|{}---:|---:|---:|",
        "---:|".repeat(THREAD_GROUPS.len())
    )?;
    for x in rows {
        let per_request = |secs: f64| secs * 1e6 / x.answered() as f64;
        let total: f64 = x.server_threads.values().sum();
        let mut grouped = 0.0;
        write!(o, "| {} |", x.connections)?;
        for (_, name) in THREAD_GROUPS {
            let secs = x.server_threads.get(name).copied().unwrap_or(0.0);
            grouped += secs;
            write!(o, " {:.1} |", per_request(secs))?;
        }
        let client = x.client_cpu_pct / 100.0 * x.outcome.measured.as_secs_f64();
        writeln!(
            o,
            " {:.1} | {:.1} | {:.1} |",
            // Rounding of the sums can leave a hair below zero.
            per_request((total - grouped).max(0.0)),
            per_request(total),
            per_request(client)
        )?;
    }
    writeln!(o)
}

/// `min–max` of per-turn rates, whole numbers.
fn range(rates: &[f64]) -> String {
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    if rates.is_empty() {
        "–".into()
    } else {
        format!("{min:.0}–{max:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_replaces_only_the_figures_section_of_a_document() {
        let doc = format!(
            "# Benchmarks\n\nHow to run.\n\n{FIGURES_START}\nold\n{FIGURES_END}\n\nTail.\n"
        );
        let out = splice(
            &doc,
            "# callgate benchmark results\n\n## Machine\n\n| a |\n",
        );
        assert_eq!(
            out,
            format!(
                "# Benchmarks\n\nHow to run.\n\n{FIGURES_START}\n\n## callgate benchmark results\n\n### Machine\n\n| a |\n{FIGURES_END}\n\nTail.\n"
            )
        );
    }

    #[test]
    fn the_wal_high_water_mark_is_reported_when_measured() {
        let machine = Machine {
            cpus: 2,
            cpu_model: "test".into(),
            memory: "1 GiB".into(),
            kernel: "test".into(),
            load_before: "0".into(),
        };
        let mut r = Results {
            wal_high_water_bytes: Some(15 * 1024 * 1024 + 512 * 1024),
            ..Results::default()
        };
        let text = render(&machine, &r).expect("render");
        assert!(
            text.contains("SQLite WAL file at the end of the main server"),
            "{text}"
        );
        assert!(text.contains(": 15.5 MiB,"), "{text}");
        r.wal_high_water_bytes = None;
        let text = render(&machine, &r).expect("render");
        assert!(!text.contains("WAL file at the end"), "{text}");
    }

    #[test]
    fn cpu_per_request_is_reported_by_server_thread() {
        use crate::load::Outcome;
        use std::collections::BTreeMap;
        use std::time::{Duration, SystemTime};
        let threads: BTreeMap<String, f64> = [
            ("tokio-rt-worker", 0.5),
            ("sqlite-writer", 0.4),
            ("sqlite-checkpoi", 0.05),
            ("tokio-runtime-w", 0.05),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_owned(), s))
        .collect();
        let row = |threads: BTreeMap<String, f64>| LoadRow {
            target: "trigger",
            connections: 64,
            outcome: Outcome {
                ok: 9_000,
                errors: 1_000,
                error_kinds: BTreeMap::new(),
                hist: hdrhistogram::Histogram::new(3).expect("histogram"),
                measured: Duration::from_secs(1),
                window: (SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH),
            },
            rss_peak_kib: 0,
            server_cpu_pct: 110.0,
            client_cpu_pct: 20.0,
            dispatch: None,
            server_written: None,
            server_threads: threads,
        };
        let mut text = String::new();
        thread_table(&mut text, &[row(threads)]).expect("render");
        // 10 000 answers: 0.5 s of the workers is 50 µs each; 0.2 s of the client 20 µs.
        assert!(
            text.contains("| 64 | 50.0 | 40.0 | 5.0 | 5.0 | 100.0 | 20.0 |"),
            "{text}"
        );
        let mut text = String::new();
        thread_table(&mut text, &[row(BTreeMap::new())]).expect("render");
        assert!(text.is_empty(), "{text}");
    }

    #[test]
    fn the_share_of_the_reference_in_turns_is_callgate_over_the_reference() {
        use std::time::Duration;
        let paired = |callgate: f64, reference: f64| Paired {
            rates: [callgate, reference],
            rounds: 6,
            turn: Duration::from_millis(2500),
            turns: [
                vec![callgate - 500.0, callgate + 500.0],
                vec![reference, reference + 1_000.0],
            ],
        };
        let mut text = String::new();
        turns_with_reference(
            &mut text,
            &[(64, paired(20_000.0, 80_000.0)), (256, paired(0.0, 0.0))],
        )
        .expect("render");
        assert!(text.contains("6 turns of 2.5 s a side"), "{text}");
        assert!(
            text.contains("| 64 | 20000 | 80000 | 25.0 % | 19500–20500 | 80000–81000 |"),
            "{text}"
        );
        assert!(text.contains("| 256 | 0 | 0 | – |"), "{text}");
        let mut text = String::new();
        turns_with_reference(&mut text, &[]).expect("render");
        assert!(text.is_empty(), "{text}");
    }

    #[test]
    fn a_file_without_markers_is_replaced_whole() {
        assert_eq!(splice("anything", "# report\n"), "# report\n");
    }
}

//! Direct access to the embedded store's SQLite file: read-only queries for timings the API
//! would only give page by page (`created_at`, `dialed_at` of thousands of runs), and the bulk
//! pre-load of the scale scenario, done while the server is stopped.
//!
//! The pre-load copies a real run the server wrote (and its events) rather than spelling out
//! the schema, so it keeps working when columns are added; only the column names it rewrites
//! (ids, times, status fields) are assumed. Times are Unix microseconds (0001_initial.sql).

use anyhow::{Context, Result, bail};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Opens the database read-only next to a running server (WAL allows concurrent readers).
pub fn open_ro(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", path.display()))?;
    c.busy_timeout(Duration::from_secs(10))?;
    Ok(c)
}

pub fn max_run_id(c: &Connection) -> Result<i64> {
    Ok(c.query_row("SELECT COALESCE(MAX(id), 0) FROM runs", [], |r| r.get(0))?)
}

pub fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Waits until every run with an id above `after_id` has been dialled and has ended, so the
/// next scenario starts on an idle server. Returns how many were still pending at `timeout`.
pub async fn wait_settled(path: &Path, after_id: i64, timeout: Duration) -> Result<i64> {
    let c = open_ro(path)?;
    let deadline = Instant::now() + timeout;
    loop {
        let pending: i64 = c.query_row(
            "SELECT COUNT(*) FROM runs WHERE id > ?1 AND (dialed_at IS NULL OR status != 'ended')",
            [after_id],
            |r| r.get(0),
        )?;
        if pending == 0 || Instant::now() >= deadline {
            return Ok(pending);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// From a run's creation to the provider receiving its dial, in microseconds, for runs with an
/// id above `after_id` created in `[from, to)` when given; plus how many were never dialled.
///
/// The provider's side is the simulator's first event (`ringing`, sent as the dial request
/// arrives), not `dialed_at`: that is when the claim was decided, before the claim (or the run
/// itself, when it is claimed as it is written) was committed and the request sent.
pub fn dispatch_latencies(
    path: &Path,
    after_id: i64,
    created: Option<(SystemTime, SystemTime)>,
) -> Result<(Vec<i64>, i64)> {
    let c = open_ro(path)?;
    let (from, to) = created
        .map(|(a, b)| (micros(a), micros(b)))
        .unwrap_or((i64::MIN, i64::MAX));
    let mut st = c.prepare(
        // History entries are `[status, at_micros, ...]` from schema 9 on, objects before.
        "SELECT created_at, (SELECT COALESCE(json_extract(value, '$[1]'),
                                             json_extract(value, '$.at'))
                             FROM json_each(runs.events)
                             WHERE COALESCE(json_extract(value, '$[0]'),
                                            json_extract(value, '$.status')) = 'ringing'
                             LIMIT 1)
         FROM runs WHERE id > ?1 AND created_at >= ?2 AND created_at < ?3",
    )?;
    let mut latencies = Vec::new();
    let mut undialled = 0;
    let rows = st.query_map(params![after_id, from, to], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, SqlValue>(1)?))
    })?;
    for row in rows {
        let (created, rang) = row?;
        let rang = match rang {
            SqlValue::Integer(micros) => Some(micros),
            SqlValue::Text(s) => s
                .parse::<jiff::Timestamp>()
                .ok()
                .map(|at| at.as_microsecond()),
            _ => None,
        };
        match rang {
            Some(at) => latencies.push(at - created),
            None => undialled += 1,
        }
    }
    Ok((latencies, undialled))
}

/// Dial start times (µs) of a configuration's runs with an id above `after_id`, sorted.
pub fn dial_times(path: &Path, config_id: i64, after_id: i64) -> Result<Vec<i64>> {
    let c = open_ro(path)?;
    let mut st = c.prepare(
        "SELECT dialed_at FROM runs WHERE id > ?1 AND config_id = ?2 AND dialed_at IS NOT NULL
         ORDER BY dialed_at",
    )?;
    let rows = st.query_map(params![after_id, config_id], |r| r.get::<_, i64>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How pre-loaded runs look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preload {
    /// Finished history: copies of an ended run, spread one second apart into the past.
    Stored,
    /// A backlog: queued runs on a configuration that dispatches one call per 1000 s.
    Queued { config_id: i64 },
}

/// Columns reset to NULL when an ended run is turned into a queued one.
const OUTCOME_COLUMNS: &[&str] = &[
    "provider_call_id",
    "outcome",
    "ended_reason",
    "answered_by",
    "dialed_at",
    "answered_at",
    "ended_at",
    "duration_seconds",
    "transcript",
    "recording_url",
    "extracted",
    "error",
    "lease_owner",
];
const TIME_COLUMNS: &[&str] = &[
    "created_at",
    "scheduled_for",
    "dialed_at",
    "answered_at",
    "ended_at",
];

/// How a pre-loaded copy fills one column of the template run, whichever the database.
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    NewId,
    NewCallId,
    /// `'queued'`, for a backlog's status columns.
    Queued,
    /// The backlog's configuration.
    Backlog,
    /// The status history kept in the row (SQLite): a queued copy keeps its first entry.
    FirstEventOnly,
    Null,
    /// A time: the template's, moved back by the copy's age.
    Aged,
    Same,
}

pub fn copied_as(col: &str, kind: Preload) -> Fill {
    let queued = matches!(kind, Preload::Queued { .. });
    match col {
        "id" => Fill::NewId,
        "call_id" => Fill::NewCallId,
        "status" | "initial_status" if queued => Fill::Queued,
        "config_id" if queued => Fill::Backlog,
        "events" if queued => Fill::FirstEventOnly,
        c if queued && OUTCOME_COLUMNS.contains(&c) => Fill::Null,
        c if TIME_COLUMNS.contains(&c) => Fill::Aged,
        _ => Fill::Same,
    }
}

fn columns(c: &Connection, table: &str) -> Result<Vec<String>> {
    let mut st = c.prepare(&format!("PRAGMA table_info({table})"))?;
    let cols = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    if cols.is_empty() {
        bail!("table {table} not found");
    }
    Ok(cols)
}

fn has_table(c: &Connection, table: &str) -> Result<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
        [table],
        |r| r.get(0),
    )?)
}

/// `INSERT` copying the row of run `?2` in a table keyed by `run_id` as the row of run `?1`.
fn copy_by_run_id(c: &Connection, table: &str) -> Result<String> {
    let cols = columns(c, table)?;
    let exprs: Vec<&str> = cols
        .iter()
        .map(|col| if col == "run_id" { "?1" } else { col.as_str() })
        .collect();
    Ok(format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {table} WHERE run_id = ?2",
        cols.join(", "),
        exprs.join(", ")
    ))
}

/// Adds `n` copies of run `template` (an ended run) to the stopped server's database, as
/// fast as SQLite allows: one transaction, no journal fsyncs. Returns the time taken.
pub fn preload(path: &Path, template: i64, n: u64, kind: Preload) -> Result<Duration> {
    let started = Instant::now();
    let mut c =
        Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let exists: Option<i64> = c
        .query_row("SELECT id FROM runs WHERE id = ?1", [template], |r| {
            r.get(0)
        })
        .optional()?;
    if exists.is_none() {
        bail!("template run {template} not found");
    }
    // Leaving WAL needs no other connection, which holds: the server is stopped.
    c.query_row("PRAGMA journal_mode = MEMORY", [], |_| Ok(()))?;
    c.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;

    // ?1 new id, ?2 new call_id, ?3 age in µs, ?4 template id, ?5 backlog configuration.
    let run_cols = columns(&c, "runs")?;
    let run_exprs: Vec<String> = run_cols
        .iter()
        .map(|col| match copied_as(col, kind) {
            Fill::NewId => "?1".to_owned(),
            Fill::NewCallId => "?2".to_owned(),
            Fill::Queued => "'queued'".to_owned(),
            Fill::Backlog => "?5".to_owned(),
            // The status history lives in the row (schema 4+): a queued copy keeps only its
            // first entry. History times are copied unshifted.
            Fill::FirstEventOnly => "json_array(json_extract(events, '$[0]'))".to_owned(),
            Fill::Null => "NULL".to_owned(),
            Fill::Aged => format!("{col} - ?3"),
            Fill::Same => col.clone(),
        })
        .collect();
    let insert_run = format!(
        "INSERT INTO runs ({}) SELECT {} FROM runs WHERE id = ?4",
        run_cols.join(", "),
        run_exprs.join(", ")
    );
    // The payload lives in a table of its own (schema 7+), and an ended run's results too
    // (schema 9+; a backlog has none): copied alongside, keyed by run id.
    let mut side_tables = vec![copy_by_run_id(&c, "run_payloads")?];
    if matches!(kind, Preload::Stored) && has_table(&c, "run_results")? {
        side_tables.push(copy_by_run_id(&c, "run_results")?);
    }
    let tx = c.transaction()?;
    {
        let first_id: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM runs", [], |r| {
            r.get(0)
        })?;
        let agent: i64 =
            tx.query_row("SELECT agent_id FROM runs WHERE id = ?1", [template], |r| {
                r.get(0)
            })?;
        let backlog = match kind {
            Preload::Queued { config_id } => config_id,
            Preload::Stored => 0,
        };
        let mut run_st = tx.prepare(&insert_run)?;
        let mut side_sts = side_tables
            .iter()
            .map(|sql| tx.prepare(sql))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..n {
            let id = first_id + i as i64;
            // The oldest first, one second apart, all before the template run.
            let age_us = (n - i) as i64 * 1_000_000;
            let call_id = uuid::Uuid::now_v7().to_string();
            // ?5 only appears in the statement for a backlog; bind as many as it has.
            let values = [
                SqlValue::Integer(id),
                SqlValue::Text(call_id),
                SqlValue::Integer(age_us),
                SqlValue::Integer(template),
                SqlValue::Integer(backlog),
            ];
            let count = run_st.parameter_count();
            run_st.execute(params_from_iter(values.into_iter().take(count)))?;
            for st in &mut side_sts {
                st.execute(params![id, template])?;
            }
        }
        tx.execute(
            "UPDATE agents SET total_runs = total_runs + ?1 WHERE id = ?2",
            params![n as i64, agent],
        )?;
    }
    tx.commit()?;
    c.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    drop(c);
    // Written without fsyncs, the runs would sit in the page cache as dirty data (gigabytes
    // for a million), and the server's first flush of the database file would write them all
    // back during the measurement. Runs "already in the database" are on disk.
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush {}", path.display()))?;
    Ok(started.elapsed())
}

/// Size of the database file and its WAL, in bytes.
pub fn size_bytes(path: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::metadata(p).ok()
        })
        .map(|m| m.len())
        .sum()
}

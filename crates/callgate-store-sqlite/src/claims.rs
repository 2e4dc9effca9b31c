//! Dispatcher claims: moving due queued runs to `dialing` within pacing and concurrency limits,
//! inside the writer's transaction (SPEC §8.2, §8.3).

use crate::event_text::EventText;
use crate::util::{append_event, db_err, from_ts, parse_uuid, ts};
use callgate_domain::pacing::Pacer;
use callgate_store::*;
use foldhash::{HashMap, HashMapExt};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Mutex;

/// Pacing schedules per configuration, owned by this process.
type Pacers = Mutex<HashMap<ConfigId, Pacer>>;

/// Dispatch state one process keeps for its SQLite file (the writer thread is its only user):
/// the pacing schedules, the live-call counts and the lifecycle state of live runs.
#[derive(Default)]
pub struct Claims {
    pacers: Pacers,
    live: Mutex<LiveCounts>,
    runs: Mutex<HashMap<RunId, LiveRun>>,
}

/// What a lifecycle update reads of its run before writing it, as the writer last wrote it
/// (`runs::apply_one`). Every call has three or more updates, and the read before each was a
/// tenth of the writer's work. Only live runs are kept (a run is written live by its trigger
/// or by a lifecycle update, and leaves at its end); queued runs are not, so a dispatcher
/// claim never changes a kept run. A rolled-back write cannot undo what it kept, so every
/// rollback drops them all (`forget`), and the next update of each run reads it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveRun {
    pub org_id: OrgId,
    pub config_id: ConfigId,
    pub status: callgate_domain::lifecycle::RunStatus,
    pub attempt: u32,
    pub answered_at: Option<i64>,
    pub has_provider_call_id: bool,
    pub dialed: bool,
}

/// Far more live calls than one SQLite node places; past it the kept states are dropped (a
/// run whose end never arrives must not grow the map for ever).
const MAX_KEPT_RUNS: usize = 200_000;

/// Live runs (dialled, not ended) per organisation and configuration. Counting them in the
/// index on every trigger cost as much as the trigger's insert once hundreds of calls were
/// live, so the writer keeps them as it changes them. A rolled-back write cannot undo the
/// counts it made, so the writer then marks them stale and the next use recounts.
#[derive(Default)]
struct LiveCounts {
    fresh: bool,
    by_org: HashMap<OrgId, i64>,
    by_config: HashMap<ConfigId, i64>,
}

impl Claims {
    /// After a rollback: recount before the next use, and read every run again.
    pub fn forget(&self) {
        if let Ok(mut l) = self.live.lock() {
            l.fresh = false;
        }
        if let Ok(mut runs) = self.runs.lock() {
            runs.clear();
        }
    }

    /// Takes the kept state of a run: a write that fails after this leaves nothing stale.
    pub fn take_run(&self, id: RunId) -> Option<LiveRun> {
        self.runs.lock().ok()?.remove(&id)
    }

    /// Keeps the state a write just gave a run, if it is live.
    pub fn keep_run(&self, id: RunId, run: LiveRun) {
        if !run.status.is_live() {
            return;
        }
        if let Ok(mut runs) = self.runs.lock() {
            if runs.len() >= MAX_KEPT_RUNS {
                runs.clear();
            }
            runs.insert(id, run);
        }
    }

    /// A run of `org` on `config` became live (`+1`) or stopped being live (`-1`).
    pub fn live_changed(&self, org: OrgId, config: ConfigId, delta: i64) {
        if let Ok(mut l) = self.live.lock()
            && l.fresh
        {
            *l.by_org.entry(org).or_default() += delta;
            *l.by_config.entry(config).or_default() += delta;
        }
    }

    /// Live runs of the organisation and of the configuration.
    fn live(&self, c: &Connection, org: OrgId, config: ConfigId) -> StoreResult<(i64, i64)> {
        let mut l = self
            .live
            .lock()
            .map_err(|_| StoreError::Internal("live counts lock poisoned".into()))?;
        if !l.fresh {
            let mut by_org = HashMap::new();
            let mut by_config = HashMap::new();
            let mut st = c
                .prepare_cached(
                    "SELECT org_id, config_id, COUNT(*) FROM runs INDEXED BY runs_live_org
                     WHERE dialed_at IS NOT NULL AND ended_at IS NULL GROUP BY org_id, config_id",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, OrgId>(0)?, r.get(1)?, r.get::<_, i64>(2)?))
                })
                .map_err(db_err)?;
            for row in rows {
                let (o, cfg, n) = row.map_err(db_err)?;
                *by_org.entry(o).or_default() += n;
                *by_config.entry(cfg).or_default() += n;
            }
            *l = LiveCounts {
                fresh: true,
                by_org,
                by_config,
            };
        }
        Ok((
            l.by_org.get(&org).copied().unwrap_or(0),
            l.by_config.get(&config).copied().unwrap_or(0),
        ))
    }
}

/// Ids of up to `max` of the oldest due queued runs of a configuration.
///
/// The limit is applied here rather than as `LIMIT ?`: SQLite reads a bound LIMIT while
/// planning, so every new value re-prepared the statement.
fn due_ids(c: &Connection, config: ConfigId, now: Timestamp, max: i64) -> StoreResult<Vec<RunId>> {
    let mut st = c
        .prepare_cached(
            "SELECT id FROM runs WHERE status = 'queued' AND config_id = ?1
             AND scheduled_for <= ?2 ORDER BY id",
        )
        .map_err(db_err)?;
    let rows = st
        .query_map(params![config, ts(now)], |r| r.get(0))
        .map_err(db_err)?;
    rows.take(usize::try_from(max).unwrap_or(0))
        .collect::<Result<_, _>>()
        .map_err(db_err)
}

/// Claims up to `limit` of the oldest due queued runs of a configuration.
pub fn claim(
    c: &Connection,
    claims: &Claims,
    config: ConfigId,
    limit: u32,
    node: &str,
    now: Timestamp,
) -> StoreResult<Vec<ClaimedRun>> {
    let ids = due_ids(c, config, now, i64::from(limit))?;
    let runs = claim_ids(c, &ids, node, now)?;
    for r in &runs {
        claims.live_changed(r.org_id, r.config_id, 1);
    }
    Ok(runs)
}

/// Moves the given queued runs to `dialing`, leased by `node`.
fn claim_ids(
    c: &Connection,
    ids: &[RunId],
    node: &str,
    now: Timestamp,
) -> StoreResult<Vec<ClaimedRun>> {
    // One single-row update each: a multi-row UPDATE inside the batch transaction would make
    // SQLite keep a statement journal (a copy of every page it touches). The history entry is
    // appended as text (see `runs::apply_one`); the greeting is in the run's payload.
    let mut st = c
        .prepare_cached(concat!(
            "UPDATE runs SET status = 'dialing', dialed_at = ?2, lease_owner = ?3,
                 events = ",
            append_event!("?4 || attempt || ']'"),
            " WHERE id = ?1 AND status = 'queued'
                 RETURNING id, call_id, org_id, config_id, phone_number, from_number,
                           created_at, attempt"
        ))
        .map_err(db_err)?;
    let mut greeting = c
        .prepare_cached("SELECT greeting FROM run_payloads WHERE run_id = ?1")
        .map_err(db_err)?;
    let event_head = EventText::dialing_head(now);
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        let mut run = st
            .query_row(params![id, ts(now), node, event_head], |r| {
                let call_id: String = r.get(1)?;
                Ok(ClaimedRun {
                    id: r.get(0)?,
                    call_id: parse_uuid(&call_id)?,
                    org_id: r.get(2)?,
                    config_id: r.get(3)?,
                    phone_number: r.get(4)?,
                    from_number: r.get(5)?,
                    greeting: None,
                    created_at: from_ts(r.get(6)?),
                    attempt: r.get(7)?,
                })
            })
            .map_err(db_err)?;
        run.greeting = greeting
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(db_err)?
            .flatten();
        claimed.push(run);
    }
    Ok(claimed)
}

/// How many more runs the organisation's and the configuration's concurrency limits allow
/// now, at most `limits.max_batch`.
fn live_room(
    c: &Connection,
    claims: &Claims,
    config: ConfigId,
    org: OrgId,
    limits: &ClaimLimits,
) -> StoreResult<i64> {
    let (live_org, live_cfg) = claims.live(c, org, config)?;
    let mut free = (i64::from(limits.org_max_live) - live_org).min(i64::from(limits.max_batch));
    if let Some(max) = limits.config_max_live {
        free = free.min(i64::from(max) - live_cfg);
    }
    Ok(free)
}

/// Runs `f` on the configuration's pacing schedule, with the dial time it must use: `now`,
/// or the previous dial start if that is later (another claim may have read an older clock).
///
/// One process owns an SQLite file, so the pacing schedules live in its memory (the writer
/// thread is their only user); PostgreSQL keeps them in a table shared by nodes.
fn with_pacer<T>(
    claims: &Claims,
    config: ConfigId,
    calls_per_second: f64,
    now: Timestamp,
    f: impl FnOnce(&mut Pacer, i128) -> T,
) -> StoreResult<(T, Timestamp)> {
    let mut guard = claims
        .pacers
        .lock()
        .map_err(|_| StoreError::Internal("pacer lock poisoned".into()))?;
    let pacer = guard
        .entry(config)
        .or_insert_with(|| Pacer::new(calls_per_second));
    if pacer.calls_per_second() != calls_per_second {
        *pacer = Pacer::new(calls_per_second);
    }
    let now_ns = now
        .as_nanosecond()
        .max(pacer.last_start().unwrap_or(i128::MIN));
    let at = Timestamp::from_nanosecond(now_ns).unwrap_or(now);
    Ok((f(pacer, now_ns), at))
}

/// For a run being written now: whether it may be dialled at once, and if so when (its
/// pacing slot is taken). Runs already waiting for the configuration go first.
pub fn direct_slot(
    c: &crate::conn::WriteConn<'_>,
    claims: &Claims,
    config: ConfigId,
    org: OrgId,
    limits: &ClaimLimits,
    now: Timestamp,
) -> StoreResult<Option<Timestamp>> {
    let waiting: bool = c
        .with_held(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'queued' AND config_id = ?1)",
            |st| st.query_row([config], |r| r.get(0)),
        )
        .map_err(db_err)?;
    if waiting || live_room(c, claims, config, org, limits)? <= 0 {
        return Ok(None);
    }
    let (taken, at) = with_pacer(claims, config, limits.calls_per_second, now, |p, now_ns| {
        p.try_take(now_ns).is_ok()
    })?;
    if taken {
        claims.live_changed(org, config, 1);
    }
    Ok(taken.then_some(at))
}

/// Counts live runs, takes pacing slots and claims, in the caller's transaction.
pub fn claim_paced(
    c: &Connection,
    claims: &Claims,
    config: ConfigId,
    org: OrgId,
    limits: &ClaimLimits,
    node: &str,
    now: Timestamp,
) -> StoreResult<Claim> {
    let free = live_room(c, claims, config, org, limits)?;
    if free <= 0 {
        return Ok(Claim::default());
    }
    // A configuration whose pacing allows no dial yet need not have its queue read: with a
    // slow configuration holding a long backlog, that read came with every dispatcher pass.
    let (wait, _) = with_pacer(claims, config, limits.calls_per_second, now, |p, now_ns| {
        let ready = p.ready_at(now_ns);
        (ready > now_ns).then_some(ready)
    })?;
    if let Some(ready) = wait {
        return Ok(Claim {
            retry_at: Timestamp::from_nanosecond(ready).ok(),
            ..Claim::default()
        });
    }
    // Take slots only for runs that exist, so an empty queue never burns pacing slots.
    let ids = due_ids(c, config, now, free)?;
    let due = ids.len() as i64;
    if due == 0 {
        return Ok(Claim {
            drained: true,
            ..Claim::default()
        });
    }
    let ((slots, retry_at), now) = with_pacer(
        claims,
        config,
        limits.calls_per_second,
        now,
        |pacer, now_ns| pacer.take_up_to(due.min(free), now_ns),
    )?;
    let retry_at = retry_at.and_then(|at| Timestamp::from_nanosecond(at).ok());
    if slots == 0 {
        return Ok(Claim {
            retry_at,
            ..Claim::default()
        });
    }
    let runs = claim_ids(c, &ids[..slots as usize], node, now)?;
    claims.live_changed(org, config, runs.len() as i64);
    let drained = due <= slots && due < free;
    Ok(Claim {
        runs,
        retry_at,
        drained,
    })
}

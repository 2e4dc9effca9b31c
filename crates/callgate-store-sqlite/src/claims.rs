//! Dispatcher claims: moving due queued runs to `dialing` within pacing and concurrency limits,
//! inside the writer's transaction (SPEC §8.2, §8.3).

use crate::util::{db_err, from_ts, parse_uuid, ts};
use callgate_domain::pacing::Pacer;
use callgate_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, params};

/// Pacing schedules per configuration, owned by this process.
pub type Pacers = std::sync::Mutex<std::collections::HashMap<ConfigId, Pacer>>;

/// Claims up to `limit` of the oldest due queued runs of a configuration.
pub fn claim(
    c: &Connection,
    config: ConfigId,
    limit: u32,
    node: &str,
    now: Timestamp,
) -> StoreResult<Vec<ClaimedRun>> {
    // The ids first, then one single-row update each: a multi-row UPDATE inside the batch
    // transaction would make SQLite keep a statement journal (a copy of every page it touches).
    let ids: Vec<RunId> = c
        .prepare_cached(
            "SELECT id FROM runs WHERE status = 'queued' AND config_id = ?1
             AND scheduled_for <= ?2 ORDER BY id LIMIT ?3",
        )
        .map_err(db_err)?
        .query_map(params![config, ts(now), limit], |r| r.get(0))
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    let mut st = c
        .prepare_cached(
            "UPDATE runs SET status = 'dialing', dialed_at = ?2, lease_owner = ?3,
                 events = json_insert(events, '$[#]',
                     json_object('status', 'dialing', 'at', ?4, 'attempt', attempt))
             WHERE id = ?1 AND status = 'queued'
             RETURNING id, call_id, org_id, config_id, phone_number, from_number,
                       greeting, created_at, attempt",
        )
        .map_err(db_err)?;
    let at = crate::util::micros(now).to_string();
    let mut claimed = Vec::with_capacity(ids.len());
    for id in ids {
        let run = st
            .query_row(params![id, ts(now), node, at], |r| {
                let call_id: String = r.get(1)?;
                Ok(ClaimedRun {
                    id: r.get(0)?,
                    call_id: parse_uuid(&call_id)?,
                    org_id: r.get(2)?,
                    config_id: r.get(3)?,
                    phone_number: r.get(4)?,
                    from_number: r.get(5)?,
                    greeting: r.get(6)?,
                    created_at: from_ts(r.get(7)?),
                    attempt: r.get(8)?,
                })
            })
            .map_err(db_err)?;
        claimed.push(run);
    }
    claimed.sort_by_key(|r| r.id);
    Ok(claimed)
}

fn count(c: &Connection, sql: &str, p: impl rusqlite::Params) -> StoreResult<i64> {
    c.prepare_cached(sql)
        .map_err(db_err)?
        .query_row(p, |r| r.get(0))
        .map_err(db_err)
}

/// Counts live runs, takes pacing slots and claims, in the caller's transaction.
pub fn claim_paced(
    c: &Connection,
    pacers: &Pacers,
    config: ConfigId,
    org: OrgId,
    limits: &ClaimLimits,
    node: &str,
    now: Timestamp,
) -> StoreResult<Claim> {
    let live_org = count(
        c,
        "SELECT COUNT(*) FROM runs WHERE org_id = ?1
         AND dialed_at IS NOT NULL AND ended_at IS NULL",
        [org],
    )?;
    let mut free = (i64::from(limits.org_max_live) - live_org).min(i64::from(limits.max_batch));
    if let Some(max) = limits.config_max_live {
        let live_cfg = count(
            c,
            "SELECT COUNT(*) FROM runs WHERE config_id = ?1
             AND dialed_at IS NOT NULL AND ended_at IS NULL",
            [config],
        )?;
        free = free.min(i64::from(max) - live_cfg);
    }
    if free <= 0 {
        return Ok(Claim::default());
    }
    // Take slots only for runs that exist, so an empty queue never burns pacing slots.
    let due = count(
        c,
        "SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE status = 'queued' AND config_id = ?1
         AND scheduled_for <= ?2 LIMIT ?3)",
        params![config, ts(now), free],
    )?;
    if due == 0 {
        return Ok(Claim {
            drained: true,
            ..Claim::default()
        });
    }
    // One process owns an SQLite file, so the pacing schedules live in its memory (the
    // writer thread is their only user); PostgreSQL keeps them in a table shared by nodes.
    let mut guard = pacers
        .lock()
        .map_err(|_| StoreError::Internal("pacer lock poisoned".into()))?;
    let pacer = guard
        .entry(config)
        .or_insert_with(|| Pacer::new(limits.calls_per_second));
    if pacer.calls_per_second() != limits.calls_per_second {
        *pacer = Pacer::new(limits.calls_per_second);
    }
    // Never start a dial "before" the previous one: another node may have claimed while this
    // claim waited for the lock with a slightly older clock reading.
    let now_ns = now
        .as_nanosecond()
        .max(pacer.last_start().unwrap_or(i128::MIN));
    let now = Timestamp::from_nanosecond(now_ns).unwrap_or(now);
    let mut slots = 0i64;
    let mut retry_at = None;
    while slots < due.min(free) {
        match pacer.try_take(now_ns) {
            Ok(()) => slots += 1,
            Err(at) => {
                retry_at = Timestamp::from_nanosecond(at).ok();
                break;
            }
        }
    }
    if slots == 0 {
        return Ok(Claim {
            retry_at,
            ..Claim::default()
        });
    }
    drop(guard);
    let runs = claim(c, config, slots as u32, node, now)?;
    let drained = due <= slots && due < free;
    Ok(Claim {
        runs,
        retry_at,
        drained,
    })
}

//! Dispatcher claims: moving due queued runs to `dialing` (SPEC §8.2, §8.3), safely with
//! several nodes claiming from one queue at once.

use crate::db::{exec, one_row, rows};
use crate::util::{get, get_u32, ts};
use callgate_domain::pacing::Pacer;
use callgate_store::*;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use tokio_postgres::types::Json;

/// The claim statement: `$1` configuration, `$2` limit, `$3` now, `$4` node; `pacing` adds the
/// pacing state's upsert as `$5`.
fn claim_sql(pacing: bool) -> String {
    let pacing_cte = if pacing {
        // In the claim's statement rather than one of its own: a round trip less while the
        // organisation's row lock is held (every claim of the organisation waits on it).
        ", paced AS (
             INSERT INTO config_pacing (config_id, state) VALUES ($1, $5)
             ON CONFLICT (config_id) DO UPDATE SET state = excluded.state
         )"
    } else {
        ""
    };
    format!(
        "WITH picked AS (
             SELECT id FROM runs
             WHERE status = 'queued' AND config_id = $1 AND scheduled_for <= $3
             ORDER BY id LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), claimed AS (
             UPDATE runs SET status = 'dialing', dialed_at = $3, lease_owner = $4
             WHERE id IN (SELECT id FROM picked)
             RETURNING id, call_id, org_id, config_id, phone_number, from_number, greeting,
                       created_at, attempt
         ), counted AS (
             INSERT INTO live_counts (org_id, config_id, live)
             SELECT org_id, config_id, COUNT(*) FROM claimed GROUP BY org_id, config_id
             ON CONFLICT (org_id, config_id) DO UPDATE SET live = live_counts.live + excluded.live
         ), events AS (
             INSERT INTO run_events (run_id, seq, status, at, attempt)
             SELECT id,
                    COALESCE((SELECT MAX(e.seq) FROM run_events e WHERE e.run_id = claimed.id), 0)
                        + 1,
                    'dialing', $3, attempt
             FROM claimed
         ){pacing_cte}
         SELECT id, call_id, org_id, config_id, phone_number, from_number, greeting,
                created_at, attempt
         FROM claimed ORDER BY id"
    )
}

/// Claims up to `limit` of the oldest due queued runs of a configuration in one statement,
/// writing `pacing` as the configuration's pacing state in the same statement when given.
/// `SKIP LOCKED` lets concurrent claimers pass over each other's rows instead of waiting, and
/// the row lock re-checks `status = 'queued'` on the latest version, so no run is claimed
/// twice. The lease and the `dialing` event commit before any provider request is sent.
pub async fn claim<C: GenericClient>(
    c: &C,
    config: ConfigId,
    limit: u32,
    node: &str,
    now: Timestamp,
    pacing: Option<&Pacer>,
) -> StoreResult<Vec<ClaimedRun>> {
    static PLAIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| claim_sql(false));
    static PACED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| claim_sql(true));
    let now = ts(now);
    let limit = i64::from(limit);
    let claimed = match pacing {
        None => rows(c, &PLAIN, &[&config, &limit, &now, &node]).await?,
        Some(p) => rows(c, &PACED, &[&config, &limit, &now, &node, &Json(p)]).await?,
    };
    claimed
        .iter()
        .map(|r| {
            Ok(ClaimedRun {
                id: get(r, 0)?,
                call_id: get(r, 1)?,
                org_id: get(r, 2)?,
                config_id: get(r, 3)?,
                phone_number: get(r, 4)?,
                from_number: get(r, 5)?,
                greeting: get(r, 6)?,
                created_at: get(r, 7)?,
                attempt: get_u32(r, 8)?,
            })
        })
        .collect()
}

/// Counts live runs, takes pacing slots and claims, in the caller's transaction.
///
/// The organisation row is locked first: every claim for any configuration of one
/// organisation, on any node, then counts live runs and takes pacing slots one after another,
/// so the limits hold across the cluster. Runs are still picked with `SKIP LOCKED`.
pub async fn claim_paced<C: GenericClient>(
    c: &C,
    config: ConfigId,
    org: OrgId,
    limits: &ClaimLimits,
    node: &str,
    now: Timestamp,
) -> StoreResult<Claim> {
    exec(
        c,
        "SELECT id FROM organizations WHERE id = $1 FOR UPDATE",
        &[&org],
    )
    .await?;
    // One round trip for what the claim decides on: the live calls of the organisation and
    // of the configuration (kept by claims and lifecycle updates, migration 0006), the due
    // runs (at most a batch: slots are taken only for runs that exist, so an empty queue never
    // burns pacing slots) and the pacing state (as text: the pacer holds 128-bit integers,
    // which a JSON value would round). Read after the organisation's lock, so no other claim
    // of the organisation changes them meanwhile. The due runs are counted in id order, as
    // the claim picks them, so the count walks an index: unordered, a large backlog made the
    // planner choose a sequential scan, which PostgreSQL may start anywhere in a large table
    // (synchronised scans), and counting took 100–170 ms with the lock held.
    let row = one_row(
        c,
        "SELECT
             (SELECT COALESCE(SUM(live), 0)::bigint FROM live_counts WHERE org_id = $1),
             (SELECT COALESCE(SUM(live), 0)::bigint FROM live_counts
              WHERE org_id = $1 AND config_id = $2),
             (SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE status = 'queued'
              AND config_id = $2 AND scheduled_for <= $3 ORDER BY id LIMIT $4) due),
             (SELECT state::text FROM config_pacing WHERE config_id = $2)",
        &[&org, &config, &ts(now), &i64::from(limits.max_batch)],
    )
    .await?;
    let live_org: i64 = get(&row, 0)?;
    let live_cfg: i64 = get(&row, 1)?;
    let mut free = (i64::from(limits.org_max_live) - live_org).min(i64::from(limits.max_batch));
    if let Some(max) = limits.config_max_live {
        free = free.min(i64::from(max) - live_cfg);
    }
    if free <= 0 {
        return Ok(Claim::default());
    }
    let due = get::<i64>(&row, 2)?.min(free);
    if due == 0 {
        return Ok(Claim {
            drained: true,
            ..Claim::default()
        });
    }
    let stored: Option<String> = get(&row, 3)?;
    let mut pacer = stored
        .and_then(|s| serde_json::from_str::<Pacer>(&s).ok())
        .filter(|p| p.calls_per_second() == limits.calls_per_second)
        .unwrap_or_else(|| Pacer::new(limits.calls_per_second));
    // Never start a dial "before" the previous one: another node may have claimed while this
    // claim waited for the lock with a slightly older clock reading.
    let now_ns = now
        .as_nanosecond()
        .max(pacer.last_start().unwrap_or(i128::MIN));
    let now = Timestamp::from_nanosecond(now_ns).unwrap_or(now);
    let (slots, retry_at) = pacer.take_up_to(due.min(free), now_ns);
    let retry_at = retry_at.and_then(|at| Timestamp::from_nanosecond(at).ok());
    if slots == 0 {
        return Ok(Claim {
            retry_at,
            ..Claim::default()
        });
    }
    let runs = claim(
        c,
        config,
        u32::try_from(slots).unwrap_or(u32::MAX),
        node,
        now,
        Some(&pacer),
    )
    .await?;
    let drained = due <= slots && due < free;
    Ok(Claim {
        runs,
        retry_at,
        drained,
    })
}

//! Dispatcher claims: moving due queued runs to `dialing` (SPEC §8.2, §8.3), safely with
//! several nodes claiming from one queue at once.

use crate::db::{exec, one_row, opt_row, rows};
use crate::util::{get, get_u32, ts};
use callgate_domain::pacing::Pacer;
use callgate_store::*;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use tokio_postgres::types::Json;

/// Claims up to `limit` of the oldest due queued runs of a configuration in one statement.
/// `SKIP LOCKED` lets concurrent claimers pass over each other's rows instead of waiting, and
/// the row lock re-checks `status = 'queued'` on the latest version, so no run is claimed
/// twice. The lease and the `dialing` event commit before any provider request is sent.
pub async fn claim<C: GenericClient>(
    c: &C,
    config: ConfigId,
    limit: u32,
    node: &str,
    now: Timestamp,
) -> StoreResult<Vec<ClaimedRun>> {
    let now = ts(now);
    let claimed = rows(
        c,
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
         )
         SELECT id, call_id, org_id, config_id, phone_number, from_number, greeting,
                created_at, attempt
         FROM claimed ORDER BY id",
        &[&config, &i64::from(limit), &now, &node],
    )
    .await?;
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

async fn count<C: GenericClient>(
    c: &C,
    sql: &str,
    p: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<i64> {
    get(&one_row(c, sql, p).await?, 0)
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
    // Kept by claims and lifecycle updates (migration 0006).
    let live_org = count(
        c,
        "SELECT COALESCE(SUM(live), 0)::bigint FROM live_counts WHERE org_id = $1",
        &[&org],
    )
    .await?;
    let mut free = (i64::from(limits.org_max_live) - live_org).min(i64::from(limits.max_batch));
    if let Some(max) = limits.config_max_live {
        let live_cfg = count(
            c,
            "SELECT COALESCE(SUM(live), 0)::bigint FROM live_counts
             WHERE org_id = $1 AND config_id = $2",
            &[&org, &config],
        )
        .await?;
        free = free.min(i64::from(max) - live_cfg);
    }
    if free <= 0 {
        return Ok(Claim::default());
    }
    // Take slots only for runs that exist, so an empty queue never burns pacing slots.
    let due = count(
        c,
        "SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE status = 'queued' AND config_id = $1
         AND scheduled_for <= $2 LIMIT $3) due",
        &[&config, &ts(now), &free],
    )
    .await?;
    if due == 0 {
        return Ok(Claim {
            drained: true,
            ..Claim::default()
        });
    }
    // Read as text: the pacer holds 128-bit integers, which a JSON value would round.
    let stored: Option<String> = match opt_row(
        c,
        "SELECT state::text FROM config_pacing WHERE config_id = $1",
        &[&config],
    )
    .await?
    {
        Some(row) => get(&row, 0)?,
        None => None,
    };
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
    exec(
        c,
        "INSERT INTO config_pacing (config_id, state) VALUES ($1, $2)
         ON CONFLICT (config_id) DO UPDATE SET state = excluded.state",
        &[&config, &Json(&pacer)],
    )
    .await?;
    let runs = claim(
        c,
        config,
        u32::try_from(slots).unwrap_or(u32::MAX),
        node,
        now,
    )
    .await?;
    let drained = due <= slots && due < free;
    Ok(Claim {
        runs,
        retry_at,
        drained,
    })
}

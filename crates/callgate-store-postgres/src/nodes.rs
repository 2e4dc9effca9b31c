//! Node liveness: heartbeats of the processes holding leases, and the live runs of nodes that
//! went silent, which a surviving node settles (SPEC §8.3).

use crate::db::{exec, rows};
use crate::util::{get, ts};
use callgate_store::*;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;

pub async fn heartbeat<C: GenericClient>(c: &C, node: &str, now: Timestamp) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO nodes (node_id, last_seen) VALUES ($1, $2)
         ON CONFLICT (node_id) DO UPDATE SET last_seen = excluded.last_seen",
        &[&node, &ts(now)],
    )
    .await
    .map(|_| ())
}

pub async fn node_last_seen<C: GenericClient>(c: &C, node: &str) -> StoreResult<Option<Timestamp>> {
    rows(
        c,
        "SELECT last_seen FROM nodes WHERE node_id = $1",
        &[&node],
    )
    .await?
    .first()
    .map(|r| get(r, 0))
    .transpose()
}

/// Live runs whose lease owner has not been heard from since `stale_before`, or that have no
/// lease owner at all.
pub async fn orphaned_runs<C: GenericClient>(
    c: &C,
    stale_before: Timestamp,
) -> StoreResult<Vec<(RunId, String)>> {
    rows(
        c,
        "SELECT r.id, r.status FROM runs r LEFT JOIN nodes n ON n.node_id = r.lease_owner
         WHERE r.status IN ('dialing', 'ringing', 'in_progress')
           AND (n.last_seen IS NULL OR n.last_seen < $1)
         ORDER BY r.id",
        &[&ts(stale_before)],
    )
    .await?
    .iter()
    .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
    .collect()
}

/// Live runs leased by `node`.
pub async fn runs_leased_to<C: GenericClient>(
    c: &C,
    node: &str,
) -> StoreResult<Vec<(RunId, String)>> {
    rows(
        c,
        "SELECT id, status FROM runs
         WHERE status IN ('dialing', 'ringing', 'in_progress') AND lease_owner = $1
         ORDER BY id",
        &[&node],
    )
    .await?
    .iter()
    .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
    .collect()
}

/// Runs that were live when a previous process stopped (dialing, ringing, in progress).
pub async fn live_runs<C: GenericClient>(c: &C) -> StoreResult<Vec<(RunId, String)>> {
    rows(
        c,
        "SELECT id, status FROM runs
         WHERE status IN ('dialing', 'ringing', 'in_progress') ORDER BY id",
        &[],
    )
    .await?
    .iter()
    .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
    .collect()
}

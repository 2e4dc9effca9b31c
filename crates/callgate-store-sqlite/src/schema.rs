//! Migrations, applied in order on open and tracked in `PRAGMA user_version`.

use callgate_store::StoreResult;
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_paced_claims.sql"),
    include_str!("../migrations/0003_idempotent_responses.sql"),
    include_str!("../migrations/0004_events_in_runs.sql"),
    include_str!("../migrations/0005_active_runs_index.sql"),
    include_str!("../migrations/0006_cheap_partial_indexes.sql"),
    include_str!("../migrations/0007_run_payloads.sql"),
    include_str!("../migrations/0008_one_live_index.sql"),
    include_str!("../migrations/0009_narrow_runs.sql"),
];

pub fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(crate::util::db_err)?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current {
            continue;
        }
        let tx = conn.transaction().map_err(crate::util::db_err)?;
        tx.execute_batch(sql).map_err(crate::util::db_err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(crate::util::db_err)?;
        tx.commit().map_err(crate::util::db_err)?;
        tracing::info!(version, "applied SQLite migration");
    }
    Ok(())
}

//! Migrations, applied in order on connect and tracked in `callgate_schema_migrations`.
//!
//! Several nodes may start at once against one database: a session-level advisory lock makes
//! them migrate one after another, and each migration commits together with its tracking row,
//! so a node that crashes halfway leaves nothing half-applied.

use crate::util::{db_err, get};
use callgate_store::StoreResult;
use tokio_postgres::Client;

/// (version, name, SQL), in order. Versions are never renumbered or edited once released.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "paced_claims",
        include_str!("../migrations/0002_paced_claims.sql"),
    ),
    (
        3,
        "idempotent_responses",
        include_str!("../migrations/0003_idempotent_responses.sql"),
    ),
    (
        4,
        "active_runs_index",
        include_str!("../migrations/0004_active_runs_index.sql"),
    ),
    (
        5,
        "agent_run_counts",
        include_str!("../migrations/0005_agent_run_counts.sql"),
    ),
    (
        6,
        "live_counts",
        include_str!("../migrations/0006_live_counts.sql"),
    ),
    (
        7,
        "one_live_index",
        include_str!("../migrations/0007_one_live_index.sql"),
    ),
];

/// Arbitrary but fixed key of the advisory lock (ASCII "callgate" as a 64-bit integer), so it
/// cannot collide with locks other applications on the same database pick at random.
const LOCK_KEY: i64 = 0x6361_6c6c_6761_7465;

/// Applies pending migrations on `client`, a connection of its own: the advisory lock belongs
/// to the session, and dropping the connection releases it even if this fails halfway.
pub async fn migrate(client: &mut Client) -> StoreResult<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(db_err)?;
    let result = apply_pending(client).await;
    // Unlock explicitly too: on success the connection may live on.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(db_err);
    result.and(unlock.map(|_| ()))
}

async fn apply_pending(client: &mut Client) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS callgate_schema_migrations (
                 version BIGINT PRIMARY KEY,
                 name TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(db_err)?;
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM callgate_schema_migrations",
            &[],
        )
        .await
        .map_err(db_err)?;
    let current: i64 = get(&row, 0)?;
    for (version, name, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        let tx = client.transaction().await.map_err(db_err)?;
        tx.batch_execute(sql).await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO callgate_schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(version, name, "applied PostgreSQL migration");
    }
    Ok(())
}

//! The scale scenario's pre-load on PostgreSQL: copies of a finished run written into a
//! stopped server's database with one statement per table, then vacuumed, analysed and
//! checkpointed, as runs a server with autovacuum had stored long ago would be.

use crate::db::{Fill, Preload, copied_as};
use crate::runsdb::connect;
use anyhow::{Result, bail};
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;

/// Adds `n` copies of run `template` (an ended run) to the database at `url`, the oldest first,
/// one second apart and all older than the template, with its status history; or, for a
/// backlog, queued copies on the backlog configuration with their first history entry.
/// Returns the time taken, vacuum and checkpoint included.
pub async fn preload(url: &str, template: i64, n: u64, kind: Preload) -> Result<Duration> {
    let started = Instant::now();
    let mut db = connect(url).await?;
    if db
        .query_opt("SELECT 1 FROM runs WHERE id = $1", &[&template])
        .await?
        .is_none()
    {
        bail!("template run {template} not found");
    }
    let cols: Vec<String> = db
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = 'runs'
             ORDER BY ordinal_position",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // In the statement: `t` the template row, `g` 1..=n, `age` the copy's age.
    let exprs: Vec<String> = cols
        .iter()
        .map(|col| match copied_as(col, kind) {
            Fill::NewId => "nextval('run_ids')".to_owned(),
            // Time-ordered like the server's own (UUID v7: milliseconds, then random bits).
            Fill::NewCallId => {
                "(lpad(to_hex((extract(epoch FROM t.created_at - age) * 1000)::bigint), 12, '0')
                 || '7' || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid"
                    .to_owned()
            }
            Fill::Queued => "'queued'".to_owned(),
            Fill::Backlog => "$3".to_owned(),
            // The history is a table of its own here (`run_events`), copied below.
            Fill::FirstEventOnly => format!("t.{col}"),
            Fill::Null => "NULL".to_owned(),
            Fill::Aged => format!("t.{col} - age"),
            Fill::Same => format!("t.{col}"),
        })
        .collect();
    let (backlog, first_event_only) = match kind {
        Preload::Queued { config_id } => (config_id, true),
        Preload::Stored => (0, false),
    };
    let sql = format!(
        "WITH t AS (SELECT * FROM runs WHERE id = $1),
         copies AS (
             INSERT INTO runs ({cols})
             SELECT {exprs}
             FROM t, generate_series(1, $2::bigint) g,
                  LATERAL (SELECT ($2::bigint - g + 1) * interval '1 second' AS age) a
             ORDER BY g
             RETURNING id, created_at
         )
         INSERT INTO run_events (run_id, seq, status, at, attempt, provider_status, detail)
         SELECT c.id, e.seq, e.status,
                e.at - (t.created_at - c.created_at), e.attempt, e.provider_status, e.detail
         FROM copies c, t, run_events e
         WHERE e.run_id = $1
           AND (NOT $4 OR e.seq = (SELECT min(seq) FROM run_events WHERE run_id = $1))",
        cols = cols.join(", "),
        exprs = exprs.join(", "),
    );
    let count = i64::try_from(n)?;
    let tx = db.transaction().await?;
    // Typed: a step that uses no backlog leaves $3 out of the statement.
    let insert = tx
        .prepare_typed(&sql, &[Type::INT8, Type::INT8, Type::INT8, Type::BOOL])
        .await?;
    tx.execute(&insert, &[&template, &count, &backlog, &first_event_only])
        .await?;
    tx.execute(
        "UPDATE agents SET total_runs = total_runs + $2
         WHERE id = (SELECT agent_id FROM runs WHERE id = $1)",
        &[&template, &count],
    )
    .await?;
    tx.commit().await?;
    // A server with autovacuum (PostgreSQL's default; this machine's has it off) would have
    // vacuumed and analysed runs stored long ago: without it the first reads under load set
    // every page's hint bits and write them back, and the planner knows nothing of the
    // million rows. The checkpoint puts them on disk, as the SQLite pre-load's flush does.
    db.batch_execute("VACUUM (ANALYZE) runs, run_events")
        .await?;
    if let Err(e) = db.batch_execute("CHECKPOINT").await {
        eprintln!("  CHECKPOINT refused ({e}); pre-loaded pages may be written during the load");
    }
    Ok(started.elapsed())
}

/// Size of the database, in bytes.
pub async fn size_bytes(url: &str) -> Result<u64> {
    let db = connect(url).await?;
    let size: i64 = db
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await?
        .get(0);
    Ok(u64::try_from(size)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use callgate_store_postgres::PgStore;
    use callgate_store_postgres::scratch::ScratchDatabase;

    /// A migrated scratch database holding one ended run (id 7, three history entries) of
    /// agent 1, or None when no PostgreSQL is named.
    async fn seeded() -> Option<ScratchDatabase> {
        let Some(admin) = std::env::var("CALLGATE_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            println!("SKIPPED: set CALLGATE_TEST_POSTGRES_URL to run the PostgreSQL pre-load test");
            return None;
        };
        let db = ScratchDatabase::create(&admin).await.unwrap();
        drop(PgStore::connect(db.url(), 1).await.unwrap());
        let c = connect(db.url()).await.unwrap();
        c.batch_execute(
            "INSERT INTO organizations (id, name, created_at) VALUES (1, 'o', now());
             INSERT INTO agents (id, org_id, uuid, name, status, total_runs, created_at)
                 VALUES (1, 1, gen_random_uuid(), 'a', 'active', 1, now());
             INSERT INTO runs (id, call_id, org_id, agent_id, workflow_uuid, version_id,
                 version_number, environment, phone_number, config_id, provider,
                 provider_call_id, status, initial_status, outcome, created_at, scheduled_for,
                 dialed_at, ended_at, initial_context, system_context, unresolved_variables)
             VALUES (7, gen_random_uuid(), 1, 1, gen_random_uuid(), 1, 1, 'production',
                 '+14155550100', 1, 'simulator', 'SIM-1', 'ended', 'queued', 'completed',
                 '2026-11-23 12:00:00+00', '2026-11-23 12:00:00+00',
                 '2026-11-23 12:00:01+00', '2026-11-23 12:00:05+00', '{}', '{}', '[]');
             INSERT INTO run_events (run_id, seq, status, at, attempt) VALUES
                 (7, 1, 'queued', '2026-11-23 12:00:00+00', 1),
                 (7, 2, 'dialing', '2026-11-23 12:00:01+00', 1),
                 (7, 3, 'ended', '2026-11-23 12:00:05+00', 1);
             SELECT setval('run_ids', 7);",
        )
        .await
        .unwrap();
        Some(db)
    }

    #[tokio::test]
    async fn copies_are_older_runs_with_their_history_in_a_copy_of_the_database() {
        let Some(seed) = seeded().await else { return };
        let stored = ScratchDatabase::copy_of(&seed, "cg_test_").await.unwrap();
        let queued = ScratchDatabase::copy_of(&seed, "cg_test_").await.unwrap();

        preload(stored.url(), 7, 3, Preload::Stored).await.unwrap();
        let c = connect(stored.url()).await.unwrap();
        let rows = c
            .query(
                "SELECT id, call_id::text, status, outcome, provider_call_id,
                        extract(epoch FROM created_at)::bigint,
                        extract(epoch FROM ended_at - created_at)::bigint
                 FROM runs ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(
            ids,
            [7, 8, 9, 10],
            "new ids come from the server's sequence"
        );
        let template_at: i64 = rows[0].get(5);
        for (i, r) in rows.iter().enumerate().skip(1) {
            // The oldest first, one second apart, all older than the template.
            assert_eq!(r.get::<_, i64>(5), template_at - (4 - i as i64));
            assert_eq!(r.get::<_, i64>(6), 5, "times move together");
            assert_eq!(r.get::<_, &str>(2), "ended");
            assert_eq!(r.get::<_, Option<&str>>(3), Some("completed"));
            let call_id: &str = r.get(1);
            assert_eq!(&call_id[14..15], "7", "a version-7 UUID: {call_id}");
        }
        let call_ids: std::collections::BTreeSet<String> =
            rows.iter().map(|r| r.get::<_, String>(1)).collect();
        assert_eq!(call_ids.len(), 4);
        let history: Vec<(i64, i64, String, i64)> = c
            .query(
                "SELECT e.run_id, e.seq::bigint, e.status,
                        extract(epoch FROM e.at - r.created_at)::bigint
                 FROM run_events e JOIN runs r ON r.id = e.run_id ORDER BY 1, 2",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        for id in 8..=10 {
            let of: Vec<_> = history
                .iter()
                .filter(|h| h.0 == id)
                .map(|h| (h.1, h.2.as_str(), h.3))
                .collect();
            assert_eq!(of, [(1, "queued", 0), (2, "dialing", 1), (3, "ended", 5)]);
        }
        let total: i64 = c
            .query_one("SELECT total_runs FROM agents WHERE id = 1", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(total, 4);

        preload(queued.url(), 7, 2, Preload::Queued { config_id: 5 })
            .await
            .unwrap();
        let c = connect(queued.url()).await.unwrap();
        let rows = c
            .query(
                "SELECT r.status, r.initial_status, r.config_id, r.outcome, r.provider_call_id,
                        r.dialed_at IS NULL AND r.ended_at IS NULL, count(e.seq)
                 FROM runs r JOIN run_events e ON e.run_id = r.id
                 WHERE r.id > 7 GROUP BY r.id ORDER BY r.id",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert_eq!(r.get::<_, &str>(0), "queued");
            assert_eq!(r.get::<_, &str>(1), "queued");
            assert_eq!(r.get::<_, i64>(2), 5);
            assert_eq!(r.get::<_, Option<&str>>(3), None);
            assert_eq!(r.get::<_, Option<&str>>(4), None);
            assert!(r.get::<_, bool>(5));
            assert_eq!(r.get::<_, i64>(6), 1, "only the first history entry");
        }

        // The seed itself is untouched by its copies' pre-loads.
        let c = connect(seed.url()).await.unwrap();
        let n: i64 = c
            .query_one("SELECT count(*) FROM runs", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        drop(c);
        for db in [stored, queued, seed] {
            db.drop_database().await.unwrap();
        }
    }
}

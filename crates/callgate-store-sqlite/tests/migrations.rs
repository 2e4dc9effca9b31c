//! Upgrading a database written by an earlier version: the runs it holds read back the same.

use callgate_store::RunStore;
use callgate_store_sqlite::SqliteStore;
use rusqlite::Connection;

/// The schema as version 5 left it (migrations 1–5 of this crate, applied by hand).
fn version_5(path: &std::path::Path) -> Connection {
    let c = Connection::open(path).expect("open");
    c.execute_batch("PRAGMA journal_mode = WAL;").expect("wal");
    for sql in [
        include_str!("../migrations/0001_initial.sql"),
        include_str!("../migrations/0002_paced_claims.sql"),
        include_str!("../migrations/0003_idempotent_responses.sql"),
        include_str!("../migrations/0004_events_in_runs.sql"),
        include_str!("../migrations/0005_active_runs_index.sql"),
    ] {
        c.execute_batch(sql).expect("migration");
    }
    c.pragma_update(None, "user_version", 5).expect("version");
    c
}

fn insert_run(
    c: &Connection,
    id: i64,
    status: &str,
    dialed_at: Option<i64>,
    ended_at: Option<i64>,
) {
    c.execute(
        "INSERT INTO runs (id, call_id, org_id, agent_id, workflow_uuid, version_id,
         version_number, environment, phone_number, config_id, provider, status, initial_status,
         created_at, scheduled_for, dialed_at, ended_at, initial_context, system_context,
         metadata, unresolved_variables, events)
         VALUES (?1, ?2, 7, 1, '0190f1d2-0000-7000-8000-000000000001', 1, 1, 'production',
         '+14155550100', 3, 'simulator', ?3, 'queued', 1000, 1000, ?4, ?5,
         '{\"name\":\"Ada\",\"n\":1}', '{\"direction\":\"outbound\"}', '{\"crm\":\"x\"}',
         '[\"missing\"]', '[]')",
        rusqlite::params![
            id,
            format!("0190f1d2-0000-7000-8000-{id:012}"),
            status,
            dialed_at,
            ended_at
        ],
    )
    .expect("insert run");
}

#[tokio::test]
async fn runs_of_a_version_5_database_survive_the_upgrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callgate.db");
    {
        let c = version_5(&path);
        insert_run(&c, 1, "ended", Some(2000), Some(3000));
        // A live run whose provider reported ringing before any dial event was stored.
        insert_run(&c, 2, "ringing", None, None);
        insert_run(&c, 3, "queued", None, None);
        // What an ended call left in the row before version 9 moved it out.
        c.execute(
            r#"UPDATE runs SET
                 transcript = '[{"role":"agent","text":"Hello Ada","at":"2026-11-23T10:00:01Z"}]',
                 recording_url = 'https://rec.example/1.wav', extracted = '{"confirmed":true}',
                 greeting = 'Hello Ada',
                 events = '[{"status":"queued","at":"2026-11-23T10:00:00Z","attempt":1},
                            {"status":"ended","at":"2026-11-23T10:00:02.5Z","attempt":1,
                             "provider_status":"completed"}]'
               WHERE id = 1"#,
            [],
        )
        .expect("results");
        // A call in progress across the upgrade: its history goes on in the new entries.
        insert_run(&c, 4, "in_progress", Some(2000), None);
        c.execute(
            r#"UPDATE runs SET answered_at = 2500, events =
                 '[{"status":"dialing","at":"2026-11-23T10:00:00Z","attempt":1,"detail":"a]"}]'
               WHERE id = 4"#,
            [],
        )
        .expect("history");
    }
    let store = SqliteStore::open(&path).expect("upgrade");

    let ended = store.get_run(7, 1).await.expect("run 1");
    assert_eq!(ended.initial_context.map()["name"], "Ada");
    assert_eq!(
        ended.system_context.direction,
        Some(serde_json::json!("outbound"))
    );
    assert_eq!(ended.metadata, Some(serde_json::json!({"crm": "x"})));
    assert_eq!(ended.unresolved_variables, vec!["missing".to_owned()]);
    assert_eq!(ended.transcript.len(), 1);
    assert_eq!(ended.transcript[0].text, "Hello Ada");
    assert_eq!(
        ended.recording_url.as_deref(),
        Some("https://rec.example/1.wav")
    );
    assert_eq!(
        ended.extracted,
        Some(serde_json::json!({"confirmed": true}))
    );
    assert_eq!(ended.greeting.as_deref(), Some("Hello Ada"));
    let history: Vec<_> = ended
        .events
        .iter()
        .map(|e| {
            (
                e.status.as_str(),
                e.at.to_string(),
                e.provider_status.clone(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            ("queued", "2026-11-23T10:00:00Z".to_owned(), None),
            (
                "ended",
                "2026-11-23T10:00:02.5Z".to_owned(),
                Some("completed".to_owned())
            ),
        ]
    );
    let mut end = callgate_store::RunUpdate::new(
        callgate_domain::lifecycle::CallSignal::Ended {
            outcome: callgate_domain::lifecycle::Outcome::Completed,
            reason: "hangup".into(),
        },
        "2026-11-23T10:00:09Z".parse().expect("time"),
    );
    end.provider_status = Some("completed".into());
    end.transcript = Some(vec![]);
    store.apply_update(4, end).await.expect("end run 4");
    let run4 = store.get_run(7, 4).await.expect("run 4");
    let history: Vec<_> = run4
        .events
        .iter()
        .map(|e| {
            (
                e.status.as_str(),
                e.detail.clone(),
                e.provider_status.clone(),
            )
        })
        .collect();
    assert_eq!(
        history,
        vec![
            ("dialing", Some("a]".to_owned()), None),
            ("ended", None, Some("completed".to_owned())),
        ]
    );
    let queued = store.get_run(7, 3).await.expect("run 3");
    assert!(queued.transcript.is_empty() && queued.greeting.is_none());
    assert_eq!(
        store
            .list_runs(
                7,
                &callgate_store::RunFilter {
                    limit: 10,
                    ..Default::default()
                }
            )
            .await
            .expect("list")
            .len(),
        4
    );

    // The live-run indexes now key on dialed_at: the ringing run was given one.
    assert_eq!(
        store.live_runs().await.expect("live"),
        vec![(2, "ringing".to_owned())]
    );
    let mut counts: Vec<_> = store
        .queue_counts()
        .await
        .expect("counts")
        .into_iter()
        .map(|q| (q.status.as_str().to_owned(), q.count))
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![("queued".to_owned(), 1), ("ringing".to_owned(), 1)]
    );
}

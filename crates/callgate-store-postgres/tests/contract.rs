//! The store contract suite (`callgate_store::contract`) against PostgreSQL, plus what only
//! this backend has: connecting, and migrating from several nodes at once.
//!
//! Runs when `CALLGATE_TEST_POSTGRES_URL` names a server (a role that may create databases);
//! each test gets a fresh database `cg_test_<random>`, dropped afterwards. Without the
//! variable every test prints a SKIPPED line and passes.
#![allow(clippy::unwrap_used)]

use callgate_store::contract::ContractTest;
use callgate_store::{Store, StoreError, TenantStore};
use callgate_store_postgres::PgStore;
use callgate_store_postgres::scratch::ScratchDatabase;
use std::sync::Arc;

const ENV: &str = "CALLGATE_TEST_POSTGRES_URL";

/// The admin URL, or `None` after printing why the test is skipped.
fn admin_url(name: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // One line, as the task runner and CI logs show it; `name` goes to stderr.
            println!(
                "SKIPPED: set {ENV}=postgres://postgres@127.0.0.1:5432/test to run the \
                 PostgreSQL contract suite"
            );
            eprintln!("skipped {name}");
            None
        }
    }
}

async fn harness(name: &'static str, test: ContractTest) {
    let Some(admin) = admin_url(name) else {
        return;
    };
    let db = ScratchDatabase::create(&admin).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(db.url(), 8).await.unwrap());
    // On its own task so a failing check still lets the database be dropped here.
    let outcome = tokio::spawn(test(store)).await;
    db.drop_database().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

callgate_store::store_contract_tests!(harness);

#[tokio::test]
async fn an_unreachable_server_is_unavailable_with_a_clear_message() {
    // Port 1 on the loopback interface: nothing listens there, the refusal is immediate.
    let err = PgStore::connect("postgres://postgres@127.0.0.1:1/callgate", 2)
        .await
        .err()
        .unwrap();
    match err {
        StoreError::Unavailable(msg) => {
            assert!(
                msg.contains("cannot connect to PostgreSQL at 127.0.0.1:1/callgate"),
                "{msg}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_malformed_url_is_rejected() {
    assert!(matches!(
        PgStore::connect("postgres://host:notaport/db", 2).await,
        Err(StoreError::Internal(_))
    ));
}

#[tokio::test]
async fn a_missing_database_is_unavailable() {
    let Some(admin) = admin_url("a_missing_database_is_unavailable") else {
        return;
    };
    let url = callgate_store_postgres::scratch::with_database(&admin, "cg_no_such_db").unwrap();
    assert!(matches!(
        PgStore::connect(&url, 2).await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_nodes_starting_at_once_migrate_once() {
    let Some(admin) = admin_url("several_nodes_starting_at_once_migrate_once") else {
        return;
    };
    let db = ScratchDatabase::create(&admin).await.unwrap();
    let url = db.url().to_owned();
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url, 2).await })
        })
        .collect();
    let mut stores = Vec::new();
    for node in nodes {
        stores.push(node.await.unwrap().unwrap());
    }
    // Every node sees the one schema, and a later start finds nothing to do.
    assert!(stores[0].is_empty().await.unwrap());
    stores[1]
        .create_org("Acme", jiff::Timestamp::now())
        .await
        .unwrap();
    assert!(!stores[2].is_empty().await.unwrap());
    let again = PgStore::connect(&url, 2).await.unwrap();
    assert_eq!(again.list_orgs().await.unwrap().len(), 1);
    drop((stores, again));
    db.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_unavailable_and_the_pool_recovers() {
    let Some(admin) = admin_url("a_lost_connection_is_unavailable_and_the_pool_recovers") else {
        return;
    };
    let db = ScratchDatabase::create(&admin).await.unwrap();
    let store = PgStore::connect(db.url(), 1).await.unwrap();
    store
        .create_org("Acme", jiff::Timestamp::now())
        .await
        .unwrap();
    // What a database restart or failover does to the pooled connection.
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&db.name()],
        )
        .await
        .unwrap();
    // Termination is asynchronous: wait (bounded) until the server has ended the session.
    for _ in 0..100 {
        let row = client
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db.name()],
            )
            .await
            .unwrap();
        if row.get::<_, i64>(0) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A call may still meet the dead connection: that is a retryable 503, never a 500, and
    // the pool replaces the connection within a retry or two.
    let mut recovered = false;
    for _ in 0..3 {
        match store.list_orgs().await {
            Ok(orgs) => {
                assert_eq!(orgs.len(), 1);
                recovered = true;
                break;
            }
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("expected Unavailable, got {e:?}"),
        }
    }
    assert!(recovered, "the pool did not replace the lost connection");
    drop(store);
    db.drop_database().await.unwrap();
}

/// Sessions of `db` whose last statement was the notification listener's `LISTEN`.
async fn listeners(admin: &tokio_postgres::Client, db: &str) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
            &[&db],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits (at most 10 s) until `db` has a listening session and returns its pid.
async fn a_listener(admin: &tokio_postgres::Client, db: &str) -> i32 {
    for _ in 0..200 {
        if let Some(pid) = listeners(admin, db).await.first() {
            return *pid;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no session is listening for work notifications");
}

async fn next_hint(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<callgate_store::WorkHint>,
) -> Option<callgate_store::WorkHint> {
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_and_freed_capacity_wake_other_nodes_even_after_a_reconnect() {
    use callgate_domain::lifecycle::{Outcome, RunStatus};
    use callgate_store::contract::fixtures::{apply, run, signal_ended, t, world};
    use callgate_store::{RunStore, WorkHint};
    let Some(admin) =
        admin_url("queued_work_and_freed_capacity_wake_other_nodes_even_after_a_reconnect")
    else {
        return;
    };
    let db = ScratchDatabase::create(&admin).await.unwrap();
    let writer = PgStore::connect(db.url(), 2).await.unwrap();
    let other_node = PgStore::connect(db.url(), 2).await.unwrap();
    let mut hints = other_node.work_hints().unwrap();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let first_listener = a_listener(&client, db.name()).await;

    let w = world(&writer, "Acme").await;
    let expected = WorkHint {
        config_id: w.config.id,
        org_id: w.tn.org.id,
    };
    let queued = run(&writer, &w.agent, &w.config, RunStatus::Queued, t(10)).await;
    assert_eq!(next_hint(&mut hints).await, Some(expected), "enqueue");
    let claimed = writer
        .claim_runs(w.config.id, 1, "node-a", t(11))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    apply(
        &writer,
        queued.id,
        signal_ended(Outcome::Completed, "agent_hangup"),
        t(12),
    )
    .await;
    assert_eq!(
        next_hint(&mut hints).await,
        Some(expected),
        "the end of a live run"
    );

    // The listening session dies (a restart, a failover): the listener reconnects by itself.
    client
        .execute("SELECT pg_terminate_backend($1)", &[&first_listener])
        .await
        .unwrap();
    let mut woke = false;
    for _ in 0..20 {
        let pid = a_listener(&client, db.name()).await;
        if pid == first_listener {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        run(&writer, &w.agent, &w.config, RunStatus::Queued, t(20)).await;
        if next_hint(&mut hints).await == Some(expected) {
            woke = true;
            break;
        }
    }
    assert!(
        woke,
        "no hint after the listener's connection was terminated"
    );
    drop((writer, other_node, hints));
    db.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_triggers_of_one_agent_are_all_counted() {
    use callgate_domain::lifecycle::RunStatus;
    use callgate_store::AgentStore;
    use callgate_store::contract::fixtures::{run, t, world};
    let Some(admin) = admin_url("concurrent_triggers_of_one_agent_are_all_counted") else {
        return;
    };
    let db = ScratchDatabase::create(&admin).await.unwrap();
    // 64 triggers at once on eight pooled sessions, counted in the sessions' slots (migration
    // 0005) beside a base count already in the agent's row and slots other sessions left.
    let store = Arc::new(PgStore::connect(db.url(), 8).await.unwrap());
    let w = Arc::new(world(store.as_ref(), "Acme").await);
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "UPDATE agents SET total_runs = 5 WHERE id = $1",
            &[&w.agent.agent.id],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO agent_run_counts (agent_id, slot, runs) VALUES ($1, 62, 3), ($1, 63, 7)",
            &[&w.agent.agent.id],
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (store, w) = (store.clone(), w.clone());
            tokio::spawn(async move {
                run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(i)).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let agent = store
        .get_agent(w.tn.org.id, w.agent.agent.id)
        .await
        .unwrap()
        .agent;
    assert_eq!(agent.total_runs, 5 + 3 + 7 + 64);
    assert_eq!(
        store
            .list_agents(w.tn.org.id, None)
            .await
            .unwrap()
            .iter()
            .find(|a| a.id == w.agent.agent.id)
            .map(|a| a.total_runs),
        Some(5 + 3 + 7 + 64)
    );
    drop((client, store, w));
    db.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_counts_follow_claims_and_batched_lifecycle_updates() {
    use callgate_domain::lifecycle::{CallSignal, Outcome, RunStatus};
    use callgate_store::contract::fixtures::{run, signal_ended, t, world};
    use callgate_store::{ClaimLimits, RunStore, RunUpdate};
    let Some(admin) = admin_url("live_counts_follow_claims_and_batched_lifecycle_updates") else {
        return;
    };
    let db = ScratchDatabase::create(&admin).await.unwrap();
    let store = PgStore::connect(db.url(), 4).await.unwrap();
    let w = world(&store, "Acme").await;
    let (org, cfg) = (w.tn.org.id, w.config.id);
    for i in 0..5 {
        run(&store, &w.agent, &w.config, RunStatus::Queued, t(i)).await;
    }
    // The organisation allows three live calls.
    let limits = ClaimLimits {
        org_max_live: 3,
        config_max_live: None,
        calls_per_second: 1000.0,
        max_batch: 10,
    };
    let first = store
        .claim_paced(cfg, org, &limits, "n1", t(10))
        .await
        .unwrap();
    assert_eq!(first.runs.len(), 3);
    // Ringing and answered keep a call live; only its end frees a slot. One batch: ringing
    // for the first, answered for the second, the end of the third.
    let batch: Arc<[_]> = vec![
        (first.runs[0].id, RunUpdate::new(CallSignal::Ringing, t(11))),
        (
            first.runs[1].id,
            RunUpdate::new(CallSignal::Answered { answered_by: None }, t(11)),
        ),
        (
            first.runs[2].id,
            RunUpdate::new(signal_ended(Outcome::Completed, "agent_hangup"), t(11)),
        ),
    ]
    .into();
    for r in store.apply_updates(batch).await.unwrap() {
        r.unwrap();
    }
    let second = store
        .claim_paced(cfg, org, &limits, "n1", t(12))
        .await
        .unwrap();
    assert_eq!(second.runs.len(), 1, "one slot was freed");
    let full = store
        .claim_paced(cfg, org, &limits, "n1", t(13))
        .await
        .unwrap();
    assert!(full.runs.is_empty(), "three calls are live again");
    let (client, connection) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let counted: i64 = client
        .query_one(
            "SELECT live FROM live_counts WHERE org_id = $1 AND config_id = $2",
            &[&org, &cfg],
        )
        .await
        .unwrap()
        .get(0);
    let actual: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM runs WHERE status IN ('dialing', 'ringing', 'in_progress')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((counted, actual), (3, 3));
    drop((client, store));
    db.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_the_database_refuses_fails_alone_in_its_batch() {
    use callgate_domain::lifecycle::{CallSignal, Outcome, RunStatus};
    use callgate_store::contract::fixtures::{run, signal_ended, t, world};
    use callgate_store::{RunStore, RunUpdate};
    let Some(admin) = admin_url("an_update_the_database_refuses_fails_alone_in_its_batch") else {
        return;
    };
    let db = ScratchDatabase::create(&admin).await.unwrap();
    let store = PgStore::connect(db.url(), 4).await.unwrap();
    let w = world(&store, "Acme").await;
    let org = w.tn.org.id;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            run(&store, &w.agent, &w.config, RunStatus::Queued, t(i))
                .await
                .id,
        );
    }
    // PostgreSQL text cannot hold a NUL character: the batch's one UPDATE fails, and the
    // batch is applied again update by update, where only this one fails.
    let mut refused = RunUpdate::new(signal_ended(Outcome::Failed, "error"), t(5));
    refused.error = Some("carrier said \0".into());
    let batch: Arc<[_]> = vec![
        (ids[0], RunUpdate::new(CallSignal::Ringing, t(5))),
        (ids[1], refused),
        (ids[2], RunUpdate::new(CallSignal::Ringing, t(5))),
    ]
    .into();
    let results = store.apply_updates(batch).await.unwrap();
    assert!(results[0].as_ref().is_ok_and(|a| a.changed), "{results:?}");
    assert!(
        matches!(results[1], Err(StoreError::Internal(_))),
        "{results:?}"
    );
    assert!(results[2].as_ref().is_ok_and(|a| a.changed), "{results:?}");
    let status = |i: usize| {
        let store = &store;
        let id = ids[i];
        async move { store.get_run(org, id).await.unwrap().status }
    };
    assert_eq!(status(0).await, RunStatus::Ringing);
    assert_eq!(status(1).await, RunStatus::Queued);
    assert_eq!(status(2).await, RunStatus::Ringing);
    drop(store);
    db.drop_database().await.unwrap();
}

//! Runs claimed as they are written (`RunStore::enqueue_or_claim`): only when nothing waits
//! before them and the same limits as a dispatcher claim allow.
#![allow(clippy::unwrap_used)]

use callgate_domain::lifecycle::{Outcome, RunStatus};
use callgate_store::contract::fixtures::*;
use callgate_store::{ClaimLimits, DirectClaim, RunStore, Store};
use callgate_store_sqlite::SqliteStore;

fn direct(org_max_live: u32, calls_per_second: f64) -> DirectClaim {
    DirectClaim {
        limits: ClaimLimits {
            org_max_live,
            config_max_live: None,
            calls_per_second,
            max_batch: 1,
        },
        node: "node-a".into(),
    }
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("callgate.db")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_run_is_born_dialing_only_while_nothing_waits_and_the_limits_allow() {
    let (_dir, store) = open();
    let s: &dyn Store = &store;
    let w = world(s, "acme").await;
    let claim = direct(2, 1000.0);
    let mut runs = Vec::new();
    for i in 0..3 {
        let new = new_run(s, &w.agent, &w.config, RunStatus::Queued, t(10 + i)).await;
        runs.push(store.enqueue_or_claim(new, None, &claim).await.unwrap());
    }
    // Two fit the organisation's limit of two live calls; the third waits.
    assert_eq!(runs[0].status, RunStatus::Dialing);
    assert_eq!(runs[1].status, RunStatus::Dialing);
    assert_eq!(runs[2].status, RunStatus::Queued);
    assert_eq!(runs[0].initial_status, RunStatus::Queued);
    let stored = store.get_run(w.tn.org.id, runs[0].id).await.unwrap();
    assert_eq!(stored.status, RunStatus::Dialing);
    assert_eq!(stored.dialed_at, Some(stored.created_at));
    let history: Vec<_> = stored.events.iter().map(|e| e.status).collect();
    assert_eq!(history, vec![RunStatus::Queued, RunStatus::Dialing]);
    assert_eq!(stored, runs[0]);
    // Leased to the node that will dial it: a silent node's run is an orphan.
    let orphans = store.orphaned_runs(t(1000)).await.unwrap();
    assert_eq!(orphans.len(), 2);

    // A call ends and frees a slot, but the queued run is older than any newcomer.
    apply(
        s,
        runs[0].id,
        signal_ended(Outcome::Completed, "agent_hangup"),
        t(20),
    )
    .await;
    let new = new_run(s, &w.agent, &w.config, RunStatus::Queued, t(21)).await;
    let late = store.enqueue_or_claim(new, None, &claim).await.unwrap();
    assert_eq!(late.status, RunStatus::Queued);
    let claimed = store
        .claim_paced(w.config.id, w.tn.org.id, &claim.limits, "node-a", t(22))
        .await
        .unwrap();
    assert_eq!(
        claimed.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![runs[2].id]
    );
}

#[tokio::test]
async fn direct_claims_and_dispatcher_claims_share_one_pacing_schedule() {
    let (_dir, store) = open();
    let s: &dyn Store = &store;
    let w = world(s, "acme").await;
    // One call per second: the second run of the same instant waits for the dispatcher.
    let claim = direct(100, 1.0);
    let first = new_run(s, &w.agent, &w.config, RunStatus::Queued, t(10)).await;
    let second = new_run(s, &w.agent, &w.config, RunStatus::Queued, t(10)).await;
    let first = store.enqueue_or_claim(first, None, &claim).await.unwrap();
    let second = store.enqueue_or_claim(second, None, &claim).await.unwrap();
    assert_eq!(first.status, RunStatus::Dialing);
    assert_eq!(second.status, RunStatus::Queued);
    let held = store
        .claim_paced(w.config.id, w.tn.org.id, &claim.limits, "node-a", t(10))
        .await
        .unwrap();
    assert!(held.runs.is_empty());
    assert_eq!(held.retry_at, Some(t(11)));
    let next = store
        .claim_paced(w.config.id, w.tn.org.id, &claim.limits, "node-a", t(11))
        .await
        .unwrap();
    assert_eq!(next.runs.len(), 1);
}

#[tokio::test]
async fn enqueue_run_never_claims() {
    let (_dir, store) = open();
    let s: &dyn Store = &store;
    let w = world(s, "acme").await;
    let r = run(s, &w.agent, &w.config, RunStatus::Queued, t(10)).await;
    assert_eq!(r.status, RunStatus::Queued);
    assert_eq!(r.dialed_at, None);
}

#[tokio::test]
async fn a_failed_write_does_not_leave_the_live_counts_wrong() {
    let (_dir, store) = open();
    let s: &dyn Store = &store;
    let w = world(s, "acme").await;
    let claim = direct(2, 1000.0);
    let first = new_run(s, &w.agent, &w.config, RunStatus::Queued, t(10)).await;
    let mut again = first.clone();
    let first = store.enqueue_or_claim(first, None, &claim).await.unwrap();
    assert_eq!(first.status, RunStatus::Dialing);
    // The same run id again: the claim is decided (one more live call counted), then the
    // insert fails and the job is rolled back.
    again.call_id = uuid::Uuid::new_v4();
    assert!(store.enqueue_or_claim(again, None, &claim).await.is_err());
    // One call is live, so a second still fits the limit of two.
    let second = new_run(s, &w.agent, &w.config, RunStatus::Queued, t(11)).await;
    let second = store.enqueue_or_claim(second, None, &claim).await.unwrap();
    assert_eq!(second.status, RunStatus::Dialing);
    let third = new_run(s, &w.agent, &w.config, RunStatus::Queued, t(12)).await;
    let third = store.enqueue_or_claim(third, None, &claim).await.unwrap();
    assert_eq!(third.status, RunStatus::Queued);
}

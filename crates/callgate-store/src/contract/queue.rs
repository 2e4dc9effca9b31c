//! The durable queue: claims (plain and paced), concurrent claimers, bookkeeping counts and
//! the runs of nodes that went silent.

use super::fixtures::*;
use crate::*;
use callgate_domain::lifecycle::{CallSignal, Outcome, RunStatus};
use std::collections::HashSet;
use std::sync::Arc;

fn ids(claimed: &[ClaimedRun]) -> Vec<RunId> {
    claimed.iter().map(|c| c.id).collect()
}

pub async fn claims_take_the_oldest_due_queued_runs_of_one_configuration(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let org = w.tn.org.id;
    let other_cfg = store
        .create_config(new_config(org, "other", false), t(2))
        .await
        .unwrap();
    let q1 = run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Queued,
        t(10),
    )
    .await;
    let scheduled = run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Scheduled,
        t(10),
    )
    .await;
    let elsewhere = run(
        store.as_ref(),
        &w.agent,
        &other_cfg,
        RunStatus::Queued,
        t(10),
    )
    .await;
    let mut later = new_run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Queued,
        t(11),
    )
    .await;
    later.scheduled_for = t(100);
    let later = store.enqueue_run(later, None).await.unwrap();
    let q2 = run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Queued,
        t(12),
    )
    .await;
    let q3 = run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Queued,
        t(13),
    )
    .await;

    assert!(
        store
            .claim_runs(w.config.id, 0, "n1", t(20))
            .await
            .unwrap()
            .is_empty()
    );
    let first = store.claim_runs(w.config.id, 2, "n1", t(20)).await.unwrap();
    assert_eq!(ids(&first), vec![q1.id, q2.id]);
    assert_eq!(
        first[0],
        ClaimedRun {
            id: q1.id,
            call_id: q1.call_id,
            org_id: org,
            config_id: w.config.id,
            phone_number: q1.phone_number.clone(),
            from_number: q1.from_number.clone(),
            greeting: q1.greeting.clone(),
            created_at: q1.created_at,
            attempt: 1,
        }
    );
    let claimed = store.get_run(org, q1.id).await.unwrap();
    assert_eq!(claimed.status, RunStatus::Dialing);
    assert_eq!(claimed.dialed_at, Some(stored(t(20))));
    let events: Vec<_> = claimed.events.iter().map(|e| (e.status, e.at)).collect();
    assert_eq!(
        events,
        vec![
            (RunStatus::Queued, stored(t(10))),
            (RunStatus::Dialing, stored(t(20)))
        ]
    );
    // Not due yet, not queued, or another configuration's: left alone.
    let rest = store
        .claim_runs(w.config.id, 10, "n1", t(20))
        .await
        .unwrap();
    assert_eq!(ids(&rest), vec![q3.id]);
    assert!(
        store
            .claim_runs(w.config.id, 10, "n1", t(20))
            .await
            .unwrap()
            .is_empty()
    );
    for untouched in [&scheduled, &elsewhere, &later] {
        let r = store.get_run(org, untouched.id).await.unwrap();
        assert_eq!((r.status, r.events.len()), (untouched.status, 1));
    }
    // Once its time has come, the delayed run is due.
    let due = store
        .claim_runs(w.config.id, 10, "n1", t(100))
        .await
        .unwrap();
    assert_eq!(ids(&due), vec![later.id]);
    assert_eq!(
        ids(&store
            .claim_runs(other_cfg.id, 10, "n1", t(20))
            .await
            .unwrap()),
        vec![elsewhere.id]
    );
}

pub async fn concurrent_claimers_never_share_a_run(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let mut queued = HashSet::new();
    for i in 0..30 {
        let r = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(i)).await;
        queued.insert(r.id);
    }
    let claimers: Vec<_> = ["node-a", "node-b"]
        .into_iter()
        .map(|node| {
            let store = store.clone();
            let config = w.config.id;
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_runs(config, 3, node, t(60)).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    // Within one claim, oldest first.
                    assert!(batch.windows(2).all(|p| p[0].id < p[1].id));
                    mine.extend(batch.into_iter().map(|c| c.id));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            assert!(seen.insert(id), "run {id} was claimed twice");
        }
    }
    assert_eq!(seen, queued, "every queued run was claimed");
    for id in seen {
        let r = store.get_run(w.tn.org.id, id).await.unwrap();
        assert_eq!(r.status, RunStatus::Dialing);
        assert_eq!(r.events.len(), 2, "one dialing event per run");
    }
}

fn limits(org_max_live: u32, config_max_live: Option<u32>, cps: f64) -> ClaimLimits {
    ClaimLimits {
        org_max_live,
        config_max_live,
        calls_per_second: cps,
        max_batch: 10,
    }
}

pub async fn paced_claims_respect_live_limits_and_keep_their_pacing(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let (org, cfg) = (w.tn.org.id, w.config.id);
    let empty = store
        .claim_paced(cfg, org, &limits(5, None, 1000.0), "n1", t(20))
        .await
        .unwrap();
    assert_eq!(
        empty,
        Claim {
            drained: true,
            ..Claim::default()
        }
    );
    let mut queued = Vec::new();
    for i in 0..4 {
        queued.push(
            run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(i))
                .await
                .id,
        );
    }
    // The organisation allows two live calls.
    let first = store
        .claim_paced(cfg, org, &limits(2, None, 1000.0), "n1", t(20))
        .await
        .unwrap();
    assert_eq!(ids(&first.runs), queued[..2].to_vec());
    assert!(!first.drained);
    let full = store
        .claim_paced(cfg, org, &limits(2, None, 1000.0), "n1", t(20))
        .await
        .unwrap();
    assert_eq!(full, Claim::default());
    // The configuration's own limit counts too.
    let capped = store
        .claim_paced(cfg, org, &limits(10, Some(3), 1000.0), "n1", t(20))
        .await
        .unwrap();
    assert_eq!(ids(&capped.runs), vec![queued[2]]);
    // One call per second: the pacer state is kept between claims.
    apply(
        store.as_ref(),
        queued[0],
        signal_ended(Outcome::Completed, "x"),
        t(21),
    )
    .await;
    apply(
        store.as_ref(),
        queued[1],
        signal_ended(Outcome::Completed, "x"),
        t(21),
    )
    .await;
    run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(5)).await;
    let paced = store
        .claim_paced(cfg, org, &limits(10, None, 1.0), "n1", t(30))
        .await
        .unwrap();
    assert_eq!(ids(&paced.runs), vec![queued[3]]);
    let retry_at = paced.retry_at.expect("pacing holds the second run back");
    assert!(retry_at > t(30));
    let held = store
        .claim_paced(cfg, org, &limits(10, None, 1.0), "n1", t(30))
        .await
        .unwrap();
    assert!(held.runs.is_empty());
    assert!(held.retry_at.is_some_and(|at| at > t(30)));
    let later = store
        .claim_paced(cfg, org, &limits(10, None, 1.0), "n1", retry_at)
        .await
        .unwrap();
    assert_eq!(later.runs.len(), 1);
}

pub async fn live_runs_and_queue_counts_follow_the_statuses(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let other = world(store.as_ref(), "globex").await;
    assert!(store.queue_counts().await.unwrap().is_empty());
    assert!(store.live_runs().await.unwrap().is_empty());
    let a = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(2)).await;
    run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Scheduled,
        t(3),
    )
    .await;
    let b = run(
        store.as_ref(),
        &other.agent,
        &other.config,
        RunStatus::Queued,
        t(4),
    )
    .await;
    let c = run(
        store.as_ref(),
        &other.agent,
        &other.config,
        RunStatus::Queued,
        t(5),
    )
    .await;
    let d = run(
        store.as_ref(),
        &other.agent,
        &other.config,
        RunStatus::Queued,
        t(6),
    )
    .await;
    apply(store.as_ref(), a.id, CallSignal::Dialing, t(7)).await;
    apply(store.as_ref(), b.id, CallSignal::Ringing, t(7)).await;
    apply(
        store.as_ref(),
        c.id,
        CallSignal::Answered { answered_by: None },
        t(7),
    )
    .await;
    apply(
        store.as_ref(),
        d.id,
        signal_ended(Outcome::Failed, "provider_error"),
        t(7),
    )
    .await;
    let mut counts: Vec<_> = store
        .queue_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|q| (q.org_id, q.config_id, q.status, q.count))
        .collect();
    counts.sort_by_key(|c| (c.0, c.1, c.2));
    let (o1, c1, o2, c2) = (w.tn.org.id, w.config.id, other.tn.org.id, other.config.id);
    let mut expected = vec![
        (o1, c1, RunStatus::Scheduled, 1),
        (o1, c1, RunStatus::Queued, 1),
        (o1, c1, RunStatus::Dialing, 1),
        (o2, c2, RunStatus::Ringing, 1),
        (o2, c2, RunStatus::InProgress, 1),
    ];
    expected.sort_by_key(|c| (c.0, c.1, c.2));
    assert_eq!(counts, expected);
    assert_eq!(
        store.live_runs().await.unwrap(),
        vec![
            (a.id, "dialing".to_owned()),
            (b.id, "ringing".to_owned()),
            (c.id, "in_progress".to_owned())
        ]
    );
}

pub async fn runs_of_silent_nodes_are_orphans(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let a = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    let b = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(2)).await;
    let unleased = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(3)).await;
    let ended = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(4)).await;
    assert_eq!(
        ids(&store
            .claim_runs(w.config.id, 2, "node-a", t(10))
            .await
            .unwrap()),
        vec![a.id, b.id]
    );
    store
        .apply_update(b.id, RunUpdate::new(CallSignal::Ringing, t(11)))
        .await
        .unwrap();
    // A run moved to dialing without a claim has no lease owner: nobody will settle it.
    apply(store.as_ref(), unleased.id, CallSignal::Dialing, t(11)).await;
    apply(
        store.as_ref(),
        ended.id,
        signal_ended(Outcome::Canceled, "canceled"),
        t(11),
    )
    .await;
    let orphans = |at| {
        let store = store.clone();
        async move {
            store
                .orphaned_runs(at)
                .await
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(orphans(t(12)).await, vec![a.id, b.id, unleased.id]);
    store.heartbeat("node-a", t(20)).await.unwrap();
    store.heartbeat("node-b", t(5)).await.unwrap();
    assert_eq!(orphans(t(20)).await, vec![unleased.id]);
    assert_eq!(
        store.orphaned_runs(t(21)).await.unwrap(),
        vec![
            (a.id, "dialing".to_owned()),
            (b.id, "ringing".to_owned()),
            (unleased.id, "dialing".to_owned())
        ]
    );
    // A later heartbeat replaces the earlier one.
    store.heartbeat("node-a", t(30)).await.unwrap();
    assert_eq!(orphans(t(21)).await, vec![unleased.id]);
}

pub async fn the_live_runs_leased_to_a_node_are_listed(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let a = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    let b = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(2)).await;
    let ended = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(3)).await;
    let other = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(4)).await;
    // Never claimed: queued runs have no lease, and are not listed.
    let _queued = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(5)).await;
    assert_eq!(
        ids(&store
            .claim_runs(w.config.id, 3, "node-a", t(10))
            .await
            .unwrap()),
        vec![a.id, b.id, ended.id]
    );
    assert_eq!(
        ids(&store
            .claim_runs(w.config.id, 1, "node-b", t(10))
            .await
            .unwrap()),
        vec![other.id]
    );
    apply(
        store.as_ref(),
        b.id,
        CallSignal::Answered { answered_by: None },
        t(11),
    )
    .await;
    apply(
        store.as_ref(),
        ended.id,
        signal_ended(Outcome::Completed, "agent_hangup"),
        t(11),
    )
    .await;
    // A heartbeat of the same id changes nothing: the id, not its liveness, is asked.
    store.heartbeat("node-a", t(12)).await.unwrap();
    assert_eq!(
        store.runs_leased_to("node-a").await.unwrap(),
        vec![
            (a.id, "dialing".to_owned()),
            (b.id, "in_progress".to_owned())
        ]
    );
    assert_eq!(
        store.runs_leased_to("node-b").await.unwrap(),
        vec![(other.id, "dialing".to_owned())]
    );
    assert!(store.runs_leased_to("node-c").await.unwrap().is_empty());
}

pub async fn a_nodes_last_heartbeat_reads_back(store: Arc<dyn Store>) {
    // Stores keep microseconds; the fixture instants carry nanoseconds.
    let seen = |node: &'static str| {
        let store = store.clone();
        async move {
            store
                .node_last_seen(node)
                .await
                .unwrap()
                .map(|t| t.as_microsecond())
        }
    };
    let at = |secs| Some(t(secs).as_microsecond());
    assert_eq!(seen("node-a").await, None);
    store.heartbeat("node-a", t(10)).await.unwrap();
    store.heartbeat("node-b", t(11)).await.unwrap();
    assert_eq!(seen("node-a").await, at(10));
    // Each id has its own time, and a later heartbeat replaces the earlier one.
    store.heartbeat("node-a", t(12)).await.unwrap();
    assert_eq!(seen("node-a").await, at(12));
    assert_eq!(seen("node-b").await, at(11));
    assert_eq!(seen("node-c").await, None);
}

pub async fn a_run_not_yet_dialled_is_canceled_once_and_never_claimed(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let other = world(store.as_ref(), "globex").await;
    let claimed = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    let queued = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(2)).await;
    let scheduled = run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Scheduled,
        t(3),
    )
    .await;
    assert_eq!(
        ids(&store
            .claim_runs(w.config.id, 1, "node-a", t(10))
            .await
            .unwrap()),
        vec![claimed.id]
    );

    let Cancel::Canceled {
        run: canceled,
        was: RunStatus::Queued,
    } = store
        .cancel_run(w.tn.org.id, queued.call_id, t(20))
        .await
        .unwrap()
    else {
        panic!("a queued run is cancelable");
    };
    assert_eq!(canceled.id, queued.id);
    assert_eq!(canceled.status, RunStatus::Ended);
    assert_eq!(canceled.outcome, Some(Outcome::Canceled));
    assert_eq!(canceled.ended_reason.as_deref(), Some(CANCELED_REASON));
    assert_eq!(
        canceled.ended_at.map(|t| t.as_microsecond()),
        Some(t(20).as_microsecond())
    );
    assert_eq!(canceled.dialed_at, None);
    let last = canceled.events.last().unwrap();
    assert_eq!(
        (
            last.status,
            last.at.as_microsecond(),
            last.attempt,
            last.detail.as_deref()
        ),
        (
            RunStatus::Ended,
            t(20).as_microsecond(),
            1,
            Some(CANCELED_DETAIL)
        )
    );
    assert_eq!(canceled.events.len(), queued.events.len() + 1);
    // What the answer shows is what is stored.
    assert_eq!(
        store.get_run(w.tn.org.id, queued.id).await.unwrap(),
        canceled
    );

    let Cancel::Canceled {
        run: from_schedule,
        was: RunStatus::Scheduled,
    } = store
        .cancel_run(w.tn.org.id, scheduled.call_id, t(21))
        .await
        .unwrap()
    else {
        panic!("a scheduled run is cancelable");
    };
    assert_eq!(from_schedule.outcome, Some(Outcome::Canceled));

    // Once dialling began, or once ended, nothing changes.
    assert_eq!(
        store
            .cancel_run(w.tn.org.id, queued.call_id, t(22))
            .await
            .unwrap(),
        Cancel::NotCancelable(canceled.clone())
    );
    let Cancel::NotCancelable(dialing) = store
        .cancel_run(w.tn.org.id, claimed.call_id, t(22))
        .await
        .unwrap()
    else {
        panic!("a claimed run is not cancelable");
    };
    assert_eq!(
        (dialing.id, dialing.status),
        (claimed.id, RunStatus::Dialing)
    );

    // Another organisation's run, or an unknown id, is not found.
    assert!(matches!(
        store
            .cancel_run(other.tn.org.id, claimed.call_id, t(23))
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .cancel_run(w.tn.org.id, uuid::Uuid::new_v4(), t(23))
            .await,
        Err(StoreError::NotFound)
    ));

    // A canceled run is never claimed, and no longer counts as waiting.
    assert!(
        store
            .claim_runs(w.config.id, 10, "node-a", t(30))
            .await
            .unwrap()
            .is_empty()
    );
    let waiting: i64 = store
        .queue_counts()
        .await
        .unwrap()
        .iter()
        .filter(|q| matches!(q.status, RunStatus::Queued | RunStatus::Scheduled))
        .map(|q| q.count)
        .sum();
    assert_eq!(waiting, 0);
}

pub async fn cancels_racing_claims_never_share_a_run(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let mut queued = Vec::new();
    for i in 0..40 {
        queued.push(run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(i)).await);
    }
    let claimer = {
        let store = store.clone();
        let config = w.config.id;
        tokio::spawn(async move {
            let mut claimed = HashSet::new();
            loop {
                let batch = store.claim_runs(config, 2, "node-a", t(60)).await.unwrap();
                if batch.is_empty() {
                    return claimed;
                }
                claimed.extend(batch.into_iter().map(|c| c.id));
                tokio::task::yield_now().await;
            }
        })
    };
    // Newest first, so the cancels meet the claims (oldest first) in the middle.
    let mut canceled = HashSet::new();
    let mut refused = HashSet::new();
    for r in queued.iter().rev() {
        match store
            .cancel_run(w.tn.org.id, r.call_id, t(61))
            .await
            .unwrap()
        {
            Cancel::Canceled { run, was } => {
                assert_eq!(
                    (run.outcome, was),
                    (Some(Outcome::Canceled), RunStatus::Queued)
                );
                canceled.insert(r.id);
            }
            Cancel::NotCancelable(run) => {
                assert_eq!(run.status, RunStatus::Dialing, "run {}", r.id);
                refused.insert(r.id);
            }
        }
        tokio::task::yield_now().await;
    }
    let claimed = claimer.await.unwrap();
    assert!(
        claimed.is_disjoint(&canceled),
        "a run was both claimed and canceled"
    );
    assert_eq!(
        claimed, refused,
        "a cancel was refused only for a claimed run"
    );
    assert_eq!(claimed.len() + canceled.len(), queued.len());
    for r in &queued {
        let stored = store.get_run(w.tn.org.id, r.id).await.unwrap();
        let expected = if canceled.contains(&r.id) {
            RunStatus::Ended
        } else {
            RunStatus::Dialing
        };
        assert_eq!(stored.status, expected, "run {}", r.id);
        assert_eq!(
            stored.events.len(),
            2,
            "one entry after queued, run {}",
            r.id
        );
    }
}

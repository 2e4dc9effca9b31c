//! Lifecycle updates: the state machine applied in the store, results written with the end of
//! a call, quota deduction, batches and concurrent callbacks.

use super::fixtures::*;
use crate::*;
use callgate_domain::lifecycle::{CallSignal, Outcome, RunStatus};
use serde_json::json;
use std::sync::Arc;

pub async fn lifecycle_updates_move_forward_and_ignore_duplicates(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let org = w.tn.org.id;
    let r = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    let mut dialing = RunUpdate::new(CallSignal::Dialing, t(2));
    dialing.provider_call_id = Some("CA-1".into());
    dialing.provider_status = Some("initiated".into());
    let applied = store.apply_update(r.id, dialing).await.unwrap();
    assert_eq!(
        applied,
        AppliedUpdate {
            run_id: r.id,
            org_id: org,
            config_id: w.config.id,
            before: RunStatus::Queued,
            after: RunStatus::Dialing,
            changed: true,
            outcome: None,
        }
    );
    apply(store.as_ref(), r.id, CallSignal::Ringing, t(3)).await;
    let mut answered = RunUpdate::new(
        CallSignal::Answered {
            answered_by: Some("human".into()),
        },
        at_ms(4_250),
    );
    // A later provider id never replaces the first one.
    answered.provider_call_id = Some("CA-2".into());
    store.apply_update(r.id, answered).await.unwrap();
    // A late ringing callback is ignored and records nothing.
    let mut late = RunUpdate::new(CallSignal::Ringing, t(5));
    late.detail = Some("late".into());
    let ignored = store.apply_update(r.id, late).await.unwrap();
    assert_eq!(
        (
            ignored.before,
            ignored.after,
            ignored.changed,
            ignored.outcome
        ),
        (RunStatus::InProgress, RunStatus::InProgress, false, None)
    );
    let mut end = RunUpdate::new(
        signal_ended(Outcome::Completed, "user_hangup"),
        at_ms(9_000),
    );
    end.transcript = Some(vec![TranscriptEntry {
        role: "agent".into(),
        text: "Hi".into(),
        at: at_ms(4_300),
    }]);
    end.recording_url = Some("https://rec.example/1".into());
    end.extracted = Some(json!({"z": 1, "a": "yes"}));
    end.detail = Some("completed".into());
    let ended = store.apply_update(r.id, end).await.unwrap();
    assert_eq!(
        (ended.before, ended.after, ended.changed, ended.outcome),
        (
            RunStatus::InProgress,
            RunStatus::Ended,
            true,
            Some(Outcome::Completed)
        )
    );
    let mut again = RunUpdate::new(signal_ended(Outcome::Failed, "provider_error"), t(10));
    again.error = Some("should not be written".into());
    again.recording_url = Some("https://rec.example/2".into());
    let dup = store.apply_update(r.id, again).await.unwrap();
    assert!(!dup.changed);
    assert_eq!(dup.outcome, None);

    let got = store.get_run(org, r.id).await.unwrap();
    assert_eq!(got.status, RunStatus::Ended);
    assert_eq!(got.outcome, Some(Outcome::Completed));
    assert_eq!(got.ended_reason.as_deref(), Some("user_hangup"));
    assert_eq!(got.provider_call_id.as_deref(), Some("CA-1"));
    assert_eq!(got.answered_by.as_deref(), Some("human"));
    assert_eq!(got.dialed_at, Some(stored(t(2))));
    assert_eq!(got.answered_at, Some(stored(at_ms(4_250))));
    assert_eq!(got.ended_at, Some(stored(at_ms(9_000))));
    // 4.75 s answered → ended, rounded up.
    assert_eq!(got.duration_seconds, Some(5));
    assert_eq!(got.recording_url.as_deref(), Some("https://rec.example/1"));
    assert_eq!(got.error, None);
    assert_eq!(
        serde_json::to_string(&got.extracted).unwrap(),
        r#"{"z":1,"a":"yes"}"#
    );
    assert_eq!(got.transcript.len(), 1);
    assert_eq!(
        got.transcript[0].at,
        at_ms(4_300),
        "transcript times are kept as sent"
    );
    let events: Vec<_> = got
        .events
        .iter()
        .map(|e| {
            (
                e.status,
                e.attempt,
                e.provider_status.as_deref(),
                e.detail.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (RunStatus::Queued, 1, None, None),
            (RunStatus::Dialing, 1, Some("initiated"), None),
            (RunStatus::Ringing, 1, None, None),
            (RunStatus::InProgress, 1, None, None),
            (RunStatus::Ended, 1, None, Some("completed")),
        ]
    );
    assert!(matches!(
        store
            .apply_update(r.id + 1000, RunUpdate::new(CallSignal::Ringing, t(11)))
            .await,
        Err(StoreError::NotFound)
    ));
}

pub async fn ending_an_answered_call_deducts_its_seconds_from_the_quota(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let unlimited = world(store.as_ref(), "globex").await;
    let org = w.tn.org.id;
    store.set_quota(org, Some(100)).await.unwrap();
    let talk = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    apply(
        store.as_ref(),
        talk.id,
        CallSignal::Answered { answered_by: None },
        t(2),
    )
    .await;
    apply(
        store.as_ref(),
        talk.id,
        signal_ended(Outcome::Completed, "agent_hangup"),
        at_ms(12_200),
    )
    .await;
    assert_eq!(
        store.get_run(org, talk.id).await.unwrap().duration_seconds,
        Some(11)
    );
    assert_eq!(
        store.get_org(org).await.unwrap().quota_seconds_remaining,
        Some(89)
    );
    // An unanswered call costs nothing and has no duration.
    let missed = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(3)).await;
    apply(store.as_ref(), missed.id, CallSignal::Ringing, t(4)).await;
    apply(
        store.as_ref(),
        missed.id,
        signal_ended(Outcome::NoAnswer, "no_answer"),
        t(30),
    )
    .await;
    assert_eq!(
        store
            .get_run(org, missed.id)
            .await
            .unwrap()
            .duration_seconds,
        None
    );
    // The balance may go below zero.
    let long = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(5)).await;
    apply(
        store.as_ref(),
        long.id,
        CallSignal::Answered { answered_by: None },
        t(5),
    )
    .await;
    apply(
        store.as_ref(),
        long.id,
        signal_ended(Outcome::Completed, "x"),
        t(105),
    )
    .await;
    assert_eq!(
        store.get_org(org).await.unwrap().quota_seconds_remaining,
        Some(-11)
    );
    // No quota means unlimited, and stays so.
    let free = run(
        store.as_ref(),
        &unlimited.agent,
        &unlimited.config,
        RunStatus::Queued,
        t(1),
    )
    .await;
    apply(
        store.as_ref(),
        free.id,
        CallSignal::Answered { answered_by: None },
        t(1),
    )
    .await;
    apply(
        store.as_ref(),
        free.id,
        signal_ended(Outcome::Completed, "x"),
        t(50),
    )
    .await;
    let org2 = store.get_org(unlimited.tn.org.id).await.unwrap();
    assert_eq!(org2.quota_seconds_remaining, None);
}

pub async fn batched_updates_apply_in_order_and_fail_alone(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let org = w.tn.org.id;
    let a = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    let b = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(2)).await;
    let results = store
        .apply_updates(
            vec![
                (b.id, RunUpdate::new(CallSignal::Ringing, t(3))),
                (a.id, RunUpdate::new(CallSignal::Ringing, t(3))),
                (
                    a.id + b.id + 1000,
                    RunUpdate::new(CallSignal::Ringing, t(3)),
                ),
                (
                    a.id,
                    RunUpdate::new(CallSignal::Answered { answered_by: None }, t(4)),
                ),
                (a.id, RunUpdate::new(CallSignal::Ringing, t(5))),
                (
                    b.id,
                    RunUpdate::new(signal_ended(Outcome::Busy, "busy"), t(6)),
                ),
            ]
            .into(),
        )
        .await
        .unwrap();
    let summary: Vec<_> = results
        .iter()
        .map(|r| match r {
            Ok(u) => Ok((u.run_id, u.after, u.changed)),
            Err(StoreError::NotFound) => Err("not_found"),
            Err(e) => panic!("unexpected error {e:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            Ok((b.id, RunStatus::Ringing, true)),
            Ok((a.id, RunStatus::Ringing, true)),
            Err("not_found"),
            Ok((a.id, RunStatus::InProgress, true)),
            Ok((a.id, RunStatus::InProgress, false)),
            Ok((b.id, RunStatus::Ended, true)),
        ]
    );
    assert_eq!(
        store.get_run(org, a.id).await.unwrap().events.len(),
        3,
        "queued, ringing, in progress"
    );
    assert_eq!(
        store.get_run(org, b.id).await.unwrap().outcome,
        Some(Outcome::Busy)
    );
    assert!(
        store
            .apply_updates(Vec::new().into())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Everything a call reports, from the dial to its results, for `run`: ignored signals
/// among them, and a provider id that first arrives with an ignored signal.
fn whole_call(run: RunId) -> Vec<(RunId, RunUpdate)> {
    let mut ringing = RunUpdate::new(CallSignal::Ringing, t(3));
    ringing.provider_status = Some("ringing".into());
    let mut late_dial = RunUpdate::new(CallSignal::Dialing, t(3));
    late_dial.provider_call_id = Some("CA-first".into());
    let mut answered = RunUpdate::new(
        CallSignal::Answered {
            answered_by: Some("human".into()),
        },
        at_ms(4_250),
    );
    answered.provider_call_id = Some("CA-second".into());
    let mut late_ring = RunUpdate::new(CallSignal::Ringing, t(5));
    late_ring.detail = Some("late".into());
    let mut end = RunUpdate::new(
        signal_ended(Outcome::Completed, "user_hangup"),
        at_ms(65_000),
    );
    end.provider_status = Some("completed".into());
    end.detail = Some("caller hung up".into());
    end.transcript = Some(vec![TranscriptEntry {
        role: "agent".into(),
        text: "Hello".into(),
        at: at_ms(4_300),
    }]);
    end.recording_url = Some("https://example.test/rec.wav".into());
    end.extracted = Some(json!({"interested": true}));
    end.error = Some("none".into());
    let mut after_end = RunUpdate::new(CallSignal::Answered { answered_by: None }, t(70));
    after_end.transcript = Some(Vec::new());
    vec![
        (run, RunUpdate::new(CallSignal::Dialing, t(2))),
        (run, ringing),
        (run, late_dial),
        (run, answered),
        (run, late_ring),
        (run, end),
        (run, after_end),
    ]
}

pub async fn a_batch_leaves_a_run_as_the_same_updates_one_by_one(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let org = w.tn.org.id;
    store.set_quota(org, Some(1_000)).await.unwrap();
    let single = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    let batched = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    let mut one_by_one = Vec::new();
    for (id, u) in whole_call(single.id) {
        one_by_one.push(store.apply_update(id, u).await.unwrap());
    }
    let in_batch: Vec<AppliedUpdate> = store
        .apply_updates(whole_call(batched.id).into())
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let outcome = |a: &AppliedUpdate| (a.before, a.after, a.changed, a.outcome);
    assert_eq!(
        one_by_one.iter().map(outcome).collect::<Vec<_>>(),
        in_batch.iter().map(outcome).collect::<Vec<_>>()
    );
    assert_eq!(
        in_batch.iter().filter(|a| a.changed).count(),
        4,
        "dialing, ringing, in progress, ended"
    );
    let a = store.get_run(org, single.id).await.unwrap();
    let b = store.get_run(org, batched.id).await.unwrap();
    // Everything but the identity of the run is the same.
    let comparable = |r: &Run| {
        let mut r = r.clone();
        r.id = RunId::default();
        r.call_id = uuid::Uuid::nil();
        r
    };
    assert_eq!(comparable(&a), comparable(&b));
    assert_eq!(b.provider_call_id.as_deref(), Some("CA-first"));
    assert_eq!(b.answered_by.as_deref(), Some("human"));
    assert_eq!(b.duration_seconds, Some(61));
    assert_eq!(b.transcript.len(), 1);
    assert_eq!(
        b.events.len(),
        5,
        "queued, dialing, ringing, in progress, ended"
    );
    assert_eq!(
        store.get_org(org).await.unwrap().quota_seconds_remaining,
        Some(1_000 - 2 * 61),
        "each call charged once"
    );
}

pub async fn concurrent_updates_of_one_run_apply_once(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let org = w.tn.org.id;
    store.set_quota(org, Some(1000)).await.unwrap();
    let r = run(store.as_ref(), &w.agent, &w.config, RunStatus::Queued, t(1)).await;
    apply(
        store.as_ref(),
        r.id,
        CallSignal::Answered { answered_by: None },
        t(2),
    )
    .await;
    // The same end reported by several callbacks at once (retries, two nodes).
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut u = RunUpdate::new(signal_ended(Outcome::Completed, "user_hangup"), t(12));
                u.detail = Some(format!("callback {i}"));
                store.apply_update(r.id, u).await.unwrap()
            })
        })
        .collect();
    let mut changed = 0;
    for task in tasks {
        if task.await.unwrap().changed {
            changed += 1;
        }
    }
    assert_eq!(changed, 1, "exactly one callback ends the run");
    let got = store.get_run(org, r.id).await.unwrap();
    assert_eq!(got.events.len(), 3, "queued, in progress, ended");
    assert_eq!(
        store.get_org(org).await.unwrap().quota_seconds_remaining,
        Some(990),
        "the quota is charged once"
    );
}

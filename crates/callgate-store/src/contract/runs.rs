//! Writing runs and reading them back: ids, the enqueue transaction, idempotency records and
//! lookups.

use super::fixtures::*;
use crate::*;
use callgate_domain::lifecycle::RunStatus;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;

pub async fn allocated_run_ids_are_unique_and_increasing(store: Arc<dyn Store>) {
    let mut last = 0;
    for _ in 0..5 {
        let id = store.allocate_run_id().await.unwrap();
        assert!(id > last, "{id} after {last}");
        last = id;
    }
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..25 {
                    ids.push(store.allocate_run_id().await.unwrap());
                }
                ids
            })
        })
        .collect();
    let mut all = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(id > last);
            assert!(all.insert(id), "id {id} handed out twice");
        }
    }
}

pub async fn an_enqueued_run_reads_back_exactly_as_it_was_returned(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    let other = tenant(store.as_ref(), "globex").await;
    let mut new = new_run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Scheduled,
        t(10),
    )
    .await;
    new.scheduled_for = at_ms(10_500);
    new.environment = Environment::Test;
    // A known key and one no version of callgate writes: both are kept.
    let mut system = SystemContext::default();
    system.insert("workflow_run_id".into(), json!(new.id));
    system.insert("agent".into(), json!("Ava"));
    new.system_context = system;
    // A NUL character is legal JSON text and must survive in documents.
    new.metadata = Some(json!({"z": true, "a": {"nested": [3, 2, 1]}, "unicode": "é ☎ \u{0}"}));
    new.external_id = Some("crm-42".into());
    new.unresolved_variables = vec!["b".into(), "a\u{0}".into()];
    new.max_attempts = 3;
    new.api_key_id = Some(77);
    let written = new.clone();
    let run = store.enqueue_run(new, None).await.unwrap();
    assert_eq!(
        (run.id, run.call_id, run.status, run.initial_status),
        (
            written.id,
            written.call_id,
            RunStatus::Scheduled,
            RunStatus::Scheduled
        )
    );
    assert_eq!((run.attempt, run.max_attempts), (1, 3));
    assert_eq!(run.created_at, stored(t(10)));
    assert_eq!(run.scheduled_for, stored(at_ms(10_500)));
    assert_eq!(run.events.len(), 1);
    assert_eq!(
        (
            run.events[0].status,
            run.events[0].at,
            run.events[0].attempt
        ),
        (RunStatus::Scheduled, stored(t(10)), 1)
    );
    let by_id = store.get_run(w.tn.org.id, run.id).await.unwrap();
    assert_eq!(by_id, run, "get_run returns what enqueue_run returned");
    assert_eq!(
        store
            .get_run_by_call_id(w.tn.org.id, run.call_id)
            .await
            .unwrap(),
        run
    );
    // Documents keep the client's key order; a context the client sent as text (spaces and
    // escapes included) reads back as the object it stands for.
    assert_eq!(
        serde_json::to_string(by_id.initial_context.map()).unwrap(),
        serde_json::to_string(written.initial_context.map()).unwrap()
    );
    assert_eq!(
        serde_json::to_string(by_id.initial_context.map()).unwrap(),
        r#"{"zeta":"last","alpha":{"b":2,"a":[1,2.5,null]}}"#
    );
    assert_eq!(
        serde_json::to_string(&by_id.metadata).unwrap(),
        serde_json::to_string(&written.metadata).unwrap()
    );
    assert_eq!(
        store
            .get_agent(w.tn.org.id, w.agent.agent.id)
            .await
            .unwrap()
            .agent
            .total_runs,
        1
    );
    assert!(matches!(
        store.get_run(other.org.id, run.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .get_run_by_call_id(w.tn.org.id, uuid::Uuid::new_v4())
            .await,
        Err(StoreError::NotFound)
    ));
    // A JSON null is kept as a value, not confused with "no metadata".
    let mut null_meta = new_run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Queued,
        t(11),
    )
    .await;
    null_meta.metadata = Some(serde_json::Value::Null);
    let run = store.enqueue_run(null_meta, None).await.unwrap();
    let read = store.get_run(w.tn.org.id, run.id).await.unwrap();
    assert_eq!(read.metadata, Some(serde_json::Value::Null));
    assert_eq!(read, run);
}

fn claim_for(api_key_id: ApiKeyId, route: &str, key: &str, hash: u8) -> IdempotencyClaim {
    IdempotencyClaim {
        api_key_id,
        route: route.into(),
        key: key.into(),
        body_hash: [hash; 32],
    }
}

pub async fn an_idempotency_key_is_recorded_with_its_run_and_cannot_be_reused(
    store: Arc<dyn Store>,
) {
    let w = world(store.as_ref(), "acme").await;
    let org = w.tn.org.id;
    let first = new_run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Queued,
        t(10),
    )
    .await;
    let run = store
        .enqueue_run(first, Some(claim_for(5, "trigger", "k1", 7)))
        .await
        .unwrap();
    assert_eq!(
        store
            .find_idempotency(5, "trigger", "k1", t(0))
            .await
            .unwrap(),
        Some(IdempotencyRecord {
            body_hash: [7; 32],
            run_id: run.id,
            created_at: stored(t(10)),
            response: None,
        })
    );
    // An answer saved for the key comes back with the record.
    let answer = StoredResponse {
        status: 400,
        body: "{\"code\":\"dial_failed\"}".into(),
    };
    store
        .save_idempotent_response(5, "trigger", "k1", answer.clone())
        .await
        .unwrap();
    let rec = store
        .find_idempotency(5, "trigger", "k1", t(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.response, Some(answer));
    // Records older than the window are not found; the bound is inclusive.
    assert_eq!(
        store
            .find_idempotency(5, "trigger", "k1", t(11))
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .find_idempotency(5, "trigger", "k1", t(10))
            .await
            .unwrap()
            .is_some()
    );
    for (key_id, route, key) in [
        (6, "trigger", "k1"),
        (5, "outbound", "k1"),
        (5, "trigger", "k2"),
    ] {
        assert_eq!(
            store
                .find_idempotency(key_id, route, key, t(0))
                .await
                .unwrap(),
            None
        );
    }
    let again = new_run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Queued,
        t(12),
    )
    .await;
    let again_id = again.id;
    let reused = store
        .enqueue_run(again, Some(claim_for(5, "trigger", "k1", 8)))
        .await;
    assert!(
        matches!(reused, Err(StoreError::Conflict("idempotency_key_reused"))),
        "{reused:?}"
    );
    // The losing run was not written at all.
    assert!(matches!(
        store.get_run(org, again_id).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .get_agent(org, w.agent.agent.id)
            .await
            .unwrap()
            .agent
            .total_runs,
        1
    );
    assert_eq!(
        store
            .find_idempotency(5, "trigger", "k1", t(0))
            .await
            .unwrap()
            .map(|r| r.run_id),
        Some(run.id)
    );
    let other_route = new_run(
        store.as_ref(),
        &w.agent,
        &w.config,
        RunStatus::Queued,
        t(12),
    )
    .await;
    store
        .enqueue_run(other_route, Some(claim_for(5, "outbound", "k1", 8)))
        .await
        .unwrap();
}

pub async fn purging_idempotency_records_deletes_only_older_ones(store: Arc<dyn Store>) {
    let w = world(store.as_ref(), "acme").await;
    for (i, secs) in [10, 20, 30].into_iter().enumerate() {
        let new = new_run(
            store.as_ref(),
            &w.agent,
            &w.config,
            RunStatus::Queued,
            t(secs),
        )
        .await;
        store
            .enqueue_run(new, Some(claim_for(1, "trigger", &format!("k{i}"), 1)))
            .await
            .unwrap();
    }
    assert_eq!(store.purge_idempotency(t(20)).await.unwrap(), 1);
    assert_eq!(store.purge_idempotency(t(20)).await.unwrap(), 0);
    let left: Vec<bool> = {
        let mut v = Vec::new();
        for k in ["k0", "k1", "k2"] {
            v.push(
                store
                    .find_idempotency(1, "trigger", k, t(0))
                    .await
                    .unwrap()
                    .is_some(),
            );
        }
        v
    };
    assert_eq!(left, vec![false, true, true]);
    assert_eq!(store.purge_idempotency(t(31)).await.unwrap(), 2);
}

//! `Idempotency-Key` on the trigger routes (SPEC §2.1): replay, reuse with another body, a
//! duplicate in flight, the scope of a key, its length, and dry runs.

use crate::support::{assert_problem, ok_body, runs, seeded_key_id};
use callgate_testkit::{Resp, TestApp};
use serde_json::{Value, json};

fn production_path(app: &TestApp) -> String {
    format!("/api/v1/public/agent/{}", app.tenant.trigger_path)
}

async fn post_with_key(app: &TestApp, path: &str, api_key: &str, idem: &str, body: &Value) -> Resp {
    app.send(
        app.client
            .post(app.url(path))
            .header("X-API-Key", api_key)
            .header("Idempotency-Key", idem)
            .json(body),
    )
    .await
}

async fn trigger_with_key(app: &TestApp, idem: &str, body: &Value) -> Resp {
    post_with_key(app, &production_path(app), &app.tenant.api_key, idem, body).await
}

#[tokio::test]
async fn the_same_key_and_body_replay_the_original_answer_and_create_no_second_run() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let first = trigger_with_key(&app, "order-1001", &ok_body()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("idempotent-replayed"), None);

    let second = trigger_with_key(&app, "order-1001", &ok_body()).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.header("location"), first.header("location"));
    assert_eq!(runs(&app, key).await.len(), 1, "a replay created a run");

    // Still the original answer once the call has moved on and ended.
    app.wait_for_end(key, first.body["call_id"].as_str().unwrap())
        .await;
    let third = trigger_with_key(&app, "order-1001", &ok_body()).await;
    assert_eq!(third.status, 200, "{}", third.text);
    assert_eq!(third.body, first.body);
    assert_eq!(third.header("idempotent-replayed"), Some("true"));
    assert_eq!(runs(&app, key).await.len(), 1);
    let fetched = app
        .get(
            &format!("/api/v1/workflow/fetch/{}", app.tenant.agent_id),
            key,
        )
        .await;
    assert_eq!(fetched.body["total_runs"], 1, "{}", fetched.text);
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_422_idempotency_key_reused() {
    let app = TestApp::spawn().await;
    let first = trigger_with_key(&app, "order-1002", &ok_body()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let other =
        json!({"phone_number": "+14155550199", "initial_context": {"customer_name": "Jane"}});
    let r = trigger_with_key(&app, "order-1002", &other).await;
    assert_problem(&r, 422, "idempotency_key_reused", "");
    assert_eq!(r.header("idempotent-replayed"), None);
    // Even a different body that is itself invalid is refused for the reuse, not dialled.
    let r = trigger_with_key(&app, "order-1002", &json!({"phone_number": "12"})).await;
    assert_problem(&r, 422, "idempotency_key_reused", "");
    assert_eq!(runs(&app, &app.tenant.api_key).await.len(), 1);
}

#[tokio::test]
async fn a_duplicate_arriving_while_the_first_is_in_flight_is_409_idempotency_in_flight() {
    let app = TestApp::spawn().await;
    let key_id = seeded_key_id(&app, &app.tenant.api_key).await;
    // The first request is "being processed": the handler's own in-flight marker is held.
    let marker = (key_id, production_path(&app), "order-1003".to_owned());
    app.state.inflight.lock().unwrap().insert(marker.clone());

    let r = trigger_with_key(&app, "order-1003", &ok_body()).await;
    assert_problem(&r, 409, "idempotency_in_flight", "");
    assert!(
        runs(&app, &app.tenant.api_key).await.is_empty(),
        "an in-flight duplicate created a run"
    );
    // Another key, or the same key on another route, is not held up.
    assert_eq!(
        trigger_with_key(&app, "order-1004", &ok_body())
            .await
            .status,
        200
    );
    let test = format!("/api/v1/public/agent/test/{}", app.tenant.trigger_path);
    let r = post_with_key(&app, &test, &app.tenant.api_key, "order-1003", &ok_body()).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Once the first finishes, the key is usable again.
    app.state.inflight.lock().unwrap().remove(&marker);
    let r = trigger_with_key(&app, "order-1003", &ok_body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("idempotent-replayed"), None);
    assert_eq!(runs(&app, &app.tenant.api_key).await.len(), 3);
    // And the handler released its own marker when it answered.
    assert!(app.state.inflight.lock().unwrap().is_empty());
}

#[tokio::test]
async fn keys_are_scoped_per_api_key_and_per_route() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let created = app
        .post("/api/v1/user/api-keys", key, &json!({"name": "second"}))
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let second = created.body["api_key"].as_str().unwrap().to_owned();
    let prod = production_path(&app);
    let test = format!("/api/v1/public/agent/test/{}", app.tenant.trigger_path);
    let wf = format!("/api/v1/public/agent/workflow/{}", app.tenant.workflow_uuid);

    let mut call_ids = Vec::new();
    for (path, api_key) in [(&prod, key), (&prod, &second), (&test, key), (&wf, key)] {
        let r = post_with_key(&app, path, api_key, "shared-key", &ok_body()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_eq!(
            r.header("idempotent-replayed"),
            None,
            "{path} replayed another scope's answer"
        );
        call_ids.push(r.body["call_id"].as_str().unwrap().to_owned());
    }
    call_ids.sort();
    call_ids.dedup();
    assert_eq!(call_ids.len(), 4);
    assert_eq!(runs(&app, key).await.len(), 4);
    // Within each scope, the key still replays.
    let r = post_with_key(&app, &prod, &second, "shared-key", &ok_body()).await;
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    assert_eq!(runs(&app, key).await.len(), 4);
}

#[tokio::test]
async fn an_empty_or_over_long_key_is_422_and_creates_nothing() {
    let app = TestApp::spawn().await;
    for bad in [String::new(), "k".repeat(256)] {
        let r = trigger_with_key(&app, &bad, &ok_body()).await;
        assert_problem(&r, 422, "invalid_idempotency_key", "");
    }
    assert!(runs(&app, &app.tenant.api_key).await.is_empty());
    let r = trigger_with_key(&app, &"k".repeat(255), &ok_body()).await;
    assert_eq!(r.status, 200, "a 255-character key is allowed: {}", r.text);
}

#[tokio::test]
async fn a_dry_run_with_a_key_creates_nothing_and_does_not_use_up_the_key() {
    let app = TestApp::spawn().await;
    let path = format!("{}?dry_run=true", production_path(&app));
    for _ in 0..2 {
        let r = post_with_key(&app, &path, &app.tenant.api_key, "order-1005", &ok_body()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["status"], "validated");
        assert_eq!(r.header("idempotent-replayed"), None);
    }
    assert!(runs(&app, &app.tenant.api_key).await.is_empty());
    // The real request with that key is the first one, not a replay of the dry run.
    let r = trigger_with_key(&app, "order-1005", &ok_body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "initiated");
    assert_eq!(r.header("idempotent-replayed"), None);
    assert_eq!(runs(&app, &app.tenant.api_key).await.len(), 1);
}

#[tokio::test]
async fn the_outbound_api_replays_its_own_answer_for_a_repeated_key() {
    let app = TestApp::spawn().await;
    let body = json!({"agent_id": app.tenant.agent_id, "to_number": "+14155550100"});
    let first = post_with_key(
        &app,
        "/api/v1/calls/outbound",
        &app.tenant.api_key,
        "ob-1",
        &body,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let second = post_with_key(
        &app,
        "/api/v1/calls/outbound",
        &app.tenant.api_key,
        "ob-1",
        &body,
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(runs(&app, &app.tenant.api_key).await.len(), 1);
}

#[tokio::test]
async fn a_replay_of_a_refused_dial_answers_the_original_400_again() {
    let app = TestApp::spawn_with(callgate_testkit::Options {
        simulator: json!({"ring_ms": 10, "talk_ms": 10, "rules": [{"match": "+1415555011*", "outcome": "rejected"}]}),
        ..callgate_testkit::Options::default()
    })
    .await;
    let send = || {
        app.send(
            app.client
                .post(app.url(&production_path(&app)))
                .header("X-API-Key", &app.tenant.api_key)
                .header("Idempotency-Key", "order-1006")
                .header("Prefer", "wait=5")
                .json(&json!({"phone_number": "+14155550111"})),
        )
    };
    let first = send().await;
    assert_problem(&first, 400, "dial_failed", "");
    let second = send().await;
    assert_eq!(
        second.status, 400,
        "the replay changed the status: {}",
        second.text
    );
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(runs(&app, &app.tenant.api_key).await.len(), 1);
}

//! Small helpers shared by the test modules: problem assertions and the few management calls
//! almost every module needs.

use callgate_testkit::{Options, Resp, TestApp, definition_with_trigger};
use serde_json::{Value, json};

/// The answer is RFC 9457 problem JSON with this status, `code` and (when not empty) `detail`.
pub fn assert_problem(r: &Resp, status: u16, code: &str, detail: &str) {
    assert_eq!(r.status, status, "unexpected answer: {}", r.text);
    assert_eq!(r.code(), code, "{}", r.text);
    if !detail.is_empty() {
        assert_eq!(r.detail(), detail, "{}", r.text);
    }
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.text
    );
    assert_eq!(r.body["status"], status, "{}", r.text);
    assert!(r.body["title"].is_string(), "{}", r.text);
}

/// The default body of a valid trigger.
pub fn ok_body() -> Value {
    json!({"phone_number": "+14155550100", "initial_context": {"customer_name": "Jane"}})
}

/// Every run the key's organisation can see (newest first, at most 100).
pub async fn runs(app: &TestApp, key: &str) -> Vec<Value> {
    let r = app.get("/api/v1/calls?limit=100", key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].as_array().unwrap().clone()
}

/// One run by `call_id`.
pub async fn run(app: &TestApp, key: &str, call_id: &str) -> Value {
    let r = app.get(&format!("/api/v1/calls/{call_id}"), key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// The run a successful trigger answer points at.
pub async fn run_of(app: &TestApp, key: &str, answer: &Resp) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.text);
    run(app, key, answer.body["call_id"].as_str().unwrap()).await
}

/// The demo definition with its trigger path and this greeting.
pub fn definition_with_greeting(path: &str, greeting: &str) -> Value {
    let mut def = definition_with_trigger(Some(path));
    def["nodes"][0]["data"]["greeting"] = json!(greeting);
    def
}

/// Saves a draft (`PUT /api/v1/workflow/{id}`) and insists it worked.
pub async fn save_draft(app: &TestApp, key: &str, agent: i64, body: &Value) -> Value {
    let r = app
        .put(&format!("/api/v1/workflow/{agent}"), key, body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Publishes the draft and insists it worked.
pub async fn publish(app: &TestApp, key: &str, agent: i64) -> Value {
    let r = app
        .post(
            &format!("/api/v1/workflow/{agent}/publish"),
            key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// Creates an agent through the API and returns its `WorkflowResponse`.
pub async fn create_agent(app: &TestApp, key: &str, name: &str, definition: Value) -> Value {
    let r = app
        .post(
            "/api/v1/workflow/create/definition",
            key,
            &json!({"name": name, "workflow_definition": definition}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

/// The id of the key a tenant was seeded with (its only key at the start of a test).
pub async fn seeded_key_id(app: &TestApp, key: &str) -> i64 {
    let r = app.get("/api/v1/user/api-keys", key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let keys = r.body.as_array().unwrap();
    assert_eq!(keys.len(), 1, "{}", r.text);
    keys[0]["id"].as_i64().unwrap()
}

/// Asserts the `Prefer: wait` answer for a dial the simulator refused (check 22) and returns the
/// run, once ended.
pub async fn assert_dial_refused(app: &TestApp, r: &Resp) -> Value {
    assert_problem(r, 400, "dial_failed", "");
    assert!(
        r.detail()
            .starts_with("Failed to initiate call: simulated carrier rejected"),
        "{}",
        r.text
    );
    let run = app
        .wait_for_end(&app.tenant.api_key, r.body["call_id"].as_str().unwrap())
        .await;
    assert_eq!(run["outcome"], "failed");
    run
}

/// An app whose configuration dials 0.01 calls per second, and three calls triggered on it:
/// the first was dialled and has ended; the next slot is 100 s away, so the other two wait in
/// the queue (the dispatcher learns that from its claim and stops asking until the rate changes).
pub async fn three_calls_behind_a_slow_rate() -> (TestApp, Vec<String>) {
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 5, "talk_ms": 5}),
        calls_per_second: 0.01,
        ..Options::default()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = app.trigger(&json!({"phone_number": "+14155550100"})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        ids.push(r.body["call_id"].as_str().unwrap().to_owned());
    }
    app.wait_for_end(&app.tenant.api_key, &ids[0]).await;
    (app, ids)
}

/// Sets the default tenant's configuration's `calls_per_second`; returns the configuration.
pub async fn set_calls_per_second(app: &TestApp, cps: f64) -> Value {
    let put = app
        .put(
            &format!(
                "/api/v1/organizations/telephony-configs/{}",
                app.tenant.config_id
            ),
            &app.tenant.api_key,
            &json!({ "calls_per_second": cps }),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    put.body
}

//! `?dry_run=true` (SPEC §2.1): every check runs, the greeting is rendered, nothing is created,
//! counted or dialled.

use crate::support::{assert_problem, definition_with_greeting, ok_body, runs, save_draft};
use callgate_testkit::{Options, TestApp};
use reqwest::Method;
use serde_json::json;

fn dry(path: &str) -> String {
    format!("{path}?dry_run=true")
}

#[tokio::test]
async fn a_dry_run_answers_validated_with_what_would_happen_and_creates_no_run() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let r = app
        .post(
            &dry(&format!("/api/v1/public/agent/{}", t.trigger_path)),
            &t.api_key,
            &ok_body(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "validated");
    assert_eq!(r.body["agent_id"], t.agent_id);
    assert_eq!(r.body["workflow_uuid"], t.workflow_uuid);
    assert_eq!(r.body["agent_version"], 1);
    assert_eq!(r.body["trigger_mode"], "production");
    assert_eq!(r.body["phone_number"], "+14155550100");
    assert_eq!(r.body["telephony_configuration_id"], t.config_id);
    assert_eq!(r.body["provider"], "simulator");
    assert!(r.body["from_number"].is_null(), "{}", r.text);
    assert_eq!(r.body["rendered_greeting"], "Hi Jane, this is Ava.");
    assert_eq!(r.body["unresolved_variables"], json!([]));
    let prompts = r.body["rendered_prompts"].as_array().unwrap();
    assert!(
        prompts
            .iter()
            .any(|p| p["text"] == "Confirm the appointment on the booked day."),
        "{}",
        r.text
    );
    let when: jiff::Timestamp = r.body["scheduled_for"].as_str().unwrap().parse().unwrap();
    let lag = jiff::Timestamp::now().duration_since(when).as_secs();
    assert!((0..60).contains(&lag), "scheduled_for is not now: {when}");
    assert!(
        r.body.get("workflow_run_id").is_none(),
        "a dry run has no run: {}",
        r.text
    );
    assert!(r.body.get("call_id").is_none(), "{}", r.text);
    assert_eq!(r.header("location"), None);

    assert!(
        runs(&app, &t.api_key).await.is_empty(),
        "a dry run created a run"
    );
    let agent = app
        .get(
            &format!("/api/v1/workflow/fetch/{}", t.agent_id),
            &t.api_key,
        )
        .await;
    assert_eq!(
        agent.body["total_runs"], 0,
        "a dry run was counted: {}",
        agent.text
    );
}

#[tokio::test]
async fn a_dry_run_reports_unresolved_variables_from_the_version_it_would_run() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let def = definition_with_greeting(&t.trigger_path, "Hi {{customer_name}}, about {{missing}}.");
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"workflow_definition": def}),
    )
    .await;
    let test = dry(&format!("/api/v1/public/agent/test/{}", t.trigger_path));
    let r = app.post(&test, &t.api_key, &ok_body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["trigger_mode"], "test");
    assert_eq!(r.body["agent_version"], 2);
    assert_eq!(r.body["rendered_greeting"], "Hi Jane, about .");
    assert_eq!(r.body["unresolved_variables"], json!(["missing"]));

    // The production route still validates against the published version.
    let prod = dry(&format!("/api/v1/public/agent/{}", t.trigger_path));
    let r = app
        .post(&prod, &t.api_key, &json!({"phone_number": "+14155550100"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["agent_version"], 1);
    assert_eq!(r.body["rendered_greeting"], "Hi , this is Ava.");
    assert_eq!(r.body["unresolved_variables"], json!(["customer_name"]));
    assert!(runs(&app, &t.api_key).await.is_empty());
}

#[tokio::test]
async fn a_dry_run_resolves_the_configuration_and_caller_id() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let numbers = format!(
        "/api/v1/organizations/telephony-configs/{}/phone-numbers",
        t.config_id
    );
    let a = app
        .post(
            &numbers,
            &t.api_key,
            &json!({"address": "+14155550142", "is_default_caller_id": true}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let b = app
        .post(&numbers, &t.api_key, &json!({"address": "+14155550143"}))
        .await;
    assert_eq!(b.status, 201, "{}", b.text);
    let path = dry(&format!("/api/v1/public/agent/{}", t.trigger_path));

    let r = app.post(&path, &t.api_key, &ok_body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["from_number"], "+14155550142",
        "the default caller ID: {}",
        r.text
    );

    let mut body = ok_body();
    body["from_phone_number_id"] = b.body["id"].clone();
    body["telephony_configuration_id"] = json!(t.config_id);
    let r = app.post(&path, &t.api_key, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["from_number"], "+14155550143");
    assert_eq!(r.body["telephony_configuration_id"], t.config_id);
    assert!(runs(&app, &t.api_key).await.is_empty());
}

#[tokio::test]
async fn a_dry_run_still_runs_every_check() {
    let app = TestApp::spawn().await;
    let other = app.add_tenant("Globex").await;
    let t = &app.tenant;
    let path = dry(&format!("/api/v1/public/agent/{}", t.trigger_path));

    let r = app
        .send(app.client.post(app.url(&path)).json(&ok_body()))
        .await;
    assert_problem(&r, 401, "missing_api_key", "Missing API key");
    let r = app
        .post(&path, &t.api_key, &json!({"phone_number": "12345"}))
        .await;
    assert_problem(
        &r,
        422,
        "invalid_phone_number",
        "Invalid phone number format",
    );
    let r = app.post(&path, &t.api_key, &json!({})).await;
    assert_problem(&r, 422, "missing_phone_number", "phone_number is required");
    let r = app
        .post(&dry("/api/v1/public/agent/nope"), &t.api_key, &ok_body())
        .await;
    assert_problem(&r, 404, "trigger_not_found", "Agent trigger not found");
    let r = app.post(&path, &other.api_key, &ok_body()).await;
    assert_problem(&r, 403, "forbidden", "Access denied");
    let mut body = ok_body();
    body["telephony_configuration_id"] = json!(other.config_id);
    let r = app.post(&path, &t.api_key, &body).await;
    assert_problem(&r, 404, "telephony_configuration_not_found", "");

    let q = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/organizations/{}/quota", t.org_id),
            &json!({"quota_seconds_remaining": 0}),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.text);
    let r = app.post(&path, &t.api_key, &ok_body()).await;
    assert_problem(
        &r,
        402,
        "quota_exhausted",
        "Quota exhausted: no call minutes left",
    );
    assert!(runs(&app, &t.api_key).await.is_empty());
}

#[tokio::test]
async fn dry_runs_do_not_take_capacity() {
    // Long calls, so the real one is still live when the last dry run comes.
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 2000, "talk_ms": 2000}),
        ..Options::default()
    })
    .await;
    let t = &app.tenant;
    let s = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/organizations/{}/settings", t.org_id),
            &json!({"max_concurrent_calls": 1, "on_capacity": "reject"}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.text);
    let path = format!("/api/v1/public/agent/{}", t.trigger_path);
    for _ in 0..3 {
        let r = app.post(&dry(&path), &t.api_key, &ok_body()).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let limits = app.get("/api/v1/organizations/limits", &t.api_key).await;
    assert_eq!(limits.body["queued_calls"]["used"], 0, "{}", limits.text);
    assert_eq!(
        limits.body["concurrent_calls"]["used"], 0,
        "{}",
        limits.text
    );
    // The one real call still fits; a dry run now sees the organisation full.
    assert_eq!(app.trigger(&ok_body()).await.status, 200);
    let r = app.post(&dry(&path), &t.api_key, &ok_body()).await;
    assert_problem(
        &r,
        429,
        "concurrency_limit_reached",
        "Concurrent call limit reached",
    );
}

#[tokio::test]
async fn dry_run_false_is_an_ordinary_trigger() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let path = format!("/api/v1/public/agent/{}?dry_run=false", t.trigger_path);
    let r = app.post(&path, &t.api_key, &ok_body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "initiated");
    assert_eq!(runs(&app, &t.api_key).await.len(), 1);
}

#[tokio::test]
async fn system_values_that_only_exist_once_a_run_does_are_not_reported_unresolved() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let def = definition_with_greeting(
        &t.trigger_path,
        "Hi {{customer_name}}, run {{workflow_run_id}} ({{call_id}}) to {{called_number}}.",
    );
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"workflow_definition": def}),
    )
    .await;
    let r = app
        .post(
            &dry(&format!("/api/v1/public/agent/test/{}", t.trigger_path)),
            &t.api_key,
            &ok_body(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["unresolved_variables"], json!([]), "{}", r.text);
    let greeting = r.body["rendered_greeting"].as_str().unwrap();
    assert!(greeting.starts_with("Hi Jane, run "), "{greeting}");
    assert!(greeting.ends_with(" to +14155550100."), "{greeting}");
}

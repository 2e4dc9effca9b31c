//! The document against the running server: every schema has exactly the members the server
//! sends (so `schemas.rs` cannot drift from `views.rs`), and real error answers use statuses the
//! operation documents.

use super::{document, normalise, operations, resolve};
use callgate_testkit::{Resp, TestApp};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The property names of a component schema, following `allOf` (serde `flatten`).
fn properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(doc, schema);
    let mut names: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(properties(doc, part));
    }
    names
}

/// A component schema by name.
fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(s.is_object(), "no schema {name} in the document");
    s
}

/// A real answer has exactly the documented properties of `name`.
fn assert_matches_schema(doc: &Value, name: &str, actual: &Value) {
    let documented = properties(doc, schema(doc, name));
    let sent: BTreeSet<String> = actual
        .as_object()
        .unwrap_or_else(|| panic!("{name}: not an object: {actual}"))
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        sent, documented,
        "{name}: the server sends {sent:?} but the schema documents {documented:?}"
    );
}

#[tokio::test]
async fn documented_shapes_match_what_the_server_sends() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let key = app.tenant.api_key.clone();
    let agent = app.tenant.agent_id;

    let dry = app
        .post(
            &format!(
                "/api/v1/public/agent/{}?dry_run=true",
                app.tenant.trigger_path
            ),
            &key,
            &json!({"phone_number": "+14155550100"}),
        )
        .await;
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_matches_schema(&doc, "DryRunResponse", &dry.body);

    let trig = app.trigger(&json!({"phone_number": "+14155550100"})).await;
    assert_eq!(trig.status, 200, "{}", trig.text);
    assert_matches_schema(&doc, "TriggerResponse", &trig.body);
    let call_id = trig.body["call_id"].as_str().unwrap().to_owned();
    let run_id = trig.body["workflow_run_id"].as_i64().unwrap();

    let out = app
        .post(
            "/api/v1/calls/outbound",
            &key,
            &json!({"agent_id": agent, "to_number": "+14155550101"}),
        )
        .await;
    assert_eq!(out.status, 200, "{}", out.text);
    assert_matches_schema(&doc, "OutboundResponse", &out.body);

    let init = app
        .post(
            "/api/v1/telephony/initiate-call",
            &key,
            &json!({"workflow_id": agent, "phone_number": "+14155550102"}),
        )
        .await;
    assert_eq!(init.status, 200, "{}", init.text);
    assert_matches_schema(&doc, "InitiateCallResponse", &init.body);

    let run = app.get(&format!("/api/v1/calls/{call_id}"), &key).await;
    assert_matches_schema(&doc, "Run", &run.body);
    let list = app.get("/api/v1/calls?limit=1", &key).await;
    assert_matches_schema(&doc, "RunList", &list.body);
    for event in run.body["events"].as_array().unwrap() {
        let mut event = event.clone();
        // Optional members the server leaves out when empty.
        for optional in ["provider_status", "detail"] {
            event[optional] = Value::Null;
        }
        assert_matches_schema(&doc, "RunEvent", &event);
    }
    let dograh = app
        .get(&format!("/api/v1/workflow/{agent}/runs/{run_id}"), &key)
        .await;
    assert_matches_schema(&doc, "DograhRun", &dograh.body);
    let dograh_list = app
        .get(&format!("/api/v1/workflow/{agent}/runs"), &key)
        .await;
    assert_matches_schema(&doc, "DograhRunList", &dograh_list.body);

    let fetched = app
        .get(&format!("/api/v1/workflow/fetch/{agent}"), &key)
        .await;
    assert_matches_schema(&doc, "Agent", &fetched.body);
    let agents = app.get("/api/v1/workflow/fetch", &key).await;
    assert_matches_schema(&doc, "AgentListItem", &agents.body[0]);
    let versions = app
        .get(&format!("/api/v1/workflow/{agent}/versions"), &key)
        .await;
    assert_matches_schema(&doc, "AgentVersion", &versions.body[0]);
    let triggers = app
        .get(&format!("/api/v1/workflow/{agent}/triggers"), &key)
        .await;
    assert_matches_schema(&doc, "AgentTriggers", &triggers.body);
    assert_matches_schema(&doc, "TriggerUrls", &triggers.body["triggers"][0]);

    let created = app
        .post("/api/v1/user/api-keys", &key, &json!({"name": "docs"}))
        .await;
    assert_matches_schema(&doc, "CreatedApiKey", &created.body);
    let keys = app.get("/api/v1/user/api-keys", &key).await;
    assert_matches_schema(&doc, "ApiKey", &keys.body[0]);

    let configs = app
        .get("/api/v1/organizations/telephony-configs", &key)
        .await;
    assert_matches_schema(&doc, "TelephonyConfig", &configs.body[0]);
    let number = app
        .post(
            &format!(
                "/api/v1/organizations/telephony-configs/{}/phone-numbers",
                app.tenant.config_id
            ),
            &key,
            &json!({"address": "+14155550199", "label": "main"}),
        )
        .await;
    assert_eq!(number.status, 201, "{}", number.text);
    assert_matches_schema(&doc, "PhoneNumber", &number.body);

    let settings = app.get("/api/v1/organizations/settings", &key).await;
    assert_matches_schema(&doc, "OrgSettings", &settings.body);
    let limits = app.get("/api/v1/organizations/limits", &key).await;
    assert_matches_schema(&doc, "OrgLimits", &limits.body);
    assert_matches_schema(&doc, "Usage", &limits.body["concurrent_calls"]);
    assert_matches_schema(
        &doc,
        "ConfigUsage",
        &limits.body["telephony_configurations"][0],
    );

    let org = app
        .admin(
            Method::POST,
            "/api/v1/admin/organizations",
            &json!({"name": "Docs"}),
        )
        .await;
    assert_matches_schema(&doc, "CreatedOrg", &org.body);
    let org_id = org.body["id"].as_i64().unwrap();
    let user = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/organizations/{org_id}/users"),
            &json!({"email": "docs@example.com"}),
        )
        .await;
    assert_matches_schema(&doc, "CreatedUser", &user.body);
    let user_id = user.body["id"].as_i64().unwrap();
    let active = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/organizations/{org_id}/users/{user_id}"),
            &json!({"active": true}),
        )
        .await;
    assert_matches_schema(&doc, "UserActive", &active.body);

    // A problem carries only documented members (most are optional).
    let problem = app.trigger(&json!({})).await;
    let documented = properties(&doc, schema(&doc, "Problem"));
    for member in problem.body.as_object().unwrap().keys() {
        assert!(
            documented.contains(member),
            "undocumented problem member {member}"
        );
    }
    let health = app.send(app.client.get(app.url("/healthz"))).await;
    assert_matches_schema(&doc, "Health", &health.body);
}

/// The answer's status is one the operation documents, and errors are problem JSON.
fn assert_documented(doc: &Value, method: &str, route: &str, r: &Resp) {
    let (_, _, op) = operations(doc)
        .into_iter()
        .find(|(m, p, _)| m == method && *p == normalise(route))
        .unwrap_or_else(|| panic!("{method} {route} is not documented"));
    assert!(
        op["responses"].get(r.status.to_string()).is_some(),
        "{method} {route} answered an undocumented {}: {}",
        r.status,
        r.text
    );
    if r.status >= 400 {
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{}",
            r.text
        );
    }
}

#[tokio::test]
async fn real_error_answers_use_documented_statuses() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let key = app.tenant.api_key.clone();
    let agent = app.tenant.agent_id;
    let trigger = format!("/api/v1/public/agent/{}", app.tenant.trigger_path);
    let no_key = app
        .send(app.client.post(app.url(&trigger)).json(&json!({})))
        .await;
    assert_documented(&doc, "POST", "/api/v1/public/agent/{path}", &no_key);
    let no_phone = app.post(&trigger, &key, &json!({})).await;
    assert_documented(&doc, "POST", "/api/v1/public/agent/{path}", &no_phone);
    let huge = json!({"phone_number": "+14155550100", "metadata": {"x": "a".repeat(300_000)}});
    let too_large = app.post(&trigger, &key, &huge).await;
    assert_eq!(too_large.status, 413, "{}", too_large.text);
    assert_documented(&doc, "POST", "/api/v1/public/agent/{path}", &too_large);
    let unknown = app
        .post(
            "/api/v1/public/agent/workflow/nope",
            &key,
            &json!({"phone_number": "+14155550100"}),
        )
        .await;
    assert_documented(
        &doc,
        "POST",
        "/api/v1/public/agent/workflow/{uuid}",
        &unknown,
    );

    let cases = [
        (
            "GET",
            "/api/v1/calls/{call_id}",
            "/api/v1/calls/not-a-uuid".to_owned(),
        ),
        ("GET", "/api/v1/calls", "/api/v1/calls?limit=0".to_owned()),
        (
            "GET",
            "/api/v1/workflow/fetch/{id}",
            "/api/v1/workflow/fetch/abc".to_owned(),
        ),
        (
            "GET",
            "/api/v1/workflow/fetch/{id}",
            "/api/v1/workflow/fetch/999999".to_owned(),
        ),
        (
            "POST",
            "/api/v1/workflow/{id}/publish",
            format!("/api/v1/workflow/{agent}/publish"),
        ),
        (
            "GET",
            "/api/v1/workflow/{workflow_id}/runs/{run_id}",
            format!("/api/v1/workflow/{agent}/runs/999999"),
        ),
        (
            "DELETE",
            "/api/v1/user/api-keys/{id}",
            "/api/v1/user/api-keys/999999".to_owned(),
        ),
        (
            "DELETE",
            "/api/v1/organizations/telephony-configs/{id}/phone-numbers/{number_id}",
            format!(
                "/api/v1/organizations/telephony-configs/{}/phone-numbers/999999",
                app.tenant.config_id
            ),
        ),
    ];
    for (method, route, path) in cases {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = app
            .send(
                app.client
                    .request(m, app.url(&path))
                    .header("X-API-Key", &key),
            )
            .await;
        assert!(r.status >= 400, "{method} {path} succeeded: {}", r.text);
        assert_documented(&doc, method, route, &r);
    }
    let not_an_object = app
        .send(
            app.client
                .post(app.url("/api/v1/user/api-keys"))
                .header("X-API-Key", &key)
                .header("content-type", "application/json")
                .body("[]"),
        )
        .await;
    assert_documented(&doc, "POST", "/api/v1/user/api-keys", &not_an_object);
    let no_token = app
        .send(app.client.get(app.url("/api/v1/admin/organizations")))
        .await;
    assert_documented(&doc, "GET", "/api/v1/admin/organizations", &no_token);
    let no_org = app
        .admin(
            Method::PUT,
            "/api/v1/admin/organizations/999999/quota",
            &json!({"quota_seconds_remaining": 5}),
        )
        .await;
    assert_documented(
        &doc,
        "PUT",
        "/api/v1/admin/organizations/{org_id}/quota",
        &no_org,
    );
}

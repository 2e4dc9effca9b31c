//! Tenant isolation (SPEC §11) on every management and runs route, and the `admin` scope.

use crate::support::{assert_problem, ok_body, run_of, save_draft, seeded_key_id};
use callgate_testkit::{Resp, TestApp, definition_with_trigger};
use reqwest::Method;
use serde_json::{Value, json};

/// Tenant A's resources as created for the isolation test.
struct Owned {
    key_id: i64,
    number_id: i64,
    run_id: i64,
    call_id: String,
}

async fn seed_a(app: &TestApp) -> Owned {
    let t = &app.tenant;
    let key = &t.api_key;
    let n = app
        .post(
            &format!("/api/v1/organizations/telephony-configs/{}/phone-numbers", t.config_id),
            key,
            &json!({"address": "+14155550142", "label": "A main line", "is_default_caller_id": true}),
        )
        .await;
    assert_eq!(n.status, 201, "{}", n.text);
    let r = app.trigger(&ok_body()).await;
    let run = run_of(app, key, &r).await;
    // A draft, so that a foreign publish would have something to publish.
    let mut def = definition_with_trigger(Some(&t.trigger_path));
    def["nodes"][0]["data"]["greeting"] = json!("A's draft greeting");
    save_draft(app, key, t.agent_id, &json!({"workflow_definition": def})).await;
    Owned {
        key_id: seeded_key_id(app, key).await,
        number_id: n.body["id"].as_i64().unwrap(),
        run_id: run["workflow_run_id"].as_i64().unwrap(),
        call_id: run["call_id"].as_str().unwrap().to_owned(),
    }
}

/// Everything of A that must not show up in an answer to B.
fn a_secrets(app: &TestApp, a: &Owned) -> Vec<String> {
    vec![
        app.tenant.workflow_uuid.clone(),
        app.tenant.trigger_path.clone(),
        a.call_id.clone(),
        "Acme".to_owned(),
        "+14155550142".to_owned(),
        "A main line".to_owned(),
    ]
}

fn assert_refused(r: &Resp, what: &str, secrets: &[String]) {
    assert!(
        r.status == 404 || r.status == 403,
        "{what}: B got {} {}",
        r.status,
        r.text
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    for s in secrets {
        assert!(
            !r.text.contains(s.as_str()),
            "{what} leaked {s}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn another_organisation_can_neither_read_nor_change_anything_of_this_one() {
    let app = TestApp::spawn().await;
    let a = seed_a(&app).await;
    let b = app.add_tenant("Globex").await;
    let t = &app.tenant;
    let (agent, cfg, num) = (t.agent_id, t.config_id, a.number_id);
    let cfgs = "/api/v1/organizations/telephony-configs";
    let secrets = a_secrets(&app, &a);
    let rename = json!({"name": "pwned"});
    let requests: Vec<(Method, String, Value)> = vec![
        (
            Method::GET,
            format!("/api/v1/workflow/fetch/{agent}"),
            json!(null),
        ),
        (
            Method::PUT,
            format!("/api/v1/workflow/{agent}"),
            rename.clone(),
        ),
        (
            Method::PUT,
            format!("/api/v1/workflow/{agent}"),
            json!({"workflow_definition": definition_with_trigger(Some("stolen"))}),
        ),
        (
            Method::POST,
            format!("/api/v1/workflow/{agent}/publish"),
            json!({}),
        ),
        (
            Method::GET,
            format!("/api/v1/workflow/{agent}/versions"),
            json!(null),
        ),
        (
            Method::GET,
            format!("/api/v1/workflow/{agent}/triggers"),
            json!(null),
        ),
        (
            Method::PUT,
            format!("/api/v1/workflow/{agent}/owner"),
            json!({"user_id": b.user_id}),
        ),
        (
            Method::PUT,
            format!("/api/v1/workflow/{agent}/owner"),
            json!({"user_id": t.user_id}),
        ),
        (
            Method::POST,
            format!("/api/v1/workflow/{agent}/archive"),
            json!({}),
        ),
        (
            Method::GET,
            format!("/api/v1/workflow/{agent}/runs"),
            json!(null),
        ),
        (
            Method::GET,
            format!("/api/v1/workflow/{agent}/runs/{}", a.run_id),
            json!(null),
        ),
        (
            Method::GET,
            format!("/api/v1/workflow/{}/runs/{}", b.agent_id, a.run_id),
            json!(null),
        ),
        (
            Method::GET,
            format!("/api/v1/calls/{}", a.call_id),
            json!(null),
        ),
        (
            Method::DELETE,
            format!("/api/v1/user/api-keys/{}", a.key_id),
            json!(null),
        ),
        (
            Method::PUT,
            format!("/api/v1/user/api-keys/{}/reactivate", a.key_id),
            json!({}),
        ),
        (Method::GET, format!("{cfgs}/{cfg}"), json!(null)),
        (
            Method::PUT,
            format!("{cfgs}/{cfg}"),
            json!({"name": "pwned", "is_active": false}),
        ),
        (Method::DELETE, format!("{cfgs}/{cfg}"), json!(null)),
        (
            Method::POST,
            format!("{cfgs}/{cfg}/set-default-outbound"),
            json!({}),
        ),
        (
            Method::GET,
            format!("{cfgs}/{cfg}/phone-numbers"),
            json!(null),
        ),
        (
            Method::POST,
            format!("{cfgs}/{cfg}/phone-numbers"),
            json!({"address": "+14155550177"}),
        ),
        (
            Method::PUT,
            format!("{cfgs}/{cfg}/phone-numbers/{num}"),
            json!({"label": "pwned", "is_active": false}),
        ),
        (
            Method::PUT,
            format!("{cfgs}/{}/phone-numbers/{num}", b.config_id),
            json!({"label": "pwned"}),
        ),
        (
            Method::DELETE,
            format!("{cfgs}/{cfg}/phone-numbers/{num}"),
            json!(null),
        ),
        (
            Method::DELETE,
            format!("{cfgs}/{}/phone-numbers/{num}", b.config_id),
            json!(null),
        ),
        (
            Method::POST,
            "/api/v1/telephony/initiate-call".to_owned(),
            json!({"workflow_id": agent, "phone_number": "+14155550100"}),
        ),
        (
            Method::POST,
            "/api/v1/calls/outbound".to_owned(),
            json!({"agent_id": agent, "to_number": "+14155550100"}),
        ),
        (
            Method::POST,
            "/api/v1/calls/outbound".to_owned(),
            json!({"agent_id": t.workflow_uuid, "to_number": "+14155550100"}),
        ),
    ];
    for (method, path, body) in requests {
        let mut req = app
            .client
            .request(method.clone(), app.url(&path))
            .header("X-API-Key", &b.api_key);
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = app.send(req).await;
        assert_refused(&r, &format!("{method} {path}"), &secrets);
    }
    // A trigger with A's configuration or caller ID is refused too.
    let r = app
        .post(
            &format!("/api/v1/public/agent/{}", b.trigger_path),
            &b.api_key,
            &json!({"phone_number": "+14155550100", "telephony_configuration_id": cfg}),
        )
        .await;
    assert_refused(&r, "trigger with A's configuration", &secrets);
    let r = app
        .post(
            &format!("/api/v1/public/agent/{}", b.trigger_path),
            &b.api_key,
            &json!({"phone_number": "+14155550100", "from_phone_number_id": num}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.code(), "from_phone_number_not_found");

    // Nothing of A changed.
    let key = &t.api_key;
    let fetched = app
        .get(&format!("/api/v1/workflow/fetch/{agent}"), key)
        .await;
    assert_eq!(fetched.body["name"], "Acme agent", "{}", fetched.text);
    assert_eq!(fetched.body["status"], "active");
    assert_eq!(
        fetched.body["version_status"], "draft",
        "B published A's draft"
    );
    assert_eq!(fetched.body["owner_user_id"], t.user_id);
    assert_eq!(
        fetched.body["workflow_definition"]["nodes"][2]["data"]["trigger_path"],
        t.trigger_path
    );
    let versions = app
        .get(&format!("/api/v1/workflow/{agent}/versions"), key)
        .await;
    assert_eq!(
        versions.body.as_array().unwrap().len(),
        2,
        "{}",
        versions.text
    );
    let config = app.get(&format!("{cfgs}/{cfg}"), key).await;
    assert_eq!(
        config.status, 200,
        "B deleted A's configuration: {}",
        config.text
    );
    assert_eq!(config.body["name"], "Simulator");
    assert_eq!(config.body["is_active"], true);
    assert_eq!(config.body["is_default_outbound"], true);
    let numbers = config.body["phone_numbers"].as_array().unwrap();
    assert_eq!(numbers.len(), 1, "{}", config.text);
    assert_eq!(numbers[0]["label"], "A main line");
    assert_eq!(numbers[0]["is_active"], true);
    let keys = app.get("/api/v1/user/api-keys", key).await;
    assert_eq!(keys.body[0]["is_active"], true, "{}", keys.text);
    let r = app.get(&format!("/api/v1/calls/{}", a.call_id), key).await;
    assert_eq!(r.status, 200);
    // B's own configuration did not become default-less or gain A's number.
    let bcfg = app
        .get(&format!("{cfgs}/{}", b.config_id), &b.api_key)
        .await;
    assert_eq!(bcfg.body["phone_numbers"], json!([]), "{}", bcfg.text);
    // A's key and trigger still work.
    assert_eq!(app.trigger(&ok_body()).await.status, 200);
}

#[tokio::test]
async fn lists_only_show_the_callers_own_organisation() {
    let app = TestApp::spawn().await;
    let a = seed_a(&app).await;
    let b = app.add_tenant("Globex").await;
    let secrets = a_secrets(&app, &a);
    let r = app.trigger(&ok_body()).await;
    assert_eq!(r.status, 200);
    let b_run = app
        .post(
            &format!("/api/v1/public/agent/{}", b.trigger_path),
            &b.api_key,
            &ok_body(),
        )
        .await;
    assert_eq!(b_run.status, 200, "{}", b_run.text);

    let ids = |r: &Resp| -> Vec<i64> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect()
    };
    let agents = app.get("/api/v1/workflow/fetch", &b.api_key).await;
    assert_eq!(ids(&agents), [b.agent_id], "{}", agents.text);
    let configs = app
        .get("/api/v1/organizations/telephony-configs", &b.api_key)
        .await;
    assert_eq!(ids(&configs), [b.config_id], "{}", configs.text);
    let keys = app.get("/api/v1/user/api-keys", &b.api_key).await;
    assert_eq!(keys.body.as_array().unwrap().len(), 1, "{}", keys.text);
    assert_ne!(keys.body[0]["id"], a.key_id);
    let calls = app.get("/api/v1/calls?limit=100", &b.api_key).await;
    let data = calls.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{}", calls.text);
    assert_eq!(data[0]["call_id"], b_run.body["call_id"]);
    // Filters naming A's things find nothing rather than A's runs.
    let calls = app
        .get(
            &format!("/api/v1/calls?agent_id={}", app.tenant.agent_id),
            &b.api_key,
        )
        .await;
    assert_eq!(calls.body["data"], json!([]), "{}", calls.text);
    let runs = app
        .get(&format!("/api/v1/workflow/{}/runs", b.agent_id), &b.api_key)
        .await;
    assert_eq!(
        runs.body["runs"].as_array().unwrap().len(),
        1,
        "{}",
        runs.text
    );
    let settings = app.get("/api/v1/organizations/settings", &b.api_key).await;
    assert_eq!(
        settings.body["organization_id"], b.org_id,
        "{}",
        settings.text
    );
    let limits = app.get("/api/v1/organizations/limits", &b.api_key).await;
    let per_config = limits.body["telephony_configurations"].as_array().unwrap();
    assert_eq!(per_config.len(), 1, "{}", limits.text);
    assert_eq!(per_config[0]["telephony_configuration_id"], b.config_id);
    for r in [&agents, &configs, &keys, &calls, &runs, &settings, &limits] {
        for s in &secrets {
            assert!(!r.text.contains(s.as_str()), "leaked {s}: {}", r.text);
        }
    }
}

#[tokio::test]
async fn settings_changed_by_another_organisation_do_not_apply_here() {
    let app = TestApp::spawn().await;
    let b = app.add_tenant("Globex").await;
    let r = app
        .put(
            "/api/v1/organizations/settings",
            &b.api_key,
            &json!({"max_concurrent_calls": 1, "on_capacity": "reject"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["organization_id"], b.org_id);
    let a = app
        .get("/api/v1/organizations/settings", &app.tenant.api_key)
        .await;
    assert_eq!(a.body["max_concurrent_calls"], 10, "{}", a.text);
    assert_eq!(a.body["on_capacity"], "queue");
}

/// A key without the `admin` scope, made by the tenant's admin key.
async fn plain_key(app: &TestApp) -> String {
    let r = app
        .post(
            "/api/v1/user/api-keys",
            &app.tenant.api_key,
            &json!({"name": "ci"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["scopes"]["admin"], false, "{}", r.text);
    r.body["api_key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_key_without_the_admin_scope_cannot_manage_anything() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let plain = plain_key(&app).await;
    let (agent, cfg) = (t.agent_id, t.config_id);
    let cfgs = "/api/v1/organizations/telephony-configs";
    let admin_id = seeded_key_id_after(&app).await;
    let requests: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/api/v1/workflow/create/definition".into(),
            json!({"name": "x", "workflow_definition": definition_with_trigger(None)}),
        ),
        (Method::GET, "/api/v1/workflow/fetch".into(), json!(null)),
        (
            Method::GET,
            format!("/api/v1/workflow/fetch/{agent}"),
            json!(null),
        ),
        (
            Method::PUT,
            format!("/api/v1/workflow/{agent}"),
            json!({"name": "renamed"}),
        ),
        (
            Method::POST,
            format!("/api/v1/workflow/{agent}/publish"),
            json!({}),
        ),
        (
            Method::GET,
            format!("/api/v1/workflow/{agent}/versions"),
            json!(null),
        ),
        (
            Method::GET,
            format!("/api/v1/workflow/{agent}/triggers"),
            json!(null),
        ),
        (
            Method::PUT,
            format!("/api/v1/workflow/{agent}/owner"),
            json!({"user_id": t.user_id}),
        ),
        (
            Method::POST,
            format!("/api/v1/workflow/{agent}/archive"),
            json!({}),
        ),
        (Method::GET, "/api/v1/user/api-keys".into(), json!(null)),
        (
            Method::POST,
            "/api/v1/user/api-keys".into(),
            json!({"name": "escalate", "scopes": {"admin": true}}),
        ),
        (
            Method::DELETE,
            format!("/api/v1/user/api-keys/{admin_id}"),
            json!(null),
        ),
        (
            Method::PUT,
            format!("/api/v1/user/api-keys/{admin_id}/reactivate"),
            json!({}),
        ),
        (Method::GET, cfgs.into(), json!(null)),
        (
            Method::POST,
            cfgs.into(),
            json!({"name": "x", "provider": "simulator", "credentials": {}}),
        ),
        (Method::GET, format!("{cfgs}/{cfg}"), json!(null)),
        (
            Method::PUT,
            format!("{cfgs}/{cfg}"),
            json!({"name": "renamed"}),
        ),
        (Method::DELETE, format!("{cfgs}/{cfg}"), json!(null)),
        (
            Method::POST,
            format!("{cfgs}/{cfg}/set-default-outbound"),
            json!({}),
        ),
        (
            Method::GET,
            format!("{cfgs}/{cfg}/phone-numbers"),
            json!(null),
        ),
        (
            Method::POST,
            format!("{cfgs}/{cfg}/phone-numbers"),
            json!({"address": "+14155550177"}),
        ),
        (
            Method::PUT,
            format!("{cfgs}/{cfg}/phone-numbers/1"),
            json!({"label": "x"}),
        ),
        (
            Method::DELETE,
            format!("{cfgs}/{cfg}/phone-numbers/1"),
            json!(null),
        ),
        (
            Method::PUT,
            "/api/v1/organizations/settings".into(),
            json!({"max_concurrent_calls": 1}),
        ),
    ];
    for (method, path, body) in requests {
        let mut req = app
            .client
            .request(method.clone(), app.url(&path))
            .header("X-API-Key", &plain);
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = app.send(req).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text);
        assert_problem(&r, 403, "forbidden_scope", "");
    }
    // Nothing changed.
    let key = &t.api_key;
    let fetched = app
        .get(&format!("/api/v1/workflow/fetch/{agent}"), key)
        .await;
    assert_eq!(fetched.body["name"], "Acme agent");
    assert_eq!(fetched.body["status"], "active");
    let keys = app.get("/api/v1/user/api-keys", key).await;
    assert_eq!(keys.body.as_array().unwrap().len(), 2, "{}", keys.text);
    let config = app.get(&format!("{cfgs}/{cfg}"), key).await;
    assert_eq!(config.body["name"], "Simulator");
    let settings = app.get("/api/v1/organizations/settings", key).await;
    assert_eq!(settings.body["max_concurrent_calls"], 10);
}

/// The seeded admin key's id, once other keys exist.
async fn seeded_key_id_after(app: &TestApp) -> i64 {
    let r = app.get("/api/v1/user/api-keys", &app.tenant.api_key).await;
    r.body
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "test key")
        .and_then(|k| k["id"].as_i64())
        .unwrap()
}

#[tokio::test]
async fn a_key_without_the_admin_scope_can_still_place_and_read_calls() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let plain = plain_key(&app).await;
    let r = app
        .post(
            &format!("/api/v1/public/agent/{}", t.trigger_path),
            &plain,
            &ok_body(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let call_id = r.body["call_id"].as_str().unwrap().to_owned();
    let run_id = r.body["workflow_run_id"].as_i64().unwrap();
    for path in [
        format!("/api/v1/public/agent/test/{}", t.trigger_path),
        format!("/api/v1/public/agent/workflow/{}", t.workflow_uuid),
    ] {
        assert_eq!(
            app.post(&path, &plain, &ok_body()).await.status,
            200,
            "{path}"
        );
    }
    let r = app
        .post(
            "/api/v1/calls/outbound",
            &plain,
            &json!({"agent_id": t.agent_id, "to_number": "+14155550100"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .post(
            "/api/v1/telephony/initiate-call",
            &plain,
            &json!({"workflow_id": t.agent_id, "phone_number": "+14155550100"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let r = app.get(&format!("/api/v1/calls/{call_id}"), &plain).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.get("/api/v1/calls", &plain).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 5, "{}", r.text);
    let r = app
        .get(
            &format!("/api/v1/workflow/{}/runs/{run_id}", t.agent_id),
            &plain,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .get(&format!("/api/v1/workflow/{}/runs", t.agent_id), &plain)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.get("/api/v1/organizations/limits", &plain).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

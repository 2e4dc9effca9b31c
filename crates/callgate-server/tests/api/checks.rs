//! One or more tests per row of SPEC §2.3, in order, on the public trigger routes.

use callgate_testkit::{ADMIN_TOKEN, Options, TestApp, definition_with_trigger};
use reqwest::Method;
use serde_json::{Value, json};

fn ok_body() -> Value {
    json!({"phone_number": "+14155550100", "initial_context": {"customer_name": "Jane"}})
}

fn assert_problem(r: &callgate_testkit::Resp, status: u16, code: &str, detail: &str) {
    assert_eq!(r.status, status, "unexpected answer: {}", r.text);
    assert_eq!(r.code(), code, "{}", r.text);
    if !detail.is_empty() {
        assert_eq!(r.detail(), detail, "{}", r.text);
    }
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.body["status"], status);
    assert!(r.body["title"].is_string());
}

async fn runs_count(app: &TestApp) -> usize {
    let r = app
        .get("/api/v1/calls?limit=100", &app.tenant.api_key)
        .await;
    r.body["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_valid_trigger_is_accepted_with_the_dograh_response_and_a_location() {
    let app = TestApp::spawn().await;
    let r = app.trigger(&ok_body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "initiated");
    let id = r.body["workflow_run_id"].as_i64().unwrap();
    assert_eq!(r.body["workflow_run_name"], format!("WR-API-{id:04}"));
    assert_eq!(r.body["call_status"], "queued");
    assert_eq!(r.body["agent_version"], 1);
    assert_eq!(r.body["telephony_configuration_id"], app.tenant.config_id);
    let call_id = r.body["call_id"].as_str().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/calls/{call_id}").as_str())
    );
}

#[tokio::test]
async fn check_1_a_missing_api_key_is_401() {
    let app = TestApp::spawn().await;
    let path = format!("/api/v1/public/agent/{}", app.tenant.trigger_path);
    let r = app
        .send(app.client.post(app.url(&path)).json(&ok_body()))
        .await;
    assert_problem(&r, 401, "missing_api_key", "Missing API key");
}

#[tokio::test]
async fn check_2_an_unknown_or_archived_key_is_401() {
    let app = TestApp::spawn().await;
    let path = format!("/api/v1/public/agent/{}", app.tenant.trigger_path);
    let r = app.post(&path, "cg_not-a-real-key", &ok_body()).await;
    assert_problem(&r, 401, "invalid_api_key", "Invalid API key");

    // A key archived through the API stops working at once, and works again when reactivated.
    let key = &app.tenant.api_key;
    let created = app
        .post("/api/v1/user/api-keys", key, &json!({"name": "ci"}))
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let second = created.body["api_key"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_i64().unwrap();
    assert_eq!(app.post(&path, &second, &ok_body()).await.status, 200);
    let del = app
        .delete(&format!("/api/v1/user/api-keys/{id}"), key)
        .await;
    assert_eq!(del.status, 200, "{}", del.text);
    assert_problem(
        &app.post(&path, &second, &ok_body()).await,
        401,
        "invalid_api_key",
        "Invalid API key",
    );
    let re = app
        .put(
            &format!("/api/v1/user/api-keys/{id}/reactivate"),
            key,
            &json!({}),
        )
        .await;
    assert_eq!(re.status, 200, "{}", re.text);
    assert_eq!(app.post(&path, &second, &ok_body()).await.status, 200);
}

#[tokio::test]
async fn check_3_bodies_that_are_not_json_objects_or_have_wrong_types_are_422() {
    let app = TestApp::spawn().await;
    let path = app.url(&format!("/api/v1/public/agent/{}", app.tenant.trigger_path));
    for raw in ["not json", "[1,2]", "\"str\"", "", "{\"phone_number\": "] {
        let r = app
            .send(
                app.client
                    .post(&path)
                    .header("X-API-Key", &app.tenant.api_key)
                    .header("content-type", "application/json")
                    .body(raw.to_owned()),
            )
            .await;
        assert_problem(&r, 422, "invalid_body", "");
    }
    for body in [
        json!({"phone_number": 14155550100_i64}),
        json!({"phone_number": "+14155550100", "initial_context": "x"}),
        json!({"phone_number": "+14155550100", "initial_context": [1]}),
        json!({"phone_number": "+14155550100", "telephony_configuration_id": "1"}),
        json!({"phone_number": "+14155550100", "from_phone_number_id": 1.5}),
        json!({"phone_number": "+14155550100", "metadata": 3}),
        json!({"phone_number": "+14155550100", "external_id": "x".repeat(129)}),
    ] {
        let r = app.trigger(&body).await;
        assert_problem(&r, 422, "invalid_body", "");
        assert!(
            r.body["errors"][0]["pointer"]
                .as_str()
                .unwrap()
                .starts_with('/')
        );
    }
    assert_eq!(
        runs_count(&app).await,
        0,
        "a rejected trigger created a run"
    );
}

#[tokio::test]
async fn check_3_an_initial_context_too_large_or_too_deep_is_422() {
    let app = TestApp::spawn().await;
    let big =
        json!({"phone_number": "+14155550100", "initial_context": {"blob": "x".repeat(70 * 1024)}});
    let r = app.trigger(&big).await;
    assert_problem(&r, 422, "invalid_body", "");
    assert!(r.detail().contains("65536"), "{}", r.text);
    let mut deep = json!("leaf");
    for _ in 0..20 {
        deep = json!({"n": deep});
    }
    let r = app
        .trigger(&json!({"phone_number": "+14155550100", "initial_context": deep}))
        .await;
    assert_problem(&r, 422, "invalid_body", "");
    // A body over 256 KiB is refused before parsing.
    let huge = json!({"phone_number": "+14155550100", "initial_context": {"blob": "x".repeat(300 * 1024)}});
    let r = app.trigger(&huge).await;
    assert_problem(&r, 413, "body_too_large", "");
}

#[tokio::test]
async fn check_4_a_missing_phone_number_is_422() {
    let app = TestApp::spawn().await;
    let r = app.trigger(&json!({"initial_context": {}})).await;
    assert_problem(&r, 422, "missing_phone_number", "phone_number is required");
    let r = app.trigger(&json!({"phone_number": null})).await;
    assert_problem(&r, 422, "missing_phone_number", "phone_number is required");
}

#[tokio::test]
async fn check_5_an_invalid_phone_number_is_422_and_formatting_is_stripped() {
    let app = TestApp::spawn().await;
    for bad in [
        "12345",
        "+1",
        "+1415555010a",
        "4155550100",
        "+15550001234",
        "+999999999999999999",
    ] {
        let r = app.trigger(&json!({"phone_number": bad})).await;
        assert_problem(
            &r,
            422,
            "invalid_phone_number",
            "Invalid phone number format",
        );
    }
    let r = app
        .trigger(&json!({"phone_number": "+1 (415) 555-0100"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let run = app
        .get(
            &format!("/api/v1/calls/{}", r.body["call_id"].as_str().unwrap()),
            &app.tenant.api_key,
        )
        .await;
    assert_eq!(run.body["phone_number"], "+14155550100");
}

#[tokio::test]
async fn check_6_an_unknown_trigger_path_or_a_workflow_uuid_on_the_trigger_route_is_404() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let r = app
        .post("/api/v1/public/agent/no-such-trigger", key, &ok_body())
        .await;
    assert_problem(&r, 404, "trigger_not_found", "Agent trigger not found");
    let wf = format!("/api/v1/public/agent/{}", app.tenant.workflow_uuid);
    assert_problem(
        &app.post(&wf, key, &ok_body()).await,
        404,
        "trigger_not_found",
        "Agent trigger not found",
    );
    // An archived agent's trigger stops working.
    let a = app
        .post(
            &format!("/api/v1/workflow/{}/archive", app.tenant.agent_id),
            key,
            &json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_problem(
        &app.trigger(&ok_body()).await,
        404,
        "trigger_not_found",
        "Agent trigger not found",
    );
}

#[tokio::test]
async fn check_7_a_trigger_or_agent_of_another_organisation_is_403() {
    let app = TestApp::spawn().await;
    let other = app.add_tenant("Globex").await;
    let r = app
        .post(
            &format!("/api/v1/public/agent/{}", app.tenant.trigger_path),
            &other.api_key,
            &ok_body(),
        )
        .await;
    assert_problem(&r, 403, "forbidden", "Access denied");
    let r = app
        .post(
            &format!("/api/v1/public/agent/workflow/{}", app.tenant.workflow_uuid),
            &other.api_key,
            &ok_body(),
        )
        .await;
    assert_problem(&r, 403, "forbidden", "Access denied");
    assert_eq!(runs_count(&app).await, 0);
    // An archived agent's trigger path is unknown (check 6) whoever asks, which comes before
    // whose it is (check 7).
    let a = app
        .post(
            &format!("/api/v1/workflow/{}/archive", app.tenant.agent_id),
            &app.tenant.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let r = app
        .post(
            &format!("/api/v1/public/agent/{}", app.tenant.trigger_path),
            &other.api_key,
            &ok_body(),
        )
        .await;
    assert_problem(&r, 404, "trigger_not_found", "Agent trigger not found");
}

#[tokio::test]
async fn check_8_a_key_scoped_to_other_agents_or_the_other_environment_is_403() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let scoped = app
        .post(
            "/api/v1/user/api-keys",
            key,
            &json!({"name": "other agent", "scopes": {"agents": [999]}}),
        )
        .await;
    let scoped = scoped.body["api_key"].as_str().unwrap().to_owned();
    let prod = format!("/api/v1/public/agent/{}", app.tenant.trigger_path);
    assert_problem(
        &app.post(&prod, &scoped, &ok_body()).await,
        403,
        "forbidden_scope",
        "API key does not have access to this agent",
    );
    let test_only = app
        .post(
            "/api/v1/user/api-keys",
            key,
            &json!({"name": "test only", "scopes": {"environments": ["test"]}}),
        )
        .await;
    let test_only = test_only.body["api_key"].as_str().unwrap().to_owned();
    assert_problem(
        &app.post(&prod, &test_only, &ok_body()).await,
        403,
        "forbidden_scope",
        "",
    );
    let test = format!("/api/v1/public/agent/test/{}", app.tenant.trigger_path);
    assert_eq!(app.post(&test, &test_only, &ok_body()).await.status, 200);
}

/// Saves a draft whose trigger has `enabled: false`.
async fn disable_trigger_in_draft(app: &TestApp) {
    let mut def = definition_with_trigger(Some(&app.tenant.trigger_path));
    def["nodes"][2]["data"]["enabled"] = json!(false);
    let r = app
        .put(
            &format!("/api/v1/workflow/{}", app.tenant.agent_id),
            &app.tenant.api_key,
            &json!({"workflow_definition": def}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn check_9_a_disabled_trigger_is_404_only_where_that_version_executes() {
    let app = TestApp::spawn().await;
    disable_trigger_in_draft(&app).await;
    let test = format!("/api/v1/public/agent/test/{}", app.tenant.trigger_path);
    assert_problem(
        &app.post(&test, &app.tenant.api_key, &ok_body()).await,
        404,
        "trigger_inactive",
        "Agent trigger is not active",
    );
    // Production still runs the published version, whose trigger is enabled.
    assert_eq!(app.trigger(&ok_body()).await.status, 200);
    let p = app
        .post(
            &format!("/api/v1/workflow/{}/publish", app.tenant.agent_id),
            &app.tenant.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_problem(
        &app.trigger(&ok_body()).await,
        404,
        "trigger_inactive",
        "Agent trigger is not active",
    );
}

#[tokio::test]
async fn check_10_an_unknown_workflow_uuid_is_404() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    for id in [
        "3f2a1c4d-0000-4000-8000-000000000000",
        "not-a-uuid",
        app.tenant.trigger_path.as_str(),
    ] {
        let r = app
            .post(
                &format!("/api/v1/public/agent/workflow/{id}"),
                key,
                &ok_body(),
            )
            .await;
        assert_problem(&r, 404, "workflow_not_found", "Workflow not found");
    }
}

#[tokio::test]
async fn check_11_an_archived_workflow_is_404_on_the_workflow_route() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    app.post(
        &format!("/api/v1/workflow/{}/archive", app.tenant.agent_id),
        key,
        &json!({}),
    )
    .await;
    let r = app
        .post(
            &format!("/api/v1/public/agent/workflow/{}", app.tenant.workflow_uuid),
            key,
            &ok_body(),
        )
        .await;
    assert_problem(&r, 404, "workflow_inactive", "Workflow is not active");
}

#[tokio::test]
async fn check_12_and_13_nothing_to_execute_or_a_path_missing_from_the_executed_version() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    // Draft without the trigger: the test route no longer finds it; production still does.
    let mut def = definition_with_trigger(None);
    def["nodes"].as_array_mut().unwrap().remove(2);
    let r = app
        .put(
            &format!("/api/v1/workflow/{}", app.tenant.agent_id),
            key,
            &json!({"workflow_definition": def}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let test = format!("/api/v1/public/agent/test/{}", app.tenant.trigger_path);
    assert_problem(
        &app.post(&test, key, &ok_body()).await,
        404,
        "trigger_not_in_agent",
        "Trigger not found in the selected Agent",
    );
    assert_eq!(app.trigger(&ok_body()).await.status, 200);
}

#[tokio::test]
async fn check_14_an_agent_whose_owner_is_deactivated_is_409_until_reassigned() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let r = app
        .admin(
            Method::PUT,
            &format!(
                "/api/v1/admin/organizations/{}/users/{}",
                t.org_id, t.user_id
            ),
            &json!({"active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_problem(
        &app.trigger(&ok_body()).await,
        409,
        "no_execution_owner",
        "Workflow has no execution owner",
    );
    let u = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/organizations/{}/users", t.org_id),
            &json!({"email": "new-owner@acme.test"}),
        )
        .await;
    assert_eq!(u.status, 201, "{}", u.text);
    let owner = app
        .put(
            &format!("/api/v1/workflow/{}/owner", t.agent_id),
            &t.api_key,
            &json!({"user_id": u.body["id"]}),
        )
        .await;
    assert_eq!(owner.status, 200, "{}", owner.text);
    assert_eq!(app.trigger(&ok_body()).await.status, 200);
    let _ = ADMIN_TOKEN;
}

#[tokio::test]
async fn check_15_declared_variables_missing_or_of_the_wrong_type_are_422_listing_all() {
    let app = TestApp::spawn().await;
    let mut def = definition_with_trigger(Some(&app.tenant.trigger_path));
    def["variables"] = json!([
        {"name": "customer_name", "type": "string", "required": true},
        {"name": "age", "type": "number", "required": true},
        {"name": "vip", "type": "boolean", "required": false, "default": false}
    ]);
    let key = &app.tenant.api_key;
    app.put(
        &format!("/api/v1/workflow/{}", app.tenant.agent_id),
        key,
        &json!({"workflow_definition": def}),
    )
    .await;
    let p = app
        .post(
            &format!("/api/v1/workflow/{}/publish", app.tenant.agent_id),
            key,
            &json!({}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    let r = app
        .trigger(&json!({"phone_number": "+14155550100", "initial_context": {"age": "old"}}))
        .await;
    assert_problem(
        &r,
        422,
        "invalid_variables",
        "Missing or invalid variables: customer_name, age",
    );
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2);
    let r = app
        .trigger(&json!({"phone_number": "+14155550100", "initial_context": {"customer_name": "Jo", "age": 40}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn check_16_an_unknown_or_foreign_configuration_id_is_404() {
    let app = TestApp::spawn().await;
    let other = app.add_tenant("Globex").await;
    for id in [9999, other.config_id] {
        let r = app
            .trigger(&json!({"phone_number": "+14155550100", "telephony_configuration_id": id}))
            .await;
        assert_problem(
            &r,
            404,
            "telephony_configuration_not_found",
            "Telephony configuration not found",
        );
    }
}

#[tokio::test]
async fn check_17_no_active_configuration_is_400() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let d = app
        .delete(
            &format!(
                "/api/v1/organizations/telephony-configs/{}",
                app.tenant.config_id
            ),
            key,
        )
        .await;
    assert_eq!(d.status, 204, "{}", d.text);
    assert_problem(
        &app.trigger(&ok_body()).await,
        400,
        "telephony_not_configured",
        "Telephony provider not configured for this organization",
    );
}

#[tokio::test]
async fn check_18_a_configuration_that_is_not_ready_is_400_with_its_reason() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let c = app
        .post(
            "/api/v1/organizations/telephony-configs",
            key,
            &json!({"name": "Twilio US", "provider": "twilio",
                    "credentials": {"account_sid": "AC123", "auth_token": "secret-token"}}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert!(
        !c.text.contains("secret-token"),
        "credentials leaked: {}",
        c.text
    );
    let r = app
        .trigger(
            &json!({"phone_number": "+14155550100", "telephony_configuration_id": c.body["id"]}),
        )
        .await;
    assert_problem(&r, 400, "telephony_not_ready", "");
    assert!(
        r.detail()
            .starts_with("'Twilio US' is not ready for outbound calls."),
        "{}",
        r.text
    );
    assert!(r.detail().contains("caller-ID"), "{}", r.text);
    // Made default but not ready: the next ready configuration (the simulator) is used.
    app.post(
        &format!(
            "/api/v1/organizations/telephony-configs/{}/set-default-outbound",
            c.body["id"]
        ),
        key,
        &json!({}),
    )
    .await;
    let r = app.trigger(&ok_body()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["telephony_configuration_id"], app.tenant.config_id);
}

#[tokio::test]
async fn check_19_a_caller_id_that_is_not_an_active_number_of_the_configuration_is_400() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let cfg = app.tenant.config_id;
    let n = app
        .post(
            &format!("/api/v1/organizations/telephony-configs/{cfg}/phone-numbers"),
            key,
            &json!({"address": "+14155550199", "is_active": false}),
        )
        .await;
    assert_eq!(n.status, 201, "{}", n.text);
    for id in [n.body["id"].as_i64().unwrap(), 4242] {
        let r = app
            .trigger(&json!({"phone_number": "+14155550100", "from_phone_number_id": id}))
            .await;
        assert_problem(
            &r,
            400,
            "from_phone_number_not_found",
            "from_phone_number_not_found",
        );
    }
    let active = app
        .post(
            &format!("/api/v1/organizations/telephony-configs/{cfg}/phone-numbers"),
            key,
            &json!({"address": "+14155550142"}),
        )
        .await;
    let r = app
        .trigger(
            &json!({"phone_number": "+14155550100", "from_phone_number_id": active.body["id"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["from_number"], "+14155550142");
}

#[tokio::test]
async fn check_20_an_exhausted_quota_is_402() {
    let app = TestApp::spawn().await;
    let q = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/organizations/{}/quota", app.tenant.org_id),
            &json!({"quota_seconds_remaining": 0}),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.text);
    assert_problem(
        &app.trigger(&ok_body()).await,
        402,
        "quota_exhausted",
        "Quota exhausted: no call minutes left",
    );
    assert_eq!(runs_count(&app).await, 0);
}

#[tokio::test]
async fn check_21_over_capacity_with_the_reject_policy_or_a_full_queue_is_429() {
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 2000, "talk_ms": 2000}),
        ..Options::default()
    })
    .await;
    let s = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/organizations/{}/settings", app.tenant.org_id),
            &json!({"max_concurrent_calls": 1, "on_capacity": "reject"}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.text);
    let first = app.trigger(&ok_body()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let first_call = first.body["call_id"].as_str().unwrap().to_owned();
    let r = app.trigger(&ok_body()).await;
    assert_problem(
        &r,
        429,
        "concurrency_limit_reached",
        "Concurrent call limit reached",
    );
    assert!(r.header("retry-after").is_some());

    // With the queue policy, a full queue is 429 too. Once the first call has left the queue
    // (it rings for 2 s), one more fits in a queue of one, and the next does not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let c = app
            .get(&format!("/api/v1/calls/{first_call}"), &app.tenant.api_key)
            .await;
        if c.body["status"] != "queued" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "first call never left the queue"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    app.admin(
        Method::PUT,
        &format!("/api/v1/admin/organizations/{}/settings", app.tenant.org_id),
        &json!({"on_capacity": "queue", "max_queued_calls": 1}),
    )
    .await;
    assert_eq!(app.trigger(&ok_body()).await.status, 200);
    let r = app.trigger(&ok_body()).await;
    assert_problem(
        &r,
        429,
        "concurrency_limit_reached",
        "Concurrent call limit reached",
    );
}

#[tokio::test]
async fn check_22_prefer_wait_reports_a_provider_rejection_as_400_and_keeps_the_run() {
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 10, "talk_ms": 10, "rules": [{"match": "+1415555011*", "outcome": "rejected"}]}),
        ..Options::default()
    })
    .await;
    let path = app.url(&format!("/api/v1/public/agent/{}", app.tenant.trigger_path));
    let r = app
        .send(
            app.client
                .post(&path)
                .header("X-API-Key", &app.tenant.api_key)
                .header("Prefer", "wait=5")
                .json(&json!({"phone_number": "+14155550111"})),
        )
        .await;
    let run = crate::support::assert_dial_refused(&app, &r).await;
    assert_eq!(run["ended_reason"], "provider_error");
    assert!(run["error"].as_str().unwrap().contains("rejected"), "{run}");
    // An accepted dial answers 200 with the status at the time of the answer.
    let r = app
        .send(
            app.client
                .post(&path)
                .header("X-API-Key", &app.tenant.api_key)
                .header("Prefer", "wait=5")
                .json(&ok_body()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.body["call_status"], "queued");
}

/// A request that fails several checks gets the answer of the first in the SPEC's order, and
/// creates nothing.
#[tokio::test]
async fn a_request_failing_several_checks_is_answered_by_the_first() {
    // Calls ring for 3 s, so the first one accepted below is still live at the end.
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 3000, "talk_ms": 10}),
        ..Options::default()
    })
    .await;
    let other = app.add_tenant("Globex").await;
    let key = &app.tenant.api_key;
    let unknown = "/api/v1/public/agent/no-such-trigger";
    let mine = format!("/api/v1/public/agent/{}", app.tenant.trigger_path);
    let no_phone = json!({"initial_context": {"customer_name": "Jane"}});
    let bad_phone = json!({"phone_number": "12345"});
    let wrong_type = json!({"phone_number": 14155550100_i64});
    // 1 before 3: no key and a body that is not JSON.
    let r = app
        .send(
            app.client
                .post(app.url(unknown))
                .header("Content-Type", "application/json")
                .body("not json"),
        )
        .await;
    assert_problem(&r, 401, "missing_api_key", "Missing API key");
    // 2 before 4: an unknown key and no phone number.
    let r = app.post(unknown, "cg_not_a_key", &no_phone).await;
    assert_problem(&r, 401, "invalid_api_key", "Invalid API key");
    // 3 before 6, 4 before 6, 5 before 6: the body's faults come before the path's.
    assert_eq!(
        app.post(unknown, key, &wrong_type).await.code(),
        "invalid_body"
    );
    assert_problem(
        &app.post(unknown, key, &no_phone).await,
        422,
        "missing_phone_number",
        "phone_number is required",
    );
    assert_problem(
        &app.post(unknown, key, &bad_phone).await,
        422,
        "invalid_phone_number",
        "Invalid phone number format",
    );
    // 7 before 8: another organisation's trigger, with a key scoped to other agents.
    let scoped = app
        .post(
            "/api/v1/user/api-keys",
            &other.api_key,
            &json!({"name": "scoped", "scopes": {"agents": [999]}}),
        )
        .await;
    assert_eq!(scoped.status, 200, "{}", scoped.text);
    let scoped = scoped.body["api_key"].as_str().unwrap().to_owned();
    assert_problem(
        &app.post(&mine, &scoped, &ok_body()).await,
        403,
        "forbidden",
        "Access denied",
    );
    // 20 before 21: no quota left while the one call allowed at a time is live.
    app.admin(
        Method::PUT,
        &format!("/api/v1/admin/organizations/{}/settings", app.tenant.org_id),
        &json!({"on_capacity": "reject", "max_concurrent_calls": 1}),
    )
    .await;
    assert_eq!(app.trigger(&ok_body()).await.status, 200);
    assert_eq!(
        app.trigger(&ok_body()).await.code(),
        "concurrency_limit_reached"
    );
    app.admin(
        Method::PUT,
        &format!("/api/v1/admin/organizations/{}/quota", app.tenant.org_id),
        &json!({"quota_seconds_remaining": 0}),
    )
    .await;
    assert_problem(
        &app.trigger(&ok_body()).await,
        402,
        "quota_exhausted",
        "Quota exhausted: no call minutes left",
    );
    assert_eq!(runs_count(&app).await, 1);
}

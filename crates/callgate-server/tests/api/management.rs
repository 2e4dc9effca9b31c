//! The management API's answers (SPEC §6.3, §6.4): agents, API keys, telephony configurations
//! and numbers, organisation settings and limits, the instance admin API, and problem JSON for
//! malformed requests and unknown routes.

use crate::support::{assert_problem, create_agent, ok_body};
use callgate_testkit::{ADMIN_TOKEN, TestApp, definition_with_trigger};
use reqwest::Method;
use serde_json::{Value, json};

fn assert_offset_time(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(s.ends_with("+00:00"), "{s} has no +00:00 offset");
    s.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{s}: {e}"));
}

const WORKFLOW_FIELDS: [&str; 11] = [
    "id",
    "name",
    "status",
    "created_at",
    "workflow_definition",
    "current_definition_id",
    "template_context_variables",
    "version_number",
    "version_status",
    "workflow_uuid",
    "total_runs",
];

#[tokio::test]
async fn creating_and_fetching_an_agent_answer_dograhs_workflow_response() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let mut def = definition_with_trigger(Some("support-line"));
    def["viewport"] = json!({"x": 1, "y": 2, "zoom": 0.5});
    def["nodes"].as_array_mut().unwrap().push(
        json!({"id": "custom", "type": "fancyNewNode", "position": {"x": 5, "y": 5}, "data": {"k": "v"}}),
    );
    let created = create_agent(&app, key, "Support", def.clone()).await;
    for f in WORKFLOW_FIELDS {
        assert!(created.get(f).is_some(), "{f} missing: {created}");
    }
    assert!(created["id"].is_i64());
    assert_eq!(created["name"], "Support");
    assert_eq!(created["status"], "active");
    assert_offset_time(&created["created_at"]);
    assert_eq!(
        created["workflow_definition"], def,
        "definition not kept as sent"
    );
    assert!(created["current_definition_id"].is_i64());
    assert!(created["template_context_variables"].is_null());
    assert_eq!(created["version_number"], 1);
    assert_eq!(created["version_status"], "published");
    uuid::Uuid::parse_str(created["workflow_uuid"].as_str().unwrap()).unwrap();
    assert_eq!(created["total_runs"], 0);

    let id = created["id"].as_i64().unwrap();
    let fetched = app.get(&format!("/api/v1/workflow/fetch/{id}"), key).await;
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    for f in WORKFLOW_FIELDS {
        assert_eq!(
            fetched.body[f], created[f],
            "{f} differs between create and fetch"
        );
    }
    // The agent works at once through its trigger.
    let r = app
        .post("/api/v1/public/agent/support-line", key, &ok_body())
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fetched = app.get(&format!("/api/v1/workflow/fetch/{id}"), key).await;
    assert_eq!(fetched.body["total_runs"], 1);
}

#[tokio::test]
async fn a_trigger_without_a_path_gets_a_uuid_when_saved() {
    let app = TestApp::spawn().await;
    let created = create_agent(
        &app,
        &app.tenant.api_key,
        "Auto",
        definition_with_trigger(None),
    )
    .await;
    let path = created["workflow_definition"]["nodes"][2]["data"]["trigger_path"]
        .as_str()
        .unwrap();
    uuid::Uuid::parse_str(path).unwrap();
    let r = app
        .post(
            &format!("/api/v1/public/agent/{path}"),
            &app.tenant.api_key,
            &ok_body(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn the_agent_list_has_dograhs_item_fields_and_filters_by_status() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let second = create_agent(
        &app,
        key,
        "Second",
        definition_with_trigger(Some("second-line")),
    )
    .await;
    let r = app.get("/api/v1/workflow/fetch", key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.body.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        let mut keys: Vec<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "created_at",
                "id",
                "name",
                "status",
                "total_runs",
                "workflow_uuid"
            ]
        );
        assert_offset_time(&item["created_at"]);
    }
    let archived = app
        .post(
            &format!("/api/v1/workflow/{}/archive", second["id"]),
            key,
            &json!({}),
        )
        .await;
    assert_eq!(archived.status, 200, "{}", archived.text);
    assert_eq!(archived.body["status"], "archived");
    let only = |status: &'static str| {
        let app = &app;
        async move {
            let r = app
                .get(&format!("/api/v1/workflow/fetch?status={status}"), key)
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.body
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(only("archived").await, [second["id"].as_i64().unwrap()]);
    assert_eq!(only("active").await, [app.tenant.agent_id]);
    let r = app.get("/api/v1/workflow/fetch?status=deleted", key).await;
    assert_problem(&r, 422, "invalid_query", "");
}

#[tokio::test]
async fn updating_an_agent_renames_it_and_edits_the_draft() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let path = format!("/api/v1/workflow/{}", t.agent_id);
    let before = app
        .get(
            &format!("/api/v1/workflow/fetch/{}", t.agent_id),
            &t.api_key,
        )
        .await;
    let r = app
        .put(&path, &t.api_key, &json!({"name": "  Renamed  "}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"], "Renamed");
    assert_eq!(
        r.body["version_status"], "published",
        "a rename is not a new version"
    );

    let mut def = definition_with_trigger(Some(&t.trigger_path));
    def["nodes"][0]["data"]["greeting"] = json!("Changed");
    let r = app
        .put(
            &path,
            &t.api_key,
            &json!({"workflow_definition": def, "template_context_variables": {"a": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["version_status"], "draft");
    assert_eq!(r.body["version_number"], 2);
    assert_ne!(
        r.body["current_definition_id"],
        before.body["current_definition_id"]
    );
    assert_eq!(r.body["workflow_definition"], def);
    assert_eq!(r.body["template_context_variables"], json!({"a": 1}));
    assert_eq!(r.body["workflow_uuid"], before.body["workflow_uuid"]);
    assert_eq!(r.body["created_at"], before.body["created_at"]);
    let fetched = app
        .get(
            &format!("/api/v1/workflow/fetch/{}", t.agent_id),
            &t.api_key,
        )
        .await;
    assert_eq!(fetched.body, r.body);

    for bad in [
        json!({"name": ""}),
        json!({"name": 5}),
        json!({"template_context_variables": [1]}),
        json!({"workflow_definition": "x"}),
    ] {
        let r = app.put(&path, &t.api_key, &bad).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let r = app
        .put("/api/v1/workflow/999999", &t.api_key, &json!({"name": "x"}))
        .await;
    assert_problem(&r, 404, "workflow_not_found", "Workflow not found");
    let r = app.get("/api/v1/workflow/fetch/999999", &t.api_key).await;
    assert_problem(&r, 404, "workflow_not_found", "Workflow not found");
}

#[tokio::test]
async fn reassigning_the_owner_needs_a_user_of_the_organisation() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let other = app.add_tenant("Globex").await;
    let path = format!("/api/v1/workflow/{}/owner", t.agent_id);
    let r = app
        .put(&path, &t.api_key, &json!({"user_id": other.user_id}))
        .await;
    assert_problem(&r, 404, "user_not_found", "");
    let u = app
        .admin(
            Method::POST,
            &format!("/api/v1/admin/organizations/{}/users", t.org_id),
            &json!({"email": "two@acme.test"}),
        )
        .await;
    let r = app
        .put(&path, &t.api_key, &json!({"user_id": u.body["id"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["owner_user_id"], u.body["id"]);
}

#[tokio::test]
async fn a_created_api_key_is_shown_once_and_never_listed() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let r = app
        .post(
            "/api/v1/user/api-keys",
            key,
            &json!({"name": "zapier", "scopes": {"environments": ["test"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let raw = r.body["api_key"].as_str().unwrap().to_owned();
    assert!(raw.starts_with("cg_"), "{raw}");
    let prefix = r.body["key_prefix"].as_str().unwrap();
    assert_eq!(prefix.chars().count(), 8, "{prefix}");
    assert!(
        raw.starts_with(prefix),
        "{raw} does not start with {prefix}"
    );
    assert_eq!(r.body["name"], "zapier");
    assert_eq!(r.body["scopes"]["environments"], json!(["test"]));
    assert_offset_time(&r.body["created_at"]);
    let id = r.body["id"].as_i64().unwrap();

    let list = app.get("/api/v1/user/api-keys", key).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(!list.text.contains(&raw), "the raw key was listed");
    assert!(
        !list.text.contains(&raw[raw.len() - 12..]),
        "part of the raw key was listed"
    );
    let items = list.body.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        assert!(item.get("api_key").is_none(), "{item}");
        assert!(item.get("key_hash").is_none(), "{item}");
    }
    let mine = items.iter().find(|k| k["id"] == id).unwrap();
    assert_eq!(mine["key_prefix"], prefix);
    assert_eq!(mine["is_active"], true);

    let d = app
        .delete(&format!("/api/v1/user/api-keys/{id}"), key)
        .await;
    assert_eq!(d.status, 200, "{}", d.text);
    assert_eq!(d.body["is_active"], false);
    assert!(d.body.get("api_key").is_none());
    let r = app.delete("/api/v1/user/api-keys/999999", key).await;
    assert_problem(&r, 404, "api_key_not_found", "");
    let r = app
        .post("/api/v1/user/api-keys", key, &json!({"name": "   "}))
        .await;
    assert_problem(&r, 422, "invalid_body", "");
}

#[tokio::test]
async fn telephony_configurations_never_return_credentials() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let secret = "super-secret-auth-token";
    let c = app
        .post(
            "/api/v1/organizations/telephony-configs",
            key,
            &json!({"name": "Twilio US", "provider": "twilio",
                    "credentials": {"account_sid": "AC0123456789", "auth_token": secret},
                    "calls_per_second": 2.5, "max_concurrent_calls": 4}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    assert_eq!(
        c.body["credentials_set"],
        json!({"account_sid": true, "auth_token": true})
    );
    assert_eq!(c.body["provider"], "twilio");
    assert_eq!(c.body["calls_per_second"], 2.5);
    assert_eq!(c.body["max_concurrent_calls"], 4);
    assert_eq!(c.body["is_default_outbound"], false);
    assert!(c.body.get("credentials").is_none());
    let id = c.body["id"].as_i64().unwrap();
    let one = format!("/api/v1/organizations/telephony-configs/{id}");

    let got = app.get(&one, key).await;
    let list = app
        .get("/api/v1/organizations/telephony-configs", key)
        .await;
    let put = app
        .put(
            &one,
            key,
            &json!({"name": "Twilio EU", "calls_per_second": 1}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["name"], "Twilio EU");
    assert_eq!(put.body["calls_per_second"], 1.0);
    assert_eq!(
        put.body["credentials_set"],
        json!({"account_sid": true, "auth_token": true}),
        "credentials were lost"
    );
    let replaced = app.put(&one, key, &json!({"credentials": {"account_sid": "AC9", "auth_token": "other-secret", "api_key": null}})).await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(
        replaced.body["credentials_set"],
        json!({"account_sid": true, "auth_token": true})
    );
    for r in [&c, &got, &list, &put, &replaced] {
        assert!(
            !r.text.contains(secret) && !r.text.contains("other-secret"),
            "credentials leaked: {}",
            r.text
        );
        assert!(
            !r.text.contains("AC0123456789"),
            "credential values leaked: {}",
            r.text
        );
    }
    assert_eq!(list.body.as_array().unwrap().len(), 2);

    let r = app
        .post(
            "/api/v1/organizations/telephony-configs",
            key,
            &json!({"name": "x", "provider": "carrier-pigeon"}),
        )
        .await;
    assert_problem(&r, 422, "invalid_body", "");
    let r = app
        .post(
            "/api/v1/organizations/telephony-configs",
            key,
            &json!({"name": "x", "provider": "simulator", "calls_per_second": 0}),
        )
        .await;
    assert_problem(&r, 422, "invalid_body", "");

    let d = app.delete(&one, key).await;
    assert_eq!(d.status, 204, "{}", d.text);
    assert_problem(
        &app.get(&one, key).await,
        404,
        "telephony_configuration_not_found",
        "Telephony configuration not found",
    );
    assert_problem(
        &app.delete(&one, key).await,
        404,
        "telephony_configuration_not_found",
        "",
    );
    let list = app
        .get("/api/v1/organizations/telephony-configs", key)
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn one_configuration_at_a_time_is_the_default_outbound() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let configs = "/api/v1/organizations/telephony-configs";
    let defaults = || async {
        let r = app.get(configs, key).await;
        r.body
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["is_default_outbound"] == true)
            .map(|c| c["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(defaults().await, [app.tenant.config_id]);
    let c = app
        .post(configs, key, &json!({"name": "Sim 2", "provider": "simulator", "credentials": {}, "is_default_outbound": true}))
        .await;
    assert_eq!(c.status, 201, "{}", c.text);
    let second = c.body["id"].as_i64().unwrap();
    assert_eq!(
        defaults().await,
        [second],
        "creating a default did not clear the previous one"
    );
    assert_eq!(
        app.trigger(&ok_body()).await.body["telephony_configuration_id"],
        second
    );

    let r = app
        .post(
            &format!("{configs}/{}/set-default-outbound", app.tenant.config_id),
            key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["is_default_outbound"], true);
    assert_eq!(defaults().await, [app.tenant.config_id]);
    assert_eq!(
        app.trigger(&ok_body()).await.body["telephony_configuration_id"],
        app.tenant.config_id
    );
    let r = app
        .post(
            &format!("{configs}/999999/set-default-outbound"),
            key,
            &json!({}),
        )
        .await;
    assert_problem(&r, 404, "telephony_configuration_not_found", "");
    assert_eq!(
        defaults().await,
        [app.tenant.config_id],
        "a failed set-default cleared the default"
    );
}

#[tokio::test]
async fn phone_numbers_are_validated_deduplicated_updated_and_deleted() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let base = format!(
        "/api/v1/organizations/telephony-configs/{}/phone-numbers",
        app.tenant.config_id
    );
    let a = app
        .post(
            &base,
            key,
            &json!({"address": "+1 (415) 555-0142", "label": "Main"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    assert_eq!(a.body["address"], "+14155550142");
    assert_eq!(a.body["label"], "Main");
    assert_eq!(a.body["is_active"], true);
    assert_eq!(a.body["is_default_caller_id"], false);
    let a_id = a.body["id"].as_i64().unwrap();

    for bad in ["12345", "+1", "not a number", "+15550001234"] {
        let r = app.post(&base, key, &json!({"address": bad})).await;
        assert_problem(
            &r,
            422,
            "invalid_phone_number",
            "Invalid phone number format",
        );
    }
    let r = app.post(&base, key, &json!({"label": "no address"})).await;
    assert_problem(&r, 422, "invalid_body", "");
    let r = app
        .post(&base, key, &json!({"address": "+14155550142"}))
        .await;
    assert_problem(&r, 409, "phone_number_exists", "");

    let b = app
        .post(
            &base,
            key,
            &json!({"address": "+14155550143", "is_default_caller_id": true}),
        )
        .await;
    assert_eq!(b.status, 201, "{}", b.text);
    let b_id = b.body["id"].as_i64().unwrap();
    let c = app
        .post(
            &base,
            key,
            &json!({"address": "+14155550144", "is_default_caller_id": true}),
        )
        .await;
    let list = app.get(&base, key).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let defaults: Vec<&Value> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["is_default_caller_id"] == true)
        .map(|n| &n["id"])
        .collect();
    assert_eq!(
        defaults,
        [&c.body["id"]],
        "two default caller IDs: {}",
        list.text
    );

    let r = app
        .put(
            &format!("{base}/{a_id}"),
            key,
            &json!({"label": "Renamed", "is_active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["label"], "Renamed");
    assert_eq!(r.body["is_active"], false);
    assert_eq!(
        r.body["address"], "+14155550142",
        "an update without address kept it"
    );
    let r = app
        .put(&format!("{base}/{a_id}"), key, &json!({"address": "bad"}))
        .await;
    assert_problem(&r, 422, "invalid_phone_number", "");
    let r = app
        .put(
            &format!("{base}/{a_id}"),
            key,
            &json!({"address": "+14155550143"}),
        )
        .await;
    assert_problem(&r, 409, "phone_number_exists", "");
    let r = app
        .put(&format!("{base}/999999"), key, &json!({"label": "x"}))
        .await;
    assert_problem(&r, 404, "phone_number_not_found", "");

    let r = app.delete(&format!("{base}/{b_id}"), key).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_problem(
        &app.delete(&format!("{base}/{b_id}"), key).await,
        404,
        "phone_number_not_found",
        "",
    );
    let list = app.get(&base, key).await;
    let addresses: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["+14155550142", "+14155550144"]);
    let r = app
        .get(
            "/api/v1/organizations/telephony-configs/999999/phone-numbers",
            key,
        )
        .await;
    assert_problem(&r, 404, "telephony_configuration_not_found", "");
}

#[tokio::test]
async fn organisation_settings_have_defaults_and_can_be_changed() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let r = app.get("/api/v1/organizations/settings", key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["organization_id"], app.tenant.org_id);
    assert_eq!(r.body["max_concurrent_calls"], 10);
    assert_eq!(r.body["max_queued_calls"], 10_000);
    assert_eq!(r.body["on_capacity"], "queue");

    let r = app
        .put(
            "/api/v1/organizations/settings",
            key,
            &json!({"max_concurrent_calls": 3, "on_capacity": "reject"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["max_concurrent_calls"], 3);
    assert_eq!(r.body["on_capacity"], "reject");
    assert_eq!(
        r.body["max_queued_calls"], 10_000,
        "an untouched field changed"
    );
    let r = app.get("/api/v1/organizations/settings", key).await;
    assert_eq!(r.body["max_concurrent_calls"], 3);

    for bad in [
        json!({"max_concurrent_calls": 0}),
        json!({"max_queued_calls": -1}),
        json!({"on_capacity": "drop"}),
        json!({"max_concurent_calls": 5}),
    ] {
        let r = app.put("/api/v1/organizations/settings", key, &bad).await;
        assert_problem(&r, 422, "invalid_body", "");
    }
    let r = app.get("/api/v1/organizations/settings", key).await;
    assert_eq!(
        r.body["max_concurrent_calls"], 3,
        "a refused update changed settings"
    );
}

#[tokio::test]
async fn organisation_limits_show_live_usage() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let r = app.get("/api/v1/organizations/limits", key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["concurrent_calls"], json!({"used": 0, "limit": 10}));
    assert_eq!(r.body["queued_calls"], json!({"used": 0, "limit": 10_000}));
    assert!(r.body["quota_seconds_remaining"].is_null());
    let cfg = &r.body["telephony_configurations"][0];
    assert_eq!(cfg["telephony_configuration_id"], app.tenant.config_id);
    assert_eq!(cfg["calls_per_second"], 1000.0);
    assert_eq!(cfg["concurrent_calls_used"], 0);
}

#[tokio::test]
async fn the_admin_api_refuses_a_missing_or_wrong_token() {
    let app = TestApp::spawn().await;
    let url = app.url("/api/v1/admin/organizations");
    for req in [
        app.client.get(&url),
        app.client.get(&url).bearer_auth("wrong-token"),
        app.client.get(&url).bearer_auth(format!("{ADMIN_TOKEN}x")),
        app.client.get(&url).header("Authorization", ADMIN_TOKEN),
        app.client
            .post(&url)
            .bearer_auth("wrong-token")
            .json(&json!({"name": "Evil"})),
        // An organisation's API key is not an admin token.
        app.client
            .get(&url)
            .header("X-API-Key", &app.tenant.api_key),
    ] {
        let r = app.send(req).await;
        assert_problem(&r, 401, "invalid_admin_token", "Invalid admin token");
    }
    let r = app
        .admin(Method::GET, "/api/v1/admin/organizations", &json!(null))
        .await;
    assert_eq!(
        r.body.as_array().unwrap().len(),
        1,
        "a refused request created an organisation"
    );
}

#[tokio::test]
async fn the_admin_api_creates_an_organisation_a_user_a_key_and_a_quota() {
    let app = TestApp::spawn().await;
    let org = app
        .admin(
            Method::POST,
            "/api/v1/admin/organizations",
            &json!({"name": "Initech"}),
        )
        .await;
    assert_eq!(org.status, 201, "{}", org.text);
    assert_eq!(org.body["name"], "Initech");
    let org_id = org.body["id"].as_i64().unwrap();
    let list = app
        .admin(Method::GET, "/api/v1/admin/organizations", &json!(null))
        .await;
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["organization_id"] == org_id || o["id"] == org_id),
        "{}",
        list.text
    );

    let users = format!("/api/v1/admin/organizations/{org_id}/users");
    let user = app
        .admin(
            Method::POST,
            &users,
            &json!({"email": "peter@initech.test", "name": "Peter"}),
        )
        .await;
    assert_eq!(user.status, 201, "{}", user.text);
    assert_eq!(user.body["email"], "peter@initech.test");
    let user_id = user.body["id"].as_i64().unwrap();
    let dup = app
        .admin(
            Method::POST,
            &users,
            &json!({"email": "peter@initech.test"}),
        )
        .await;
    assert_problem(&dup, 409, "email_taken", "");
    let bad = app
        .admin(Method::POST, &users, &json!({"email": "not-an-email"}))
        .await;
    assert_problem(&bad, 422, "invalid_body", "");

    let keys = format!("/api/v1/admin/organizations/{org_id}/api-keys");
    let key = app
        .admin(
            Method::POST,
            &keys,
            &json!({"user_id": user_id, "name": "ops", "scopes": {"admin": true}}),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let raw = key.body["api_key"].as_str().unwrap().to_owned();
    assert!(raw.starts_with(key.body["key_prefix"].as_str().unwrap()));
    assert!(key.body["id"].is_i64());
    let settings = app.get("/api/v1/organizations/settings", &raw).await;
    assert_eq!(settings.status, 200, "{}", settings.text);
    assert_eq!(settings.body["organization_id"], org_id);
    // The key manages its own organisation only.
    let agents = app.get("/api/v1/workflow/fetch", &raw).await;
    assert_eq!(agents.body, json!([]), "{}", agents.text);

    let quota = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/organizations/{org_id}/quota"),
            &json!({"quota_seconds_remaining": 600}),
        )
        .await;
    assert_eq!(quota.status, 200, "{}", quota.text);
    assert_eq!(quota.body["quota_seconds_remaining"], 600);
    let limits = app.get("/api/v1/organizations/limits", &raw).await;
    assert_eq!(limits.body["quota_seconds_remaining"], 600);
    let unlimited = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/organizations/{org_id}/quota"),
            &json!({"quota_seconds_remaining": null}),
        )
        .await;
    assert!(
        unlimited.body["quota_seconds_remaining"].is_null(),
        "{}",
        unlimited.text
    );

    let s = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/organizations/{org_id}/settings"),
            &json!({"max_concurrent_calls": 2}),
        )
        .await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(s.body["max_concurrent_calls"], 2);

    // Unknown organisations and foreign users are refused.
    let r = app
        .admin(
            Method::POST,
            "/api/v1/admin/organizations/999999/users",
            &json!({"email": "a@b.c"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = app
        .admin(
            Method::PUT,
            "/api/v1/admin/organizations/999999/quota",
            &json!({"quota_seconds_remaining": 1}),
        )
        .await;
    assert_problem(&r, 404, "organization_not_found", "");
    let r = app
        .admin(
            Method::POST,
            &keys,
            &json!({"user_id": app.tenant.user_id, "name": "stolen"}),
        )
        .await;
    assert_eq!(
        r.status, 404,
        "a key for another organisation's user: {}",
        r.text
    );
    assert!(r.body.get("api_key").is_none());
}

#[tokio::test]
async fn malformed_json_on_management_routes_is_422_problem_json() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let t = &app.tenant;
    let cases = [
        (
            Method::POST,
            "/api/v1/workflow/create/definition".to_owned(),
        ),
        (Method::PUT, format!("/api/v1/workflow/{}", t.agent_id)),
        (
            Method::PUT,
            format!("/api/v1/workflow/{}/owner", t.agent_id),
        ),
        (Method::POST, "/api/v1/user/api-keys".to_owned()),
        (
            Method::POST,
            "/api/v1/organizations/telephony-configs".to_owned(),
        ),
        (
            Method::PUT,
            format!("/api/v1/organizations/telephony-configs/{}", t.config_id),
        ),
        (
            Method::POST,
            format!(
                "/api/v1/organizations/telephony-configs/{}/phone-numbers",
                t.config_id
            ),
        ),
        (Method::PUT, "/api/v1/organizations/settings".to_owned()),
        (Method::POST, "/api/v1/calls/outbound".to_owned()),
        (Method::POST, "/api/v1/telephony/initiate-call".to_owned()),
    ];
    for (method, path) in cases {
        for raw in ["{not json", "[1, 2]", "", "\"text\""] {
            let r = app
                .send(
                    app.client
                        .request(method.clone(), app.url(&path))
                        .header("X-API-Key", key)
                        .header("content-type", "application/json")
                        .body(raw),
                )
                .await;
            assert_problem(&r, 422, "invalid_body", "");
        }
    }
    // Too large is 413, still problem JSON.
    let mut huge = definition_with_trigger(None);
    huge["nodes"][0]["data"]["prompt"] = json!("x".repeat(300 * 1024));
    let r = app
        .post(
            "/api/v1/workflow/create/definition",
            key,
            &json!({"name": "Huge", "workflow_definition": huge}),
        )
        .await;
    assert_problem(&r, 413, "body_too_large", "");
    // Wrong types too.
    let r = app
        .post(
            "/api/v1/workflow/create/definition",
            key,
            &json!({"name": 1, "workflow_definition": {}}),
        )
        .await;
    assert_problem(&r, 422, "invalid_body", "");
    let list = app.get("/api/v1/workflow/fetch", key).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_routes_methods_and_malformed_ids_are_problem_json() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let r = app.get("/api/v1/no-such-thing", key).await;
    assert_problem(&r, 404, "route_not_found", "");
    let r = app.get("/nope", "").await;
    assert_problem(&r, 404, "route_not_found", "");
    let r = app
        .delete(
            &format!("/api/v1/workflow/fetch/{}", app.tenant.agent_id),
            key,
        )
        .await;
    assert_problem(&r, 405, "method_not_allowed", "");
    // Ids that are not numbers never reach a handler as a plain-text error.
    for path in [
        "/api/v1/workflow/fetch/abc".to_owned(),
        "/api/v1/workflow/abc/versions".to_owned(),
        "/api/v1/organizations/telephony-configs/abc".to_owned(),
        format!("/api/v1/workflow/{}/runs/abc", app.tenant.agent_id),
    ] {
        let r = app.get(&path, key).await;
        assert!(
            r.status == 404 || r.status == 400 || r.status == 422,
            "{path}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/problem+json"),
            "{path}: {}",
            r.text
        );
        assert!(!r.code().is_empty(), "{path}: {}", r.text);
    }
    let r = app.get("/api/v1/calls/not-a-uuid", key).await;
    assert_problem(&r, 404, "call_not_found", "Call not found");
}

//! Drafts, publishing and the test/production split (SPEC §5.5, §6.1–6.3): which version each
//! route runs, editor defaults, trigger-path ownership, publish validation, versions, triggers.

use crate::support::{
    assert_problem, create_agent, definition_with_greeting, ok_body, publish, run_of, save_draft,
};
use callgate_testkit::{TestApp, definition_with_trigger};
use serde_json::{Value, json};

const DRAFT_GREETING: &str = "Hello {{customer_name}}, this is the new Ava.";

async fn edit_greeting(app: &TestApp) {
    let t = &app.tenant;
    let def = definition_with_greeting(&t.trigger_path, DRAFT_GREETING);
    let r = save_draft(
        app,
        &t.api_key,
        t.agent_id,
        &json!({"workflow_definition": def}),
    )
    .await;
    assert_eq!(r["version_status"], "draft");
    assert_eq!(r["version_number"], 2);
}

/// Triggers `path` and returns the run it created.
async fn run_via(app: &TestApp, path: &str, body: &Value) -> Value {
    let r = app.post(path, &app.tenant.api_key, body).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    let run = run_of(app, &app.tenant.api_key, &r).await;
    assert_eq!(r.body["agent_version"], run["agent_version"]);
    assert_eq!(r.body["workflow_run_name"], run["name"]);
    run
}

#[tokio::test]
async fn after_a_draft_edit_production_runs_the_published_version_and_test_the_draft() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    edit_greeting(&app).await;
    let prod = format!("/api/v1/public/agent/{}", t.trigger_path);
    let test = format!("/api/v1/public/agent/test/{}", t.trigger_path);

    let run = run_via(&app, &prod, &ok_body()).await;
    assert_eq!(run["greeting"], "Hi Jane, this is Ava.");
    assert_eq!(run["agent_version"], 1);
    assert_eq!(run["trigger_mode"], "production");
    assert!(
        run["name"].as_str().unwrap().starts_with("WR-API-"),
        "{run}"
    );

    let run = run_via(&app, &test, &ok_body()).await;
    assert_eq!(run["greeting"], "Hello Jane, this is the new Ava.");
    assert_eq!(run["agent_version"], 2);
    assert_eq!(run["trigger_mode"], "test");
    assert_eq!(run["initial_context"]["trigger_mode"], "test");
    assert_eq!(
        run["name"],
        format!("WR-TEST-{:04}", run["workflow_run_id"].as_i64().unwrap())
    );

    publish(&app, &t.api_key, t.agent_id).await;
    for path in [&prod, &test] {
        let run = run_via(&app, path, &ok_body()).await;
        assert_eq!(
            run["greeting"], "Hello Jane, this is the new Ava.",
            "{path}"
        );
        assert_eq!(run["agent_version"], 2, "{path}");
    }
}

#[tokio::test]
async fn the_workflow_uuid_routes_choose_versions_the_same_way() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    edit_greeting(&app).await;
    let prod = format!("/api/v1/public/agent/workflow/{}", t.workflow_uuid);
    let test = format!("/api/v1/public/agent/test/workflow/{}", t.workflow_uuid);

    let run = run_via(&app, &prod, &ok_body()).await;
    assert_eq!(run["greeting"], "Hi Jane, this is Ava.");
    assert_eq!(run["agent_version"], 1);
    assert!(
        run["name"].as_str().unwrap().starts_with("WR-API-"),
        "{run}"
    );
    assert_eq!(
        run["initial_context"]["agent_identifier_type"],
        "workflow_uuid"
    );
    assert_eq!(run["initial_context"]["agent_identifier"], t.workflow_uuid);

    let run = run_via(&app, &test, &ok_body()).await;
    assert_eq!(run["greeting"], "Hello Jane, this is the new Ava.");
    assert_eq!(run["agent_version"], 2);
    assert!(
        run["name"].as_str().unwrap().starts_with("WR-TEST-"),
        "{run}"
    );

    publish(&app, &t.api_key, t.agent_id).await;
    let run = run_via(&app, &prod, &ok_body()).await;
    assert_eq!(run["greeting"], "Hello Jane, this is the new Ava.");
    assert_eq!(run["agent_version"], 2);
}

#[tokio::test]
async fn the_test_route_runs_the_published_version_when_there_is_no_draft() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let run = run_via(
        &app,
        &format!("/api/v1/public/agent/test/{}", t.trigger_path),
        &ok_body(),
    )
    .await;
    assert_eq!(run["agent_version"], 1);
    assert_eq!(run["greeting"], "Hi Jane, this is Ava.");
    assert!(
        run["name"].as_str().unwrap().starts_with("WR-TEST-"),
        "{run}"
    );
}

#[tokio::test]
async fn editor_defaults_fill_missing_variables_on_test_routes_only_and_caller_values_win() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let saved = save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"template_context_variables": {"customer_name": "Dana"}}),
    )
    .await;
    assert_eq!(
        saved["template_context_variables"],
        json!({"customer_name": "Dana"})
    );
    let no_context = json!({"phone_number": "+14155550100"});
    for test in [
        format!("/api/v1/public/agent/test/{}", t.trigger_path),
        format!("/api/v1/public/agent/test/workflow/{}", t.workflow_uuid),
    ] {
        let run = run_via(&app, &test, &no_context).await;
        assert_eq!(run["greeting"], "Hi Dana, this is Ava.", "{test}");
        assert_eq!(run["unresolved_variables"], json!([]), "{test}");
        let run = run_via(&app, &test, &ok_body()).await;
        assert_eq!(
            run["greeting"], "Hi Jane, this is Ava.",
            "caller values win on {test}"
        );
        // A context the caller sent, completed by a default, is stored completed.
        let other = json!({"phone_number": "+14155550100", "initial_context": {"other": "x"}});
        let run = run_via(&app, &test, &other).await;
        assert_eq!(run["greeting"], "Hi Dana, this is Ava.", "{test}");
        assert_eq!(run["initial_context"]["other"], "x", "{test}");
        assert_eq!(run["initial_context"]["customer_name"], "Dana", "{test}");
    }
    for prod in [
        format!("/api/v1/public/agent/{}", t.trigger_path),
        format!("/api/v1/public/agent/workflow/{}", t.workflow_uuid),
    ] {
        let run = run_via(&app, &prod, &no_context).await;
        assert_eq!(
            run["greeting"], "Hi , this is Ava.",
            "{prod} used editor defaults"
        );
        assert_eq!(
            run["unresolved_variables"],
            json!(["customer_name"]),
            "{prod}"
        );
    }
    // Not even once the version carrying them is published.
    publish(&app, &t.api_key, t.agent_id).await;
    let run = run_via(
        &app,
        &format!("/api/v1/public/agent/{}", t.trigger_path),
        &no_context,
    )
    .await;
    assert_eq!(run["agent_version"], 2);
    assert_eq!(
        run["greeting"], "Hi , this is Ava.",
        "production used editor defaults"
    );
    let run = run_via(
        &app,
        &format!("/api/v1/public/agent/test/{}", t.trigger_path),
        &no_context,
    )
    .await;
    assert_eq!(run["greeting"], "Hi Dana, this is Ava.");
}

#[tokio::test]
async fn a_trigger_path_used_by_one_agent_cannot_be_claimed_by_another() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let key = &t.api_key;
    // On create.
    let r = app
        .post(
            "/api/v1/workflow/create/definition",
            key,
            &json!({"name": "Copycat", "workflow_definition": definition_with_trigger(Some(&t.trigger_path))}),
        )
        .await;
    assert_problem(&r, 409, "trigger_path_taken", "");
    let list = app.get("/api/v1/workflow/fetch", key).await;
    assert_eq!(
        list.body.as_array().unwrap().len(),
        1,
        "a refused create left an agent: {}",
        list.text
    );

    // On draft save: the refused draft leaves the other agent as it was.
    let b = create_agent(
        &app,
        key,
        "Second",
        definition_with_trigger(Some("second-line")),
    )
    .await;
    let b_id = b["id"].as_i64().unwrap();
    let r = app
        .put(
            &format!("/api/v1/workflow/{b_id}"),
            key,
            &json!({"workflow_definition": definition_with_trigger(Some(&t.trigger_path))}),
        )
        .await;
    assert_problem(&r, 409, "trigger_path_taken", "");
    let after = app
        .get(&format!("/api/v1/workflow/fetch/{b_id}"), key)
        .await;
    assert_eq!(after.body["version_status"], "published", "{}", after.text);
    assert_eq!(after.body["workflow_definition"], b["workflow_definition"]);
    let versions = app
        .get(&format!("/api/v1/workflow/{b_id}/versions"), key)
        .await;
    assert_eq!(
        versions.body.as_array().unwrap().len(),
        1,
        "{}",
        versions.text
    );

    // A path the first agent no longer uses is still its own.
    let moved = definition_with_trigger(Some("moved-line"));
    save_draft(
        &app,
        key,
        t.agent_id,
        &json!({"workflow_definition": moved}),
    )
    .await;
    publish(&app, key, t.agent_id).await;
    let r = app
        .put(
            &format!("/api/v1/workflow/{b_id}"),
            key,
            &json!({"workflow_definition": definition_with_trigger(Some(&t.trigger_path))}),
        )
        .await;
    assert_problem(&r, 409, "trigger_path_taken", "");
    // Another organisation cannot take it either; its owner can take it back.
    let other = app.add_tenant("Globex").await;
    let r = app
        .post(
            "/api/v1/workflow/create/definition",
            &other.api_key,
            &json!({"name": "Globex copy", "workflow_definition": definition_with_trigger(Some("moved-line"))}),
        )
        .await;
    assert_problem(&r, 409, "trigger_path_taken", "");
    let back = definition_with_trigger(Some(&t.trigger_path));
    save_draft(&app, key, t.agent_id, &json!({"workflow_definition": back})).await;
}

#[tokio::test]
async fn an_invalid_trigger_path_is_422_on_save_and_on_create() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    for bad in [
        "has space",
        "slash/inside",
        "x".repeat(37).as_str(),
        "ünïcode",
    ] {
        let r = app
            .put(
                &format!("/api/v1/workflow/{}", t.agent_id),
                &t.api_key,
                &json!({"workflow_definition": definition_with_trigger(Some(bad))}),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(r.text.contains("trigger_path"), "{}", r.text);
        let r = app
            .post(
                "/api/v1/workflow/create/definition",
                &t.api_key,
                &json!({"name": "Bad", "workflow_definition": definition_with_trigger(Some(bad))}),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
    }
    let versions = app
        .get(
            &format!("/api/v1/workflow/{}/versions", t.agent_id),
            &t.api_key,
        )
        .await;
    assert_eq!(
        versions.body.as_array().unwrap().len(),
        1,
        "a refused save made a draft"
    );
    let list = app.get("/api/v1/workflow/fetch", &t.api_key).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn publishing_an_invalid_graph_is_422_with_every_error_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let mut def = definition_with_trigger(Some(&t.trigger_path));
    // No startCall, an edge to nowhere and an endCall with an outgoing edge.
    def["nodes"][0]["type"] = json!("agentNode");
    def["edges"] = json!([
        {"id": "e1", "source": "start", "target": "ghost", "data": {"label": "x", "condition": "x"}},
        {"id": "e2", "source": "end", "target": "start", "data": {"label": "y", "condition": "y"}}
    ]);
    // Saving only checks storage rules.
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"workflow_definition": def}),
    )
    .await;
    let r = app
        .post(
            &format!("/api/v1/workflow/{}/publish", t.agent_id),
            &t.api_key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.body["is_valid"], false, "{}", r.text);
    let errors = r.body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{}", r.text);
    for e in errors {
        for field in ["kind", "id", "field", "message"] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    let has = |kind: &str, id: Option<&str>, field: &str| {
        errors
            .iter()
            .any(|e| e["kind"] == kind && e["field"] == field && id.is_none_or(|i| e["id"] == i))
    };
    assert!(
        has("graph", None, "nodes"),
        "no startCall not reported: {}",
        r.text
    );
    assert!(
        has("edge", Some("e1"), "target"),
        "dangling edge not reported: {}",
        r.text
    );
    assert!(
        has("edge", Some("e2"), "source"),
        "endCall edge not reported: {}",
        r.text
    );

    let versions = app
        .get(
            &format!("/api/v1/workflow/{}/versions", t.agent_id),
            &t.api_key,
        )
        .await;
    let statuses: Vec<&str> = versions
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["draft", "published"], "{}", versions.text);
    assert_eq!(app.trigger(&ok_body()).await.body["agent_version"], 1);
}

#[tokio::test]
async fn publishing_without_a_draft_is_400_no_draft() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let r = app
        .post(
            &format!("/api/v1/workflow/{}/publish", t.agent_id),
            &t.api_key,
            &json!({}),
        )
        .await;
    assert_problem(&r, 400, "no_draft", "No draft to publish");
    // Publishing twice: the second has nothing left to publish.
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"workflow_definition": definition_with_trigger(Some(&t.trigger_path))}),
    )
    .await;
    publish(&app, &t.api_key, t.agent_id).await;
    let r = app
        .post(
            &format!("/api/v1/workflow/{}/publish", t.agent_id),
            &t.api_key,
            &json!({}),
        )
        .await;
    assert_problem(&r, 400, "no_draft", "No draft to publish");
}

#[tokio::test]
async fn the_versions_list_shows_draft_published_and_archived_with_published_at() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let path = format!("/api/v1/workflow/{}/versions", t.agent_id);
    let statuses = |v: &Value| -> Vec<(i64, String, bool)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["version_number"].as_i64().unwrap(),
                    x["status"].as_str().unwrap().to_owned(),
                    x["published_at"].is_string(),
                )
            })
            .collect()
    };
    let v = app.get(&path, &t.api_key).await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(statuses(&v.body), [(1, "published".to_owned(), true)]);

    edit_greeting(&app).await;
    let v = app.get(&path, &t.api_key).await;
    assert_eq!(
        statuses(&v.body),
        [
            (2, "draft".to_owned(), false),
            (1, "published".to_owned(), true)
        ]
    );
    let v1_published_at = v.body[1]["published_at"].clone();

    publish(&app, &t.api_key, t.agent_id).await;
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"name": "Renamed only"}),
    )
    .await;
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"template_context_variables": {"a": 1}}),
    )
    .await;
    let v = app.get(&path, &t.api_key).await;
    assert_eq!(
        statuses(&v.body),
        [
            (3, "draft".to_owned(), false),
            (2, "published".to_owned(), true),
            (1, "archived".to_owned(), true)
        ],
        "{}",
        v.text
    );
    assert_eq!(
        v.body[2]["published_at"], v1_published_at,
        "archiving rewrote published_at"
    );
    assert!(
        v.body[1]["published_at"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    assert_eq!(
        v.body[0]["workflow_definition"]["nodes"][0]["data"]["greeting"], DRAFT_GREETING,
        "a new draft starts from the published definition"
    );
}

#[tokio::test]
async fn the_triggers_endpoint_gives_absolute_urls_and_where_each_path_is_live() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let url = format!("/api/v1/workflow/{}/triggers", t.agent_id);
    let r = app.get(&url, &t.api_key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["workflow_production_url"],
        app.url(&format!(
            "/api/v1/public/agent/workflow/{}",
            t.workflow_uuid
        ))
    );
    assert_eq!(
        r.body["workflow_test_url"],
        app.url(&format!(
            "/api/v1/public/agent/test/workflow/{}",
            t.workflow_uuid
        ))
    );
    let triggers = r.body["triggers"].as_array().unwrap();
    assert_eq!(triggers.len(), 1);
    let tr = &triggers[0];
    assert_eq!(tr["trigger_path"], t.trigger_path);
    assert_eq!(
        tr["production_url"],
        app.url(&format!("/api/v1/public/agent/{}", t.trigger_path))
    );
    assert_eq!(
        tr["test_url"],
        app.url(&format!("/api/v1/public/agent/test/{}", t.trigger_path))
    );
    assert_eq!(tr["live_in_production"], true);
    assert_eq!(tr["live_in_test"], true);
    // The URLs really work.
    let r = app
        .send(
            app.client
                .post(tr["test_url"].as_str().unwrap())
                .header("X-API-Key", &t.api_key)
                .json(&ok_body()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A draft moving to a new path: the old one stays live in production only.
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"workflow_definition": definition_with_trigger(Some("new-line"))}),
    )
    .await;
    let r = app.get(&url, &t.api_key).await;
    let find = |p: &str| {
        r.body["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["trigger_path"] == p)
            .cloned()
            .unwrap()
    };
    let old = find(&t.trigger_path);
    assert_eq!(
        (
            old["live_in_production"].clone(),
            old["live_in_test"].clone()
        ),
        (json!(true), json!(false))
    );
    let new = find("new-line");
    assert_eq!(
        (
            new["live_in_production"].clone(),
            new["live_in_test"].clone()
        ),
        (json!(false), json!(true))
    );

    // A disabled trigger is not live; an archived agent has nothing live.
    let mut disabled = definition_with_trigger(Some("new-line"));
    disabled["nodes"][2]["data"]["enabled"] = json!(false);
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"workflow_definition": disabled}),
    )
    .await;
    let r = app.get(&url, &t.api_key).await;
    let new = r.body["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["trigger_path"] == "new-line")
        .cloned()
        .unwrap();
    assert_eq!(new["live_in_test"], false, "{}", r.text);
    app.post(
        &format!("/api/v1/workflow/{}/archive", t.agent_id),
        &t.api_key,
        &json!({}),
    )
    .await;
    let r = app.get(&url, &t.api_key).await;
    for tr in r.body["triggers"].as_array().unwrap() {
        assert_eq!(tr["live_in_production"], false, "{}", r.text);
        assert_eq!(tr["live_in_test"], false, "{}", r.text);
    }
}

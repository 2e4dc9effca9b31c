//! The runs API (SPEC §4): list filters and cursor paging, Dograh's run views, and the two other
//! ways to place a call: the outbound API (§3) and Dograh's initiate-call (§6.3).

use crate::support::{
    assert_problem, create_agent, definition_with_greeting, ok_body, run_of, runs, save_draft,
    set_calls_per_second, three_calls_behind_a_slow_rate,
};
use callgate_testkit::{Options, TestApp, definition_with_trigger};
use serde_json::{Value, json};

fn ids(r: &Value) -> Vec<i64> {
    r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["workflow_run_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_runs_list_filters_by_status_outcome_agent_external_id_phone_and_time() {
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 10, "talk_ms": 30, "rules": [{"match": "+14155550101", "outcome": "busy"}]}),
        ..Options::default()
    })
    .await;
    let key = &app.tenant.api_key;
    let second = create_agent(
        &app,
        key,
        "Second",
        definition_with_trigger(Some("second-line")),
    )
    .await;
    let second_id = second["id"].as_i64().unwrap();
    let mut made = Vec::new();
    for (path, phone, ext) in [
        (app.tenant.trigger_path.as_str(), "+14155550100", "a"),
        (app.tenant.trigger_path.as_str(), "+14155550101", "b"),
        ("second-line", "+14155550100", "c"),
    ] {
        let r = app
            .post(
                &format!("/api/v1/public/agent/{path}"),
                key,
                &json!({"phone_number": phone, "external_id": ext}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        made.push((
            r.body["workflow_run_id"].as_i64().unwrap(),
            r.body["call_id"].as_str().unwrap().to_owned(),
        ));
    }
    for (_, call_id) in &made {
        app.wait_for_end(key, call_id).await;
    }
    let list = |q: &'static str| {
        let app = &app;
        async move {
            let r = app.get(&format!("/api/v1/calls?{q}"), key).await;
            assert_eq!(r.status, 200, "{q}: {}", r.text);
            ids(&r.body)
        }
    };
    let (a, b, c) = (made[0].0, made[1].0, made[2].0);
    assert_eq!(list("").await, [c, b, a], "newest first");
    assert_eq!(list("status=ended").await, [c, b, a]);
    assert_eq!(list("status=queued").await, Vec::<i64>::new());
    assert_eq!(list("outcome=busy").await, [b]);
    assert_eq!(list("outcome=completed").await, [c, a]);
    let by_agent = app
        .get(&format!("/api/v1/calls?agent_id={second_id}"), key)
        .await;
    assert_eq!(ids(&by_agent.body), [c]);
    assert_eq!(list("external_id=b").await, [b]);
    assert_eq!(list("phone_number=%2B14155550101").await, [b]);
    assert_eq!(
        list("phone_number=%2B1%20415%20555%200100").await,
        [c, a],
        "formatting is normalised"
    );
    assert_eq!(
        list("outcome=completed&agent_id=999999").await,
        Vec::<i64>::new()
    );
    assert_eq!(list("created_after=2000-01-01T00:00:00Z").await, [c, b, a]);
    assert_eq!(
        list("created_after=2999-01-01T00:00:00Z").await,
        Vec::<i64>::new()
    );
    assert_eq!(
        list("created_before=2000-01-01T00:00:00Z").await,
        Vec::<i64>::new()
    );
    let first = app.get(&format!("/api/v1/calls/{}", made[0].1), key).await;
    let created: jiff::Timestamp = first.body["created_at"].as_str().unwrap().parse().unwrap();
    let after = format!(
        "created_after={}",
        urlencode(&(created + jiff::SignedDuration::from_micros(1)).to_string())
    );
    let r = app.get(&format!("/api/v1/calls?{after}"), key).await;
    assert!(
        !ids(&r.body).contains(&a),
        "created_after included an older run: {}",
        r.text
    );

    for bad in [
        "status=flying",
        "outcome=great",
        "created_after=yesterday",
        "limit=0",
        "limit=101",
        "cursor=abc",
        "agent_id=x",
    ] {
        let r = app.get(&format!("/api/v1/calls?{bad}"), key).await;
        assert_problem(&r, 422, "invalid_query", "");
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn the_runs_list_pages_with_a_cursor() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    for _ in 0..5 {
        assert_eq!(app.trigger(&ok_body()).await.status, 200);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/calls?limit=2&cursor={c}"),
            None => "/api/v1/calls?limit=2".to_owned(),
        };
        let r = app.get(&q, key).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = ids(&r.body);
        assert!(page.len() <= 2);
        seen.extend(page);
        pages += 1;
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(r.body["next_cursor"].is_null(), "{}", r.text);
                break;
            }
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    let all = ids(&app.get("/api/v1/calls", key).await.body);
    assert_eq!(seen, all, "pages skipped or repeated runs");
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0] > w[1]));
    // An exact fit has no next page.
    let r = app.get("/api/v1/calls?limit=5", key).await;
    assert!(r.body["next_cursor"].is_null(), "{}", r.text);
}

const DOGRAH_RUN_FIELDS: [&str; 15] = [
    "id",
    "workflow_id",
    "name",
    "mode",
    "is_completed",
    "transcript_url",
    "recording_url",
    "cost_info",
    "usage_info",
    "definition_id",
    "call_type",
    "initial_context",
    "gathered_context",
    "logs",
    "created_at",
];

#[tokio::test]
async fn dograhs_run_view_shows_one_run_of_its_workflow_only() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let agent = app.tenant.agent_id;
    let r = app.trigger(&ok_body()).await;
    let call_id = r.body["call_id"].as_str().unwrap().to_owned();
    let run_id = r.body["workflow_run_id"].as_i64().unwrap();
    app.wait_for_end(key, &call_id).await;
    let v = app
        .get(&format!("/api/v1/workflow/{agent}/runs/{run_id}"), key)
        .await;
    assert_eq!(v.status, 200, "{}", v.text);
    for f in DOGRAH_RUN_FIELDS {
        assert!(v.body.get(f).is_some(), "{f} missing: {}", v.text);
    }
    assert_eq!(v.body["id"], run_id);
    assert_eq!(v.body["workflow_id"], agent);
    assert_eq!(v.body["name"], format!("WR-API-{run_id:04}"));
    assert_eq!(v.body["is_completed"], true);
    assert_eq!(v.body["call_id"], call_id);
    assert_eq!(v.body["outcome"], "completed");
    assert_eq!(v.body["initial_context"]["customer_name"], "Jane");
    assert_eq!(v.body["initial_context"]["workflow_run_id"], run_id);

    // A run of another workflow of the same organisation is not found under this one.
    create_agent(
        &app,
        key,
        "Second",
        definition_with_trigger(Some("second-line")),
    )
    .await;
    let other = app
        .post("/api/v1/public/agent/second-line", key, &ok_body())
        .await;
    let other_id = other.body["workflow_run_id"].as_i64().unwrap();
    let r = app
        .get(&format!("/api/v1/workflow/{agent}/runs/{other_id}"), key)
        .await;
    assert_problem(&r, 404, "workflow_run_not_found", "Workflow run not found");
    let r = app
        .get(&format!("/api/v1/workflow/{agent}/runs/999999"), key)
        .await;
    assert_problem(&r, 404, "workflow_run_not_found", "Workflow run not found");
}

#[tokio::test]
async fn a_context_sent_with_spaces_escapes_and_a_repeated_name_reads_back_as_its_object() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let body = concat!(
        "{ \"phone_number\" : \"+14155550100\",\n",
        "  \"initial_context\" : {\n",
        "    \"customer_name\" : \"Jos\\u00e9\",\n",
        "    \"visits\" : [ { \"on\" : \"2026-11-02\" } , 2.50 ],\n",
        "    \"customer_name\" : \"Ana\\\"s\"\n",
        "  }\n",
        "}"
    );
    let r = app
        .send(
            app.client
                .post(app.url(&format!("/api/v1/public/agent/{}", app.tenant.trigger_path)))
                .header("X-API-Key", key)
                .header("Content-Type", "application/json")
                .body(body),
        )
        .await;
    let run = run_of(&app, key, &r).await;
    // The last value of a repeated name, in its first place; numbers and nesting as sent.
    let ctx = run["initial_context"].as_object().unwrap();
    assert_eq!(ctx["customer_name"], "Ana\"s");
    assert_eq!(ctx["visits"], json!([{"on": "2026-11-02"}, 2.5]));
    assert_eq!(
        ctx.keys().take(2).collect::<Vec<_>>(),
        ["customer_name", "visits"]
    );
    assert_eq!(run["greeting"], "Hi Ana\"s, this is Ava.");
}

#[tokio::test]
async fn dograhs_run_list_pages_by_page_and_limit() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let agent = app.tenant.agent_id;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(
            app.trigger(&ok_body()).await.body["workflow_run_id"]
                .as_i64()
                .unwrap(),
        );
    }
    create_agent(
        &app,
        key,
        "Second",
        definition_with_trigger(Some("second-line")),
    )
    .await;
    app.post("/api/v1/public/agent/second-line", key, &ok_body())
        .await;
    let page = |n: u32| {
        let app = &app;
        async move {
            let r = app
                .get(
                    &format!("/api/v1/workflow/{agent}/runs?page={n}&limit=2"),
                    key,
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.body["page"], n);
            assert_eq!(r.body["limit"], 2);
            r.body["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(1).await, [made[2], made[1]]);
    assert_eq!(page(2).await, [made[0]]);
    assert_eq!(page(3).await, Vec::<i64>::new());
    let r = app.get("/api/v1/workflow/999999/runs", key).await;
    assert_problem(&r, 404, "workflow_not_found", "Workflow not found");
}

#[tokio::test]
async fn the_outbound_api_places_a_call_by_agent_id_or_uuid() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    for agent_ref in [
        json!(t.agent_id),
        json!(t.workflow_uuid),
        json!(t.agent_id.to_string()),
    ] {
        let r = app
            .post(
                "/api/v1/calls/outbound",
                &t.api_key,
                &json!({"agent_id": agent_ref, "to_number": "+1 415 555 0100"}),
            )
            .await;
        assert_eq!(r.status, 200, "{agent_ref}: {}", r.text);
        for f in [
            "call_id",
            "status",
            "agent_id",
            "to_number",
            "from_number",
            "queued_at",
        ] {
            assert!(r.body.get(f).is_some(), "{f} missing: {}", r.text);
        }
        assert_eq!(r.body["status"], "queued");
        assert_eq!(r.body["agent_id"], agent_ref, "agent_id is echoed as sent");
        assert_eq!(r.body["to_number"], "+14155550100");
        assert!(r.body["from_number"].is_null(), "{}", r.text);
        r.body["queued_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap();
        let run = run_of(&app, &t.api_key, &r).await;
        assert_eq!(run["agent_id"], t.agent_id);
        assert_eq!(run["trigger_mode"], "production");
        assert_eq!(run["phone_number"], "+14155550100");
    }
}

#[tokio::test]
async fn the_outbound_api_runs_the_published_version_and_appends_its_context() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let def = definition_with_greeting(&t.trigger_path, "Draft greeting");
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"workflow_definition": def}),
    )
    .await;
    let body = json!({"agent_id": t.agent_id, "to_number": "+14155550100",
                      "variables": {"customer_name": "Ola"}, "context": "The customer {{customer_name}} is a VIP."});
    let r = app.post("/api/v1/calls/outbound", &t.api_key, &body).await;
    let run = run_of(&app, &t.api_key, &r).await;
    assert_eq!(run["agent_version"], 1);
    assert_eq!(run["greeting"], "Hi Ola, this is Ava.");
    let r = app
        .post("/api/v1/calls/outbound?dry_run=true", &t.api_key, &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let prompts = r.body["rendered_prompts"].as_array().unwrap();
    assert!(
        prompts
            .iter()
            .any(|p| p["text"] == "The customer Ola is a VIP."),
        "context not rendered into the prompts: {}",
        r.text
    );
}

#[tokio::test]
async fn the_outbound_api_uses_from_number_to_pick_the_configuration() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let c = app
        .post(
            "/api/v1/organizations/telephony-configs",
            &t.api_key,
            &json!({"name": "Sim 2", "provider": "simulator", "credentials": {}}),
        )
        .await;
    let second = c.body["id"].as_i64().unwrap();
    let n = app
        .post(
            &format!("/api/v1/organizations/telephony-configs/{second}/phone-numbers"),
            &t.api_key,
            &json!({"address": "+14155550142"}),
        )
        .await;
    assert_eq!(n.status, 201, "{}", n.text);
    let r = app
        .post(
            "/api/v1/calls/outbound",
            &t.api_key,
            &json!({"agent_id": t.agent_id, "to_number": "+14155550100", "from_number": "+14155550142"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["from_number"], "+14155550142");
    let run = run_of(&app, &t.api_key, &r).await;
    assert_eq!(run["telephony_configuration_id"], second);
    assert_eq!(run["from_number"], "+14155550142");
}

#[tokio::test]
async fn the_outbound_api_refuses_bad_numbers_unknown_agents_and_missing_keys() {
    let app = TestApp::spawn().await;
    let other = app.add_tenant("Globex").await;
    let t = &app.tenant;
    let ob = "/api/v1/calls/outbound";
    let body = |v: Value| {
        let mut b = json!({"agent_id": t.agent_id, "to_number": "+14155550100"});
        for (k, x) in v.as_object().unwrap() {
            b[k] = x.clone();
        }
        b
    };
    let r = app
        .post(
            ob,
            &t.api_key,
            &body(json!({"from_number": "+14155550999"})),
        )
        .await;
    assert_problem(&r, 422, "invalid_phone", "");
    let r = app
        .post(ob, &t.api_key, &body(json!({"from_number": "nope"})))
        .await;
    assert_problem(&r, 422, "invalid_phone", "");
    for bad in ["123", "+1", "+15550001234"] {
        let r = app
            .post(ob, &t.api_key, &body(json!({"to_number": bad})))
            .await;
        assert_problem(&r, 422, "invalid_phone", "");
    }
    let r = app
        .post(ob, &t.api_key, &json!({"agent_id": t.agent_id}))
        .await;
    assert_problem(&r, 422, "invalid_phone", "");
    for agent in [
        json!(999999),
        json!("3f2a1c4d-0000-4000-8000-000000000000"),
        json!("nobody"),
        json!(other.agent_id),
        json!(other.workflow_uuid),
    ] {
        let r = app
            .post(ob, &t.api_key, &body(json!({"agent_id": agent})))
            .await;
        assert_problem(&r, 404, "not_found", "");
    }
    app.post(
        &format!("/api/v1/workflow/{}/archive", t.agent_id),
        &t.api_key,
        &json!({}),
    )
    .await;
    let r = app.post(ob, &t.api_key, &body(json!({}))).await;
    assert_problem(&r, 404, "not_found", "");
    let r = app
        .send(app.client.post(app.url(ob)).json(&body(json!({}))))
        .await;
    assert_problem(&r, 401, "unauthorized", "");
    let r = app.post(ob, "cg_wrong", &body(json!({}))).await;
    assert_problem(&r, 401, "unauthorized", "");
    assert!(
        runs(&app, &t.api_key).await.is_empty(),
        "a refused outbound call created a run"
    );
}

#[tokio::test]
async fn initiate_call_runs_the_draft_like_the_test_route() {
    let app = TestApp::spawn().await;
    let t = &app.tenant;
    let def = definition_with_greeting(&t.trigger_path, "Draft hello {{customer_name}}");
    save_draft(
        &app,
        &t.api_key,
        t.agent_id,
        &json!({"workflow_definition": def}),
    )
    .await;
    let r = app
        .post(
            "/api/v1/telephony/initiate-call",
            &t.api_key,
            &json!({"workflow_id": t.agent_id, "phone_number": "+14155550100", "telephony_configuration_id": t.config_id}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let run_id = r.body["workflow_run_id"].as_i64().unwrap();
    assert_eq!(
        r.body["message"],
        format!("Call initiated successfully with run name WR-TEST-{run_id:04}")
    );
    let run = run_of(&app, &t.api_key, &r).await;
    assert_eq!(run["trigger_mode"], "test");
    assert_eq!(run["agent_version"], 2);
    assert_eq!(run["greeting"], "Draft hello ");
    assert_eq!(run["name"], format!("WR-TEST-{run_id:04}"));

    let ic = "/api/v1/telephony/initiate-call";
    let r = app
        .post(
            ic,
            &t.api_key,
            &json!({"workflow_id": 999999, "phone_number": "+14155550100"}),
        )
        .await;
    assert_problem(&r, 404, "workflow_not_found", "Workflow not found");
    let r = app
        .post(
            ic,
            &t.api_key,
            &json!({"workflow_id": t.agent_id, "phone_number": "12"}),
        )
        .await;
    assert_problem(
        &r,
        422,
        "invalid_phone_number",
        "Invalid phone number format",
    );
    let r = app
        .post(ic, &t.api_key, &json!({"phone_number": "+14155550100"}))
        .await;
    assert_problem(&r, 422, "invalid_body", "");
    assert_eq!(runs(&app, &t.api_key).await.len(), 1);
}

#[tokio::test]
async fn a_queued_call_is_canceled_never_dialled_and_frees_its_queue_place() {
    let (app, mut ids) = three_calls_behind_a_slow_rate().await;
    let key = app.tenant.api_key.clone();
    app.admin(
        reqwest::Method::PUT,
        &format!("/api/v1/admin/organizations/{}/settings", app.tenant.org_id),
        &json!({"on_capacity": "queue", "max_queued_calls": 2}),
    )
    .await;
    let queue_full = app.trigger(&json!({"phone_number": "+14155550100"})).await;
    assert_problem(
        &queue_full,
        429,
        "concurrency_limit_reached",
        "Concurrent call limit reached",
    );

    let cancel = |id: &str| format!("/api/v1/calls/{id}/cancel");
    let r = app.post(&cancel(&ids[1]), &key, &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["call_id"], ids[1].as_str());
    assert_eq!(r.body["status"], "ended");
    assert_eq!(r.body["outcome"], "canceled");
    assert_eq!(r.body["ended_reason"], "canceled");
    assert!(r.body["dialed_at"].is_null(), "{}", r.text);
    let events = r.body["events"].as_array().unwrap();
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "ended"]);
    assert_eq!(
        events[1]["detail"],
        "canceled through the API before it was dialled"
    );
    // The answer is what the calls API shows from now on.
    let stored = app.get(&format!("/api/v1/calls/{}", ids[1]), &key).await;
    assert_eq!(stored.body, r.body);

    // Its place in the queue is free again.
    let r = app.trigger(&json!({"phone_number": "+14155550100"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    ids.push(r.body["call_id"].as_str().unwrap().to_owned());

    // Canceled already, or dialled: 409 with the run's status.
    for (id, status) in [(&ids[1], "ended"), (&ids[0], "ended")] {
        let r = app.post(&cancel(id), &key, &json!({})).await;
        assert_eq!(r.status, 409, "{}", r.text);
        assert_eq!(r.body["code"], "not_cancelable");
        assert_eq!(r.body["status"], 409);
        assert_eq!(r.body["call_status"], status);
    }
    // Unknown, malformed, or another organisation's: not found.
    let other = app.add_tenant("Globex").await;
    for (id, k) in [
        (ids[2].as_str(), other.api_key.as_str()),
        ("5b0d3a56-1b2c-4d5e-8f90-123456789abc", key.as_str()),
        ("not-a-uuid", key.as_str()),
    ] {
        assert_problem(
            &app.post(&cancel(id), k, &json!({})).await,
            404,
            "call_not_found",
            "Call not found",
        );
    }
    // A key scoped to other agents may not cancel this agent's calls.
    let scoped = app
        .post(
            "/api/v1/user/api-keys",
            &key,
            &json!({"name": "other agent", "scopes": {"agents": [999]}}),
        )
        .await;
    let scoped = scoped.body["api_key"].as_str().unwrap().to_owned();
    let r = app.post(&cancel(&ids[2]), &scoped, &json!({})).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("forbidden_scope"))
    );
    assert_eq!(
        app.get(&format!("/api/v1/calls/{}", ids[2]), &key)
            .await
            .body["status"],
        "queued"
    );

    // The queue moves on without the canceled call.
    set_calls_per_second(&app, 100.0).await;
    for id in [&ids[2], &ids[3]] {
        assert_eq!(app.wait_for_end(&key, id).await["outcome"], "completed");
    }
    let canceled = app.get(&format!("/api/v1/calls/{}", ids[1]), &key).await;
    assert_eq!(
        canceled.body, stored.body,
        "a canceled call is never dialled"
    );
}

/// Triggers a call on the default tenant; its `call_id`.
async fn place_call(app: &TestApp) -> String {
    let r = app.trigger(&json!({"phone_number": "+14155550100"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["call_id"].as_str().unwrap().to_owned()
}

/// Polls the call until it has `status`.
async fn wait_for_status(app: &TestApp, key: &str, call_id: &str, status: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = app.get(&format!("/api/v1/calls/{call_id}"), key).await;
        if r.body["status"] == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "call {call_id} never reached {status}: {}",
            r.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_live_call_is_hung_up_through_its_provider_ringing_or_answered() {
    // Calls ring for a minute: the first is hung up while ringing.
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 60_000, "talk_ms": 60_000}),
        ..Options::default()
    })
    .await;
    let key = app.tenant.api_key.clone();
    let hangup = |id: &str| format!("/api/v1/calls/{id}/hangup");
    let ringing = place_call(&app).await;
    wait_for_status(&app, &key, &ringing, "ringing").await;
    // The configuration changes while that call plays: the next calls are answered at once,
    // by a simulator built from the new credentials, which must still reach the first call.
    let put = app
        .put(
            &format!(
                "/api/v1/organizations/telephony-configs/{}",
                app.tenant.config_id
            ),
            &key,
            &json!({"credentials": {"ring_ms": 10, "talk_ms": 60_000}}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let answered = place_call(&app).await;
    wait_for_status(&app, &key, &answered, "in_progress").await;

    let r = app.post(&hangup(&ringing), &key, &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["call_id"], ringing.as_str());
    let ended = app.wait_for_end(&key, &ringing).await;
    assert_eq!(ended["outcome"], "canceled", "{ended}");
    assert_eq!(ended["ended_reason"], "api_hangup");
    assert!(ended["answered_at"].is_null(), "{ended}");

    let r = app.post(&hangup(&answered), &key, &json!({})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["status"], "in_progress");
    let ended = app.wait_for_end(&key, &answered).await;
    assert_eq!(ended["outcome"], "completed", "{ended}");
    assert_eq!(ended["ended_reason"], "api_hangup");
    // Only the greeting was said; the call lasted what it lasted, not the minute it would have.
    let transcript = ended["transcript"].as_array().unwrap();
    assert_eq!(transcript.len(), 1, "{ended}");
    assert_eq!(transcript[0]["role"], "agent");
    assert!(ended["duration_seconds"].as_i64().unwrap() <= 10, "{ended}");
    assert_eq!(app.state.simulated.len(), 0, "no call is left playing");

    // Ended calls, other organisations' and unknown ids.
    let r = app.post(&hangup(&answered), &key, &json!({})).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        (r.body["code"].as_str(), r.body["call_status"].as_str()),
        (Some("not_live"), Some("ended"))
    );
    let other = app.add_tenant("Globex").await;
    assert_problem(
        &app.post(&hangup(&answered), &other.api_key, &json!({}))
            .await,
        404,
        "call_not_found",
        "Call not found",
    );
}

#[tokio::test]
async fn a_queued_call_cannot_be_hung_up_only_canceled() {
    let (app, ids) = three_calls_behind_a_slow_rate().await;
    let key = app.tenant.api_key.clone();
    let r = app
        .post(
            &format!("/api/v1/calls/{}/hangup", ids[1]),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        (r.body["code"].as_str(), r.body["call_status"].as_str()),
        (Some("not_live"), Some("queued"))
    );
    assert!(
        r.body["detail"].as_str().unwrap().contains("cancel"),
        "{}",
        r.text
    );
    let r = app
        .post(
            &format!("/api/v1/calls/{}/cancel", ids[1]),
            &key,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

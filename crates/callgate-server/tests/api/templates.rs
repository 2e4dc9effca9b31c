//! Template rendering seen on real runs (SPEC §2.4, §5): prefixes, paths, fallbacks, JSON
//! values, literal values, built-ins, system values, unresolved names, greeting overrides,
//! system values the caller cannot override, metadata and external ids.

use crate::support::{create_agent, definition_with_greeting, run, run_of, runs};
use callgate_testkit::TestApp;
use serde_json::{Value, json};

/// A new published agent whose greeting is `greeting` (and, optionally, whose start prompt is
/// `prompt`); returns its production trigger URL path.
async fn agent_greeting(app: &TestApp, path: &str, greeting: &str, prompt: Option<&str>) -> String {
    let mut def = definition_with_greeting(path, greeting);
    if let Some(p) = prompt {
        def["nodes"][0]["data"]["prompt"] = json!(p);
    }
    create_agent(app, &app.tenant.api_key, &format!("Agent {path}"), def).await;
    format!("/api/v1/public/agent/{path}")
}

/// Triggers `url` with `context` and returns the run.
async fn run_with(app: &TestApp, url: &str, context: Value) -> Value {
    let r = app
        .post(
            url,
            &app.tenant.api_key,
            &json!({"phone_number": "+14155550100", "initial_context": context}),
        )
        .await;
    run_of(app, &app.tenant.api_key, &r).await
}

#[tokio::test]
async fn prefixed_names_dotted_paths_and_fallbacks_resolve_on_the_run() {
    let app = TestApp::spawn().await;
    let url = agent_greeting(
        &app,
        "paths",
        "A={{initial_context.x}} B={{ user.address.city }} C={{ nick | friend }} D={{initial_context.user.address.zip}} E={{ empty | none }}",
        None,
    )
    .await;
    let run = run_with(
        &app,
        &url,
        json!({"x": "1", "user": {"address": {"city": "Lyon", "zip": "69001"}}, "empty": ""}),
    )
    .await;
    assert_eq!(run["greeting"], "A=1 B=Lyon C=friend D=69001 E=none");
    assert_eq!(run["unresolved_variables"], json!([]));
}

#[tokio::test]
async fn objects_render_as_json_and_values_are_inserted_literally() {
    let app = TestApp::spawn().await;
    let url = agent_greeting(
        &app,
        "values",
        "O={{o}} N={{n}} B={{b}} A={{a}} V={{v}}",
        None,
    )
    .await;
    let run = run_with(
        &app,
        &url,
        json!({"o": {"k": [1, "v"]}, "n": 42, "b": true, "a": [1, 2], "v": "{{secret}}", "secret": "s3cr3t"}),
    )
    .await;
    assert_eq!(
        run["greeting"],
        r#"O={"k":[1,"v"]} N=42 B=true A=[1,2] V={{secret}}"#
    );
    assert_eq!(run["unresolved_variables"], json!([]));
}

#[tokio::test]
async fn built_ins_and_system_values_are_usable_in_templates() {
    let app = TestApp::spawn().await;
    let url = agent_greeting(
        &app,
        "builtins",
        "T={{current_time_America/New_York}}|U={{current_time}}|P={{called_number}}|R={{workflow_run_id}}|C={{call_id}}|M={{trigger_mode}}|W={{current_weekday}}",
        None,
    )
    .await;
    let run = run_with(&app, &url, json!({})).await;
    let greeting = run["greeting"].as_str().unwrap();
    let parts: Vec<&str> = greeting.split('|').collect();
    assert_eq!(parts.len(), 7, "{greeting}");
    let ny = parts[0].strip_prefix("T=").unwrap();
    assert!(
        ny.ends_with(" EDT") || ny.ends_with(" EST"),
        "New York time has no zone abbreviation: {greeting}"
    );
    assert_eq!(ny.len(), "2024-03-11 10:05:09 EDT".len(), "{greeting}");
    assert!(parts[1].ends_with(" UTC"), "{greeting}");
    assert_ne!(
        &parts[0][2..21],
        &parts[1][2..21],
        "New York time equals UTC: {greeting}"
    );
    assert_eq!(parts[2], "P=+14155550100");
    assert_eq!(parts[3], format!("R={}", run["workflow_run_id"]));
    assert_eq!(parts[4], format!("C={}", run["call_id"].as_str().unwrap()));
    assert_eq!(parts[5], "M=production");
    let days = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    assert!(days.contains(&&parts[6][2..]), "{greeting}");
    assert_eq!(run["unresolved_variables"], json!([]));
}

#[tokio::test]
async fn missing_names_in_the_greeting_and_prompts_are_recorded_once_each() {
    let app = TestApp::spawn().await;
    let url = agent_greeting(
        &app,
        "missing",
        "Hi {{first}} {{last}} {{first}}!",
        Some("Talk about {{topic}}; say {{ thing | hello }}; mention {{last}}."),
    )
    .await;
    let run = run_with(&app, &url, json!({"unrelated": 1})).await;
    assert_eq!(run["greeting"], "Hi   !");
    assert_eq!(
        run["unresolved_variables"],
        json!(["first", "last", "topic"])
    );
}

#[tokio::test]
async fn first_message_overrides_the_greeting_and_is_templated() {
    let app = TestApp::spawn().await;
    let r = app
        .trigger(&json!({
            "phone_number": "+14155550100",
            "initial_context": {"customer_name": "Jane"},
            "first_message": "Hey {{customer_name}}, quick question about {{order | your order}}."
        }))
        .await;
    let created = run_of(&app, &app.tenant.api_key, &r).await;
    assert_eq!(
        created["greeting"],
        "Hey Jane, quick question about your order."
    );
    // What the person hears is the override.
    let ended = app
        .wait_for_end(&app.tenant.api_key, r.body["call_id"].as_str().unwrap())
        .await;
    assert_eq!(
        ended["transcript"][0]["text"],
        "Hey Jane, quick question about your order."
    );
}

#[tokio::test]
async fn dograh_greeting_override_in_the_context_is_honoured() {
    let app = TestApp::spawn().await;
    let r = app
        .trigger(&json!({
            "phone_number": "+14155550100",
            "initial_context": {
                "customer_name": "Jane",
                "greeting_override": {"type": "text", "text": "Override for {{customer_name}}."}
            }
        }))
        .await;
    let created = run_of(&app, &app.tenant.api_key, &r).await;
    assert_eq!(created["greeting"], "Override for Jane.");
    // Only the `text` type is an override.
    let r = app
        .trigger(&json!({
            "phone_number": "+14155550100",
            "initial_context": {"customer_name": "Jane", "greeting_override": {"type": "audio", "url": "x"}}
        }))
        .await;
    assert_eq!(
        run_of(&app, &app.tenant.api_key, &r).await["greeting"],
        "Hi Jane, this is Ava."
    );
}

#[tokio::test]
async fn a_caller_cannot_override_system_values() {
    let app = TestApp::spawn().await;
    let url = agent_greeting(
        &app,
        "system",
        "Calling {{called_number}} as {{direction}}",
        None,
    )
    .await;
    let spoof = json!({
        "customer_name": "Jane",
        "called_number": "+19995550000",
        "workflow_run_id": 1,
        "call_id": "not-mine",
        "direction": "inbound",
        "trigger_mode": "test",
        "api_key_id": 999
    });
    let run = run_with(&app, &url, spoof).await;
    let ctx = &run["initial_context"];
    assert_eq!(ctx["called_number"], "+14155550100", "{ctx}");
    assert_eq!(ctx["workflow_run_id"], run["workflow_run_id"]);
    assert_eq!(ctx["call_id"], run["call_id"]);
    assert_eq!(ctx["direction"], "outbound");
    assert_eq!(ctx["trigger_mode"], "production");
    assert_ne!(ctx["api_key_id"], 999);
    assert_eq!(
        ctx["customer_name"], "Jane",
        "the caller's own values are kept"
    );
    assert_eq!(ctx["telephony_configuration_id"], app.tenant.config_id);
    assert_eq!(ctx["provider"], "simulator");
    assert_eq!(ctx["agent_identifier_type"], "trigger_path");
    assert_eq!(ctx["agent_identifier"], "system");
    assert_eq!(run["greeting"], "Calling +14155550100 as outbound");
}

#[tokio::test]
async fn metadata_is_echoed_unchanged_and_hidden_from_templates() {
    let app = TestApp::spawn().await;
    let url = agent_greeting(&app, "meta", "Hi {{customer_name}} {{crm.id}}", None).await;
    let metadata = json!({"crm": {"id": 7, "tags": ["a", "b"]}, "ratio": 1.5, "nothing": null});
    let r = app
        .post(
            &url,
            &app.tenant.api_key,
            &json!({"phone_number": "+14155550100", "initial_context": {"customer_name": "Jane"}, "metadata": metadata}),
        )
        .await;
    let created = run_of(&app, &app.tenant.api_key, &r).await;
    assert_eq!(created["metadata"], metadata);
    assert_eq!(created["greeting"], "Hi Jane ");
    assert_eq!(created["unresolved_variables"], json!(["crm.id"]));
    assert!(
        created["initial_context"].get("crm").is_none(),
        "metadata leaked into the context"
    );
    let ended = app
        .wait_for_end(&app.tenant.api_key, r.body["call_id"].as_str().unwrap())
        .await;
    assert_eq!(ended["metadata"], metadata);
}

#[tokio::test]
async fn external_ids_are_kept_and_filterable() {
    let app = TestApp::spawn().await;
    let key = &app.tenant.api_key;
    let mut ids = Vec::new();
    for ext in ["lead-42", "lead-43", "lead-42"] {
        let r = app
            .trigger(&json!({"phone_number": "+14155550100", "external_id": ext}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        ids.push(r.body["call_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(run(&app, key, &ids[1]).await["external_id"], "lead-43");
    let r = app.get("/api/v1/calls?external_id=lead-42", key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [ids[2].as_str(), ids[0].as_str()], "newest first");
    let r = app.get("/api/v1/calls?external_id=nobody", key).await;
    assert_eq!(r.body["data"], json!([]));
    assert_eq!(runs(&app, key).await.len(), 3);
}

#[tokio::test]
async fn the_outbound_api_renders_its_variables_and_first_message() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/api/v1/calls/outbound",
            &app.tenant.api_key,
            &json!({"agent_id": app.tenant.agent_id, "to_number": "+14155550100", "variables": {"customer_name": "Ola"}}),
        )
        .await;
    assert_eq!(
        run_of(&app, &app.tenant.api_key, &r).await["greeting"],
        "Hi Ola, this is Ava."
    );
    let r = app
        .post(
            "/api/v1/calls/outbound",
            &app.tenant.api_key,
            &json!({"agent_id": app.tenant.agent_id, "to_number": "+14155550100",
                    "variables": {"customer_name": "Ola"}, "first_message": "Yo {{customer_name}}"}),
        )
        .await;
    assert_eq!(
        run_of(&app, &app.tenant.api_key, &r).await["greeting"],
        "Yo Ola"
    );
}

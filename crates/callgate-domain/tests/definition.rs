//! Rules of agent definitions (SPEC §6.1): what saving a draft accepts, what it fills in, and
//! what publishing rejects.

#![allow(clippy::unwrap_used)]

use callgate_domain::definition::{Definition, DefinitionError};
use callgate_domain::trigger_path::TriggerPath;
use callgate_domain::variables::VarType;
use serde_json::{Value, json};

/// A small graph that passes every publish rule.
fn valid() -> Value {
    json!({
        "nodes": [
            {"id": "s", "type": "startCall", "position": {"x": 0, "y": 0},
             "data": {"prompt": "Hi {{name}}", "greeting": "Hello {{name}}"}},
            {"id": "a", "type": "agentNode", "data": {"prompt": "Ask about {{topic}}"}},
            {"id": "e", "type": "endCall", "data": {"prompt": "Bye"}},
            {"id": "t", "type": "trigger", "data": {"trigger_path": "lead-form", "enabled": true}},
            {"id": "w", "type": "webhook", "data": {"enabled": true, "endpoint_url": "https://example.com/hook"}},
            {"id": "q", "type": "somethingNew", "data": {"x": 1}}
        ],
        "edges": [
            {"id": "e1", "source": "s", "target": "a", "data": {"label": "next"}},
            {"id": "e2", "source": "a", "target": "e"}
        ],
        "variables": [{"name": "name", "type": "string", "required": true}],
        "viewport": {"zoom": 1}
    })
}

fn save(v: Value) -> Result<Definition, Vec<DefinitionError>> {
    Definition::parse_for_save(v)
}

fn publish_errors(v: Value) -> Vec<DefinitionError> {
    match Definition::from_stored(v).validate_for_publish() {
        Ok(()) => Vec::new(),
        Err(errors) => errors,
    }
}

/// `(kind, id, field)` of each error, for compact assertions.
fn keys(errors: &[DefinitionError]) -> Vec<(String, Option<String>, Option<String>)> {
    errors
        .iter()
        .map(|e| (e.kind.clone(), e.id.clone(), e.field.clone()))
        .collect()
}

fn key(kind: &str, id: Option<&str>, field: &str) -> (String, Option<String>, Option<String>) {
    (kind.into(), id.map(Into::into), Some(field.into()))
}

#[test]
fn a_valid_graph_saves_unchanged_and_publishes() {
    let d = save(valid()).unwrap();
    assert_eq!(d.as_json(), &valid());
    assert_eq!(d.validate_for_publish(), Ok(()));
    assert_eq!(d.into_json()["viewport"], json!({"zoom": 1}));
}

#[test]
fn accessors_read_the_graph() {
    let d = Definition::from_stored(valid());
    let triggers = d.triggers();
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0].node_id, "t");
    assert_eq!(triggers[0].path, TriggerPath::parse("lead-form").unwrap());
    assert!(triggers[0].enabled);
    assert_eq!(d.greeting(), Some("Hello {{name}}"));
    assert_eq!(
        d.prompts(),
        vec![
            ("s".to_owned(), "Hi {{name}}"),
            ("a".to_owned(), "Ask about {{topic}}"),
            ("e".to_owned(), "Bye")
        ]
    );
    let vars = d.variables();
    assert_eq!(vars.len(), 1);
    assert_eq!(vars[0].kind, VarType::String);
}

#[test]
fn disabled_triggers_are_reported_as_disabled() {
    let mut v = valid();
    v["nodes"][3]["data"]["enabled"] = json!(false);
    assert!(!Definition::from_stored(v).triggers()[0].enabled);
}

#[test]
fn a_trigger_without_a_path_gets_a_uuid_on_save() {
    for node in [
        json!({"id": "t", "type": "trigger"}),
        json!({"id": "t", "type": "trigger", "data": {}}),
        json!({"id": "t", "type": "trigger", "data": {"trigger_path": ""}}),
        json!({"id": "t", "type": "trigger", "data": {"trigger_path": null}}),
    ] {
        let d = save(json!({"nodes": [node]})).unwrap();
        let path = d.as_json()["nodes"][0]["data"]["trigger_path"]
            .as_str()
            .unwrap();
        assert_eq!(path.len(), 36, "{path}");
        assert_eq!(d.triggers()[0].path.as_str(), path);
    }
}

#[test]
fn saving_rejects_bad_trigger_paths() {
    let v = json!({"nodes": [
        {"id": "t", "type": "trigger", "data": {"trigger_path": "has space"}},
        {"id": "u", "type": "trigger", "data": {"trigger_path": 7}},
        {"id": "v", "type": "trigger", "data": {"trigger_path": "ok", "enabled": "no"}}
    ]});
    let errors = save(v).unwrap_err();
    assert_eq!(
        keys(&errors),
        [
            key("node", Some("t"), "trigger_path"),
            key("node", Some("u"), "trigger_path"),
            key("node", Some("v"), "enabled")
        ]
    );
    assert!(
        errors[0].message.contains("letters"),
        "{}",
        errors[0].message
    );
}

#[test]
fn saving_checks_the_json_shape() {
    assert_eq!(keys(&save(json!([])).unwrap_err()).len(), 1);
    assert_eq!(
        keys(&save(json!({})).unwrap_err()),
        [key("graph", None, "nodes")]
    );
    let v = json!({
        "nodes": [1, {"type": "agentNode"}, {"id": "b"}, {"id": "c", "type": "x", "data": []}],
        "edges": [{"id": "e", "source": 1}],
        "variables": [{"name": "v", "type": "date"}]
    });
    assert_eq!(
        keys(&save(v).unwrap_err()),
        [
            ("node".into(), None, None),
            key("node", None, "id"),
            key("node", Some("b"), "type"),
            key("node", Some("c"), "data"),
            key("edge", Some("e"), "source"),
            key("edge", Some("e"), "target"),
            key("variable", None, "variables"),
        ]
    );
    assert_eq!(
        keys(&save(json!({"nodes": [], "edges": {}})).unwrap_err()),
        [key("graph", None, "edges")]
    );
}

#[test]
fn saving_allows_incomplete_graphs() {
    let v = json!({"nodes": [{"id": "a", "type": "agentNode"}], "edges": [
        {"id": "e", "source": "a", "target": "nowhere"}
    ]});
    assert!(save(v).is_ok());
}

#[test]
fn publishing_needs_exactly_one_start_call() {
    let mut none = valid();
    none["nodes"][0]["type"] = json!("agentNode");
    assert!(keys(&publish_errors(none)).contains(&key("graph", None, "nodes")));
    let mut two = valid();
    two["nodes"][1]["type"] = json!("startCall");
    assert_eq!(keys(&publish_errors(two)), [key("graph", None, "nodes")]);
}

#[test]
fn publishing_allows_at_most_one_global_node_and_one_trigger() {
    let mut v = valid();
    let nodes = v["nodes"].as_array_mut().unwrap();
    nodes.push(json!({"id": "g1", "type": "globalNode", "data": {}}));
    nodes.push(json!({"id": "g2", "type": "globalNode", "data": {}}));
    nodes.push(json!({"id": "t2", "type": "trigger", "data": {"trigger_path": "other"}}));
    let errors = publish_errors(v);
    assert_eq!(errors.len(), 2);
    assert!(errors[0].message.contains("globalNode"));
    assert!(errors[1].message.contains("trigger"));
}

#[test]
fn publishing_rejects_duplicate_ids_and_dangling_edges() {
    let mut v = valid();
    v["nodes"][1]["id"] = json!("s");
    v["edges"][1]["id"] = json!("e1");
    v["edges"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "e3", "source": "x", "target": "y"}));
    assert_eq!(
        keys(&publish_errors(v)),
        [
            key("node", Some("s"), "id"),
            key("edge", Some("e1"), "target"),
            key("edge", Some("e1"), "id"),
            key("edge", Some("e1"), "source"),
            key("edge", Some("e3"), "source"),
            key("edge", Some("e3"), "target"),
        ]
    );
}

#[test]
fn publishing_rejects_edges_out_of_end_call() {
    let mut v = valid();
    v["edges"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "back", "source": "e", "target": "s"}));
    assert_eq!(
        keys(&publish_errors(v)),
        [key("edge", Some("back"), "source")]
    );
}

#[test]
fn start_call_needs_a_prompt_or_a_greeting() {
    let mut v = valid();
    v["nodes"][0]["data"] = json!({"prompt": "  ", "greeting": ""});
    assert_eq!(keys(&publish_errors(v)), [key("node", Some("s"), "prompt")]);
    let mut only_greeting = valid();
    only_greeting["nodes"][0]["data"] = json!({"greeting": "Hello"});
    assert!(publish_errors(only_greeting).is_empty());
}

#[test]
fn enabled_webhooks_need_an_http_url() {
    for (data, ok) in [
        (json!({"enabled": true, "endpoint_url": "ftp://x"}), false),
        (json!({"endpoint_url": ""}), false),
        (json!({"endpoint_url": "https://"}), false),
        (json!({"endpoint_url": "HTTP://host:8080/x"}), true),
        (json!({"enabled": false}), true),
    ] {
        let mut v = valid();
        v["nodes"][4]["data"] = data.clone();
        let errors = keys(&publish_errors(v));
        let expected = if ok {
            vec![]
        } else {
            vec![key("node", Some("w"), "endpoint_url")]
        };
        assert_eq!(errors, expected, "{data}");
    }
}

#[test]
fn publishing_checks_declared_variables() {
    let mut v = valid();
    v["variables"] = json!([
        {"name": "a", "type": "number", "default": "3"},
        {"name": "a"},
        {"name": "x.y"}
    ]);
    assert_eq!(
        keys(&publish_errors(v)),
        [
            key("variable", Some("a"), "default"),
            key("variable", Some("a"), "name"),
            key("variable", Some("x.y"), "name"),
        ]
    );
}

#[test]
fn publishing_reports_a_trigger_that_never_got_a_path() {
    let mut v = valid();
    v["nodes"][3]["data"] = json!({});
    assert_eq!(
        keys(&publish_errors(v)),
        [key("node", Some("t"), "trigger_path")]
    );
}

#[test]
fn stored_non_objects_become_empty_definitions() {
    let d = Definition::from_stored(json!("garbage"));
    assert_eq!(d.as_json(), &json!({}));
    assert!(d.triggers().is_empty() && d.prompts().is_empty() && d.variables().is_empty());
    assert_eq!(d.greeting(), None);
}

#[test]
fn errors_serialise_in_the_publish_shape() {
    let e = &publish_errors(json!({"nodes": []}))[0];
    let v = serde_json::to_value(e).unwrap();
    assert_eq!(v["kind"], "graph");
    assert_eq!(v["id"], Value::Null);
    assert_eq!(v["field"], "nodes");
    assert!(v["message"].as_str().unwrap().contains("startCall"));
}

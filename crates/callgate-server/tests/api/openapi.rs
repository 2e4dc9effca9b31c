//! SPEC §12: `/openapi.json` documents every route and its errors, `/docs` works from the binary
//! alone, and the document is snapshot-tested so API changes show in review.
//!
//! Regenerate the snapshot after an intended API change with
//! `UPDATE_SNAPSHOTS=1 cargo nextest run -p callgate-server openapi`.

use callgate_testkit::{Resp, TestApp};
use reqwest::Method;
use serde_json::Value;
use std::collections::BTreeSet;

mod shapes;

/// Every route `callgate_server::http::router` serves, as written in the routers. A new route
/// must be added here and documented; `every_listed_route_is_served_by_the_router` keeps this
/// list honest in the other direction.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/public/agent/{path}"),
    ("POST", "/api/v1/public/agent/test/{path}"),
    ("POST", "/api/v1/public/agent/workflow/{uuid}"),
    ("POST", "/api/v1/public/agent/test/workflow/{uuid}"),
    ("POST", "/api/v1/calls/outbound"),
    ("POST", "/api/v1/telephony/initiate-call"),
    ("GET", "/api/v1/calls"),
    ("GET", "/api/v1/calls/{call_id}"),
    ("POST", "/api/v1/calls/{call_id}/cancel"),
    ("POST", "/api/v1/calls/{call_id}/hangup"),
    ("GET", "/api/v1/workflow/{workflow_id}/runs"),
    ("GET", "/api/v1/workflow/{workflow_id}/runs/{run_id}"),
    ("POST", "/api/v1/workflow/create/definition"),
    ("GET", "/api/v1/workflow/fetch"),
    ("GET", "/api/v1/workflow/fetch/{id}"),
    ("PUT", "/api/v1/workflow/{id}"),
    ("POST", "/api/v1/workflow/{id}/publish"),
    ("GET", "/api/v1/workflow/{id}/versions"),
    ("GET", "/api/v1/workflow/{id}/triggers"),
    ("PUT", "/api/v1/workflow/{id}/owner"),
    ("POST", "/api/v1/workflow/{id}/archive"),
    ("GET", "/api/v1/user/api-keys"),
    ("POST", "/api/v1/user/api-keys"),
    ("DELETE", "/api/v1/user/api-keys/{id}"),
    ("PUT", "/api/v1/user/api-keys/{id}/reactivate"),
    ("GET", "/api/v1/organizations/telephony-configs"),
    ("POST", "/api/v1/organizations/telephony-configs"),
    ("GET", "/api/v1/organizations/telephony-configs/{id}"),
    ("PUT", "/api/v1/organizations/telephony-configs/{id}"),
    ("DELETE", "/api/v1/organizations/telephony-configs/{id}"),
    (
        "POST",
        "/api/v1/organizations/telephony-configs/{id}/set-default-outbound",
    ),
    (
        "GET",
        "/api/v1/organizations/telephony-configs/{id}/phone-numbers",
    ),
    (
        "POST",
        "/api/v1/organizations/telephony-configs/{id}/phone-numbers",
    ),
    (
        "PUT",
        "/api/v1/organizations/telephony-configs/{id}/phone-numbers/{number_id}",
    ),
    (
        "DELETE",
        "/api/v1/organizations/telephony-configs/{id}/phone-numbers/{number_id}",
    ),
    ("GET", "/api/v1/organizations/settings"),
    ("PUT", "/api/v1/organizations/settings"),
    ("GET", "/api/v1/organizations/limits"),
    ("POST", "/api/v1/admin/organizations"),
    ("GET", "/api/v1/admin/organizations"),
    ("POST", "/api/v1/admin/organizations/{org_id}/users"),
    (
        "PUT",
        "/api/v1/admin/organizations/{org_id}/users/{user_id}",
    ),
    ("POST", "/api/v1/admin/organizations/{org_id}/api-keys"),
    ("PUT", "/api/v1/admin/organizations/{org_id}/quota"),
    ("PUT", "/api/v1/admin/organizations/{org_id}/settings"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/{asset}"),
];

/// Routes that answer every request successfully (or fail only with 5xx), so they document
/// no client error.
const NO_CLIENT_ERRORS: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
];

const PROBLEM_REF: &str = "#/components/schemas/Problem";

/// Path parameters name the same thing in the router and the document, but the document may
/// spell them as the SPEC does (`{trigger_path}` for the router's `{path}`).
fn normalise(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

async fn document(app: &TestApp) -> Value {
    let r = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.body.is_object(), "not a JSON object: {}", r.text);
    r.body
}

/// Every (method, normalised path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                ops.push((method.to_uppercase(), normalise(path), op.clone()));
            }
        }
    }
    ops
}

/// Follows a local `$ref` (`#/components/...`) if `v` is one.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {r}"))
        }
        None => v,
    }
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), normalise(p)))
        .collect();
    assert_eq!(ROUTES.len(), routed.len(), "ROUTES has a duplicate");
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes without documentation: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "documented routes the router does not serve: {extra:?}"
    );
}

#[tokio::test]
async fn every_listed_route_is_served_by_the_router() {
    let app = TestApp::spawn().await;
    for (method, path) in ROUTES {
        // Any value reaches the handler: authentication comes first and answers 401.
        let concrete = path
            .replace("{asset}", "swagger-ui.css")
            .replace("{path}", "some-trigger")
            .replace("{uuid}", "00000000-0000-0000-0000-000000000000")
            .replace("{call_id}", "00000000-0000-0000-0000-000000000000")
            .split('/')
            .map(|s| if s.starts_with('{') { "1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = app
            .send(app.client.request(method.clone(), app.url(&concrete)))
            .await;
        assert!(
            !matches!(r.code(), "route_not_found" | "method_not_allowed") && r.status != 405,
            "{method} {concrete} is not routed: {} {}",
            r.status,
            r.text
        );
    }
}

#[tokio::test]
async fn every_client_error_is_documented_as_problem_json() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let exempt: BTreeSet<(String, String)> = NO_CLIENT_ERRORS
        .iter()
        .map(|(m, p)| (m.to_string(), normalise(p)))
        .collect();
    let mut operation_ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let name = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no operationId"));
        assert!(
            operation_ids.insert(id.to_owned()),
            "{name}: operationId {id} is not unique"
        );
        assert!(op["summary"].is_string(), "{name}: no summary");
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: no responses"));
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{name}: no success response"
        );
        let mut client_errors = 0;
        for (status, response) in responses {
            let response = resolve(&doc, response);
            if status.starts_with('4') || status.starts_with('5') {
                let schema = &response["content"]["application/problem+json"]["schema"];
                assert_eq!(
                    schema["$ref"], PROBLEM_REF,
                    "{name} {status}: not documented as problem JSON: {response}"
                );
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{name} {status}: no description"
                );
                if status.starts_with('4') {
                    client_errors += 1;
                }
            }
        }
        if !exempt.contains(&(method.clone(), path.clone())) {
            assert!(
                client_errors > 0,
                "{name}: documents no 4xx problem response"
            );
        }
    }
}

#[tokio::test]
async fn operations_name_their_authentication_and_declared_tags() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["type"], "apiKey");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["admin_token"]["type"], "http");
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for (method, path, op) in operations(&doc) {
        let tag = op["tags"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no tag"));
        assert!(
            tags.contains(tag),
            "{method} {path}: tag {tag} is not declared"
        );
        let security = op["security"][0]
            .as_object()
            .map(|s| s.keys().cloned().collect::<Vec<_>>());
        let expected = if path.starts_with("/api/v1/admin/") {
            Some(vec!["admin_token".to_owned()])
        } else if path.starts_with("/api/") {
            Some(vec!["api_key".to_owned()])
        } else {
            None
        };
        assert_eq!(security, expected, "{method} {path}: wrong security");
    }
}

#[tokio::test]
async fn every_reference_in_the_document_resolves() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(m) => {
                if m.contains_key("$ref") {
                    resolve(doc, v);
                }
                m.values().for_each(|x| walk(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(doc, x)),
            _ => {}
        }
    }
    walk(&doc, &doc);
}

#[tokio::test]
async fn docs_are_served_from_the_binary_without_any_remote_asset() {
    let app = TestApp::spawn().await;
    let page = app.send(app.client.get(app.url("/docs"))).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        !page.text.contains("http://") && !page.text.contains("https://"),
        "the docs page names a remote URL:\n{}",
        page.text
    );
    assert!(page.text.contains("\"/openapi.json\""), "{}", page.text);

    // Every script and stylesheet the page loads is one of ours, and is served.
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in page.text.split(attr).skip(1) {
            assets.push(part.split('"').next().unwrap().to_owned());
        }
    }
    assert!(
        assets.contains(&"/docs/swagger-ui-bundle.js".to_owned()),
        "{assets:?}"
    );
    assert!(
        assets.contains(&"/docs/swagger-ui.css".to_owned()),
        "{assets:?}"
    );
    for asset in &assets {
        assert!(asset.starts_with("/docs/"), "non-local asset {asset}");
        let r = app.send(app.client.get(app.url(asset))).await;
        assert_eq!(r.status, 200, "{asset}");
        let expected = if asset.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(r.header("content-type"), Some(expected), "{asset}");
        assert!(r.text.len() > 10_000, "{asset} looks truncated");
    }

    // The licence texts travel with the UI (Apache-2.0 §4).
    for file in ["LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"] {
        let r = app
            .send(app.client.get(app.url(&format!("/docs/{file}"))))
            .await;
        assert_eq!(r.status, 200, "{file}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    }
    let missing = app.send(app.client.get(app.url("/docs/nope.js"))).await;
    assert_problem_404(&missing);
}

fn assert_problem_404(r: &Resp) {
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.code(), "route_not_found");
}

#[tokio::test]
async fn the_document_matches_its_reviewed_snapshot() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let actual = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/openapi.snapshot.json"
    );
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(file, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(file).unwrap_or_default();
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
        let context = |text: &str| {
            text.lines()
                .skip(line.saturating_sub(3))
                .take(7)
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "the OpenAPI document differs from tests/api/openapi.snapshot.json from line {}.\n\
             --- snapshot:\n{}\n--- now:\n{}\n\
             If the API change is intended, run \
             `UPDATE_SNAPSHOTS=1 cargo nextest run -p callgate-server openapi` and commit the \
             snapshot with it.",
            line + 1,
            context(&expected),
            context(&actual),
        );
    }
}

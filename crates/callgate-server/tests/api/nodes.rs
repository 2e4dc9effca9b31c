//! A node that takes triggers and dials nothing (`--role api`) next to one that dials: its
//! capacity check and `Prefer: wait` must follow what the other node does with the runs.

use crate::support::*;
use callgate_testkit::{ApiNode, Options, Resp, TestApp};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn trigger_on(app: &TestApp, node: &ApiNode, body: &Value, prefer: Option<&str>) -> Resp {
    let path = node.url(&format!("/api/v1/public/agent/{}", app.tenant.trigger_path));
    let mut req = app
        .client
        .post(path)
        .header("X-API-Key", &app.tenant.api_key)
        .json(body);
    if let Some(p) = prefer {
        req = req.header("Prefer", p);
    }
    app.send(req).await
}

/// Triggers on `node` until one is accepted, for at most `limit`; every refusal must be the
/// capacity check's.
async fn accepted_within(app: &TestApp, node: &ApiNode, limit: Duration) -> Resp {
    let deadline = Instant::now() + limit;
    loop {
        let r = trigger_on(app, node, &ok_body(), None).await;
        if r.status == 200 {
            return r;
        }
        assert_problem(&r, 429, "concurrency_limit_reached", "");
        assert!(
            Instant::now() < deadline,
            "the API node still refuses after the queue drained: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_node_that_dials_nothing_sees_its_runs_leave_the_queue() {
    let app = TestApp::spawn().await;
    app.admin(
        Method::PUT,
        &format!("/api/v1/admin/organizations/{}/settings", app.tenant.org_id),
        &json!({"on_capacity": "queue", "max_queued_calls": 2}),
    )
    .await;
    let node = app.spawn_api_node().await;
    // Four rounds of a full queue: the API node counts each accepted run as queued, and only
    // the other node's claims take them out of the queue. Without re-reading what that node
    // did, the second round would be refused for good.
    for round in 0..4 {
        let mut calls = Vec::new();
        for _ in 0..2 {
            let r = accepted_within(&app, &node, Duration::from_secs(10)).await;
            assert_eq!(r.body["call_status"], "queued", "round {round}: {}", r.text);
            calls.push(r.body["call_id"].as_str().unwrap().to_owned());
        }
        for call in &calls {
            let run = app.wait_for_end(&app.tenant.api_key, call).await;
            assert_eq!(run["outcome"], "completed", "round {round}: {run}");
        }
    }
    assert_eq!(runs(&app, &app.tenant.api_key).await.len(), 8);
}

#[tokio::test]
async fn prefer_wait_on_a_node_that_dials_nothing_reports_the_other_nodes_dial() {
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 10, "talk_ms": 10, "rules": [{"match": "+1415555011*", "outcome": "rejected"}]}),
        ..Options::default()
    })
    .await;
    let node = app.spawn_api_node().await;
    // The wait is longer than the dialling node's slowest way of finding a run queued
    // elsewhere (its periodic re-read of the queue), so the answer must be the dial's.
    let r = trigger_on(
        &app,
        &node,
        &json!({"phone_number": "+14155550111"}),
        Some("wait=15"),
    )
    .await;
    assert_dial_refused(&app, &r).await;
    let r = trigger_on(&app, &node, &ok_body(), Some("wait=15")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.body["call_status"], "queued", "{}", r.text);
    assert_ne!(r.body["call_status"], "dialing", "{}", r.text);
}

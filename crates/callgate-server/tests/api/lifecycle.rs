//! Simulated calls from trigger to end: every outcome, quota deduction and pacing.

use callgate_testkit::{Options, TestApp};
use reqwest::Method;
use serde_json::json;

fn sim_rules() -> serde_json::Value {
    json!({
        "ring_ms": 10,
        "talk_ms": 1100,
        "rules": [
            {"match": "+14155550101", "outcome": "busy"},
            {"match": "+14155550102", "outcome": "no_answer"},
            {"match": "+14155550103", "outcome": "failed"},
            {"match": "+14155550104", "outcome": "voicemail", "talk_ms": 30},
            {"match": "+1415555019*", "outcome": "completed", "talk_ms": 30}
        ]
    })
}

async fn call(app: &TestApp, phone: &str) -> serde_json::Value {
    let r = app
        .trigger(&json!({"phone_number": phone, "initial_context": {"customer_name": "Jane"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.wait_for_end(&app.tenant.api_key, r.body["call_id"].as_str().unwrap())
        .await
}

fn statuses(run: &serde_json::Value) -> Vec<String> {
    run["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_completed_call_goes_from_queued_to_ended_with_a_transcript_opening_with_the_greeting() {
    let app = TestApp::spawn_with(Options {
        simulator: sim_rules(),
        ..Options::default()
    })
    .await;
    let run = call(&app, "+14155550100").await;
    assert_eq!(run["outcome"], "completed");
    assert_eq!(run["answered_by"], "human");
    assert_eq!(
        statuses(&run),
        ["queued", "dialing", "ringing", "in_progress", "ended"],
        "{run}"
    );
    assert_eq!(run["transcript"][0]["role"], "agent");
    assert_eq!(run["transcript"][0]["text"], "Hi Jane, this is Ava.");
    assert!(run["duration_seconds"].as_i64().unwrap() >= 2, "{run}");
    for field in ["dialed_at", "answered_at", "ended_at", "provider_call_id"] {
        assert!(run[field].is_string(), "{field} missing: {run}");
    }
}

#[tokio::test]
async fn busy_no_answer_failed_and_voicemail_each_end_with_their_outcome() {
    let app = TestApp::spawn_with(Options {
        simulator: sim_rules(),
        ..Options::default()
    })
    .await;
    for (phone, outcome, answered) in [
        ("+14155550101", "busy", false),
        ("+14155550102", "no_answer", false),
        ("+14155550103", "failed", false),
        ("+14155550104", "voicemail", true),
    ] {
        let run = call(&app, phone).await;
        assert_eq!(run["outcome"], outcome, "{run}");
        assert_eq!(run["answered_at"].is_string(), answered, "{run}");
        assert_eq!(statuses(&run).last().map(String::as_str), Some("ended"));
        if outcome == "voicemail" {
            assert_eq!(run["answered_by"], "machine");
        } else {
            assert!(run["duration_seconds"].is_null(), "{run}");
        }
        if outcome == "failed" {
            assert!(run["error"].is_string(), "{run}");
        }
    }
}

/// Sets the default tenant's balance through the instance admin API.
async fn set_quota(app: &TestApp, seconds: i64) {
    let r = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/organizations/{}/quota", app.tenant.org_id),
            &json!({"quota_seconds_remaining": seconds}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn billable_seconds_are_deducted_from_the_quota_when_a_call_ends() {
    let app = TestApp::spawn_with(Options {
        simulator: sim_rules(),
        ..Options::default()
    })
    .await;
    set_quota(&app, 100).await;
    let run = call(&app, "+14155550100").await;
    let billed = run["duration_seconds"].as_i64().unwrap();
    assert!(billed >= 2);
    let limits = app
        .get("/api/v1/organizations/limits", &app.tenant.api_key)
        .await;
    assert_eq!(
        limits.body["quota_seconds_remaining"],
        100 - billed,
        "{}",
        limits.text
    );
    // Unanswered calls cost nothing.
    call(&app, "+14155550101").await;
    let limits = app
        .get("/api/v1/organizations/limits", &app.tenant.api_key)
        .await;
    assert_eq!(limits.body["quota_seconds_remaining"], 100 - billed);
}

#[tokio::test]
async fn a_run_still_queued_when_the_quota_runs_out_ends_failed_without_a_dial() {
    let app = TestApp::spawn_with(Options {
        simulator: sim_rules(),
        max_concurrent_calls: Some(1),
        ..Options::default()
    })
    .await;
    set_quota(&app, 1).await;
    let body =
        json!({"phone_number": "+14155550100", "initial_context": {"customer_name": "Jane"}});
    // The first call talks 1.1 s: two billable seconds against a balance of one. The second
    // waits in the queue meanwhile (one call at a time on this configuration).
    let first = app.trigger(&body).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let second = app.trigger(&body).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["call_status"], "queued", "{}", second.text);
    let first = app
        .wait_for_end(&app.tenant.api_key, first.body["call_id"].as_str().unwrap())
        .await;
    assert_eq!(first["outcome"], "completed", "{first}");
    let billed = first["duration_seconds"].as_i64().unwrap();
    assert!(billed >= 2, "{first}");
    let second = app
        .wait_for_end(
            &app.tenant.api_key,
            second.body["call_id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(second["outcome"], "failed", "{second}");
    assert_eq!(second["ended_reason"], "quota_exhausted", "{second}");
    assert_eq!(
        second["error"], "Quota exhausted: no call minutes left",
        "{second}"
    );
    assert!(second["provider_call_id"].is_null(), "{second}");
    assert!(second["answered_at"].is_null(), "{second}");
    let limits = app
        .get("/api/v1/organizations/limits", &app.tenant.api_key)
        .await;
    assert_eq!(
        limits.body["quota_seconds_remaining"],
        1 - billed,
        "{}",
        limits.text
    );
}

#[tokio::test]
async fn a_call_end_refreshes_the_cached_organisation_only_when_it_has_a_quota() {
    let app = TestApp::spawn().await;
    let org = app.tenant.org_id;
    let catalog = &app.state.catalog;
    assert_eq!(
        catalog.org(org).await.unwrap().quota_seconds_remaining,
        None
    );
    // Changed behind the cache's back (as another node would): an unlimited organisation's
    // entry survives a call end, so this is not seen until the entry expires or is dropped.
    app.store.set_quota(org, Some(50)).await.unwrap();
    catalog.call_ended(org);
    assert_eq!(
        catalog.org(org).await.unwrap().quota_seconds_remaining,
        None
    );
    catalog.invalidate_org(org);
    assert_eq!(
        catalog.org(org).await.unwrap().quota_seconds_remaining,
        Some(50)
    );
    // With a quota, every call end re-reads it.
    app.store.set_quota(org, Some(40)).await.unwrap();
    catalog.call_ended(org);
    assert_eq!(
        catalog.org(org).await.unwrap().quota_seconds_remaining,
        Some(40)
    );
}

#[tokio::test]
async fn a_configuration_at_5_calls_per_second_never_starts_more_than_5_dials_in_any_second() {
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 5, "talk_ms": 5}),
        calls_per_second: 5.0,
        ..Options::default()
    })
    .await;
    app.admin(
        Method::PUT,
        &format!("/api/v1/admin/organizations/{}/settings", app.tenant.org_id),
        &json!({"max_concurrent_calls": 100}),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let r = app.trigger(&json!({"phone_number": "+14155550100"})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        ids.push(r.body["call_id"].as_str().unwrap().to_owned());
    }
    let mut starts = Vec::new();
    for id in &ids {
        let run = app.wait_for_end(&app.tenant.api_key, id).await;
        let at: jiff::Timestamp = run["dialed_at"].as_str().unwrap().parse().unwrap();
        starts.push(at.as_nanosecond());
    }
    starts.sort_unstable();
    let worst = starts
        .iter()
        .map(|&t| {
            starts
                .iter()
                .filter(|&&s| s >= t && s < t + 1_000_000_000)
                .count()
        })
        .max()
        .unwrap();
    assert!(worst <= 5, "{worst} dials started within one second");
    // And the queue really was paced, not stalled: 20 calls need at least 3 seconds.
    let span = (starts[19] - starts[0]) as f64 / 1e9;
    assert!(span >= 3.0, "20 dials spanned only {span:.2}s");
    // Oldest first.
    let runs: Vec<i64> = {
        let mut v = Vec::new();
        for id in &ids {
            let r = app
                .get(&format!("/api/v1/calls/{id}"), &app.tenant.api_key)
                .await;
            v.push(
                r.body["dialed_at"]
                    .as_str()
                    .unwrap()
                    .parse::<jiff::Timestamp>()
                    .unwrap()
                    .as_nanosecond() as i64,
            );
        }
        v
    };
    assert!(
        runs.windows(2).all(|w| w[0] <= w[1]),
        "runs were not dialled oldest first"
    );
}

#[tokio::test]
async fn raising_a_paced_configurations_rate_dials_its_queue_without_waiting_for_the_old_slot() {
    let (app, ids) = crate::support::three_calls_behind_a_slow_rate().await;
    let key = app.tenant.api_key.clone();
    // Past a few dispatcher passes: the others are held back by pacing.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    for id in &ids[1..] {
        let r = app.get(&format!("/api/v1/calls/{id}"), &key).await;
        assert_eq!(r.body["status"], "queued", "{}", r.text);
    }
    let config = crate::support::set_calls_per_second(&app, 100.0).await;
    assert_eq!(config["calls_per_second"], 100.0);
    // `wait_for_end` gives up after 20 s, long before the old slot.
    for id in &ids[1..] {
        app.wait_for_end(&key, id).await;
    }
}

#[tokio::test]
async fn the_organisation_concurrency_limit_holds_while_calls_queue() {
    let app = TestApp::spawn_with(Options {
        simulator: json!({"ring_ms": 10, "talk_ms": 300}),
        ..Options::default()
    })
    .await;
    app.admin(
        Method::PUT,
        &format!("/api/v1/admin/organizations/{}/settings", app.tenant.org_id),
        &json!({"max_concurrent_calls": 2}),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let r = app.trigger(&json!({"phone_number": "+14155550100"})).await;
        ids.push(r.body["call_id"].as_str().unwrap().to_owned());
    }
    let mut spans = Vec::new();
    for id in &ids {
        let run = app.wait_for_end(&app.tenant.api_key, id).await;
        assert_eq!(run["outcome"], "completed");
        let d: jiff::Timestamp = run["dialed_at"].as_str().unwrap().parse().unwrap();
        let e: jiff::Timestamp = run["ended_at"].as_str().unwrap().parse().unwrap();
        spans.push((d.as_nanosecond(), e.as_nanosecond()));
    }
    for &(start, _) in &spans {
        let live = spans
            .iter()
            .filter(|&&(d, e)| d <= start && start < e)
            .count();
        assert!(live <= 2, "{live} calls were live at once");
    }
}

/// The value of one sample line of a Prometheus text page, by its name and labels as printed.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_triggers_by_route_and_status_and_runs_by_outcome() {
    let app = TestApp::spawn_with(Options {
        simulator: sim_rules(),
        ..Options::default()
    })
    .await;
    // The recorder is one per process: other tests in it may have counted before.
    let before = app.get("/metrics", "").await;
    assert_eq!(before.status, 200, "{}", before.text);
    let ok = r#"callgate_triggers_total{route="trigger",status="200"}"#;
    let bad_key = r#"callgate_triggers_total{route="trigger",status="401"}"#;
    let busy = r#"callgate_runs_ended_total{outcome="busy"}"#;
    let count = |page: &str, series: &str| sample(page, series).unwrap_or(0.0);
    let (ok0, bad0, busy0) = (
        count(&before.text, ok),
        count(&before.text, bad_key),
        count(&before.text, busy),
    );

    call(&app, "+14155550100").await;
    let run = call(&app, "+14155550101").await;
    assert_eq!(run["outcome"], "busy");
    let path = format!("/api/v1/public/agent/{}", app.tenant.trigger_path);
    let refused = app
        .post(&path, "not-a-key", &json!({"phone_number": "+14155550100"}))
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text);

    // A run is readable as ended once the writer commits; its counter is bumped when the
    // store answers the update, a moment later. Wait for the counters (at most 5 s).
    let counted = |page: &str| {
        count(page, ok) >= ok0 + 2.0
            && count(page, bad_key) >= bad0 + 1.0
            && count(page, busy) >= busy0 + 1.0
    };
    let mut after = app.get("/metrics", "").await.text;
    for _ in 0..50 {
        if counted(&after) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = app.get("/metrics", "").await.text;
    }
    assert!(count(&after, ok) >= ok0 + 2.0, "{after}");
    assert!(count(&after, bad_key) >= bad0 + 1.0, "{after}");
    assert!(count(&after, busy) >= busy0 + 1.0, "{after}");
    assert!(
        after.contains("callgate_dispatch_latency_seconds_count"),
        "{after}"
    );
}

//! A node id belongs to one running process (README, "If the process dies"): a process started
//! under the id of a running one refuses to start, and leaves that node's calls alone. Runs on
//! the embedded SQLite default, so it needs no PostgreSQL.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

async fn call_status(http: &reqwest::Client, base: &str, key: &str, call_id: &str) -> String {
    let r = send(
        http.get(format!("{base}/api/v1/calls/{call_id}"))
            .header("X-API-Key", key),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_under_a_running_nodes_id_refuses_to_start_and_leaves_its_calls_alone() {
    let _serial = SERIAL.lock().await;
    let (_data, url) = sqlite_database();
    let mut first = Node::start(NodeSpec {
        node_id: "twin",
        database_url: &url,
        bootstrap: true,
        env: vec![],
    });
    let (key, path) = first.first_start_credentials();
    let http = http_client();
    // A call that stays answered for a minute, longer than the test.
    configure(
        &http,
        &first.base,
        &key,
        json!({"ring_ms": 50, "talk_ms": 60_000}),
        10.0,
        json!({}),
    )
    .await;
    let r = trigger(&http, &first.base, &key, &path, "+14155550100").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let call_id = r.body["call_id"].as_str().unwrap().to_owned();
    eventually("the call is answered", Duration::from_secs(10), || async {
        (call_status(&http, &first.base, &key, &call_id).await == "in_progress").then_some(())
    })
    .await;

    let stderr = start_must_fail(
        &url,
        &[
            ("CALLGATE_NODE_ID", "twin"),
            ("CALLGATE_SERVER_KEY", SERVER_KEY),
            ("CALLGATE_BOOTSTRAP", "false"),
        ],
    )
    .await;
    assert!(
        stderr.contains("node id twin is in use") && stderr.contains("--node-id"),
        "{stderr}"
    );
    // The refused process did not take the running node's call for its own leftover.
    assert_eq!(
        call_status(&http, &first.base, &key, &call_id).await,
        "in_progress"
    );

    // Once that process is gone, its id is free at once, though its last heartbeat is fresh:
    // the restart settles the call it left.
    first.kill();
    let second = Node::start(NodeSpec {
        node_id: "twin",
        database_url: &url,
        bootstrap: false,
        env: vec![],
    });
    let ended = eventually(
        "the left call is settled",
        Duration::from_secs(10),
        || async {
            let r = send(
                http.get(format!("{}/api/v1/calls/{call_id}", second.base))
                    .header("X-API-Key", &key),
            )
            .await;
            (r.body["status"] == "ended").then_some(r.body)
        },
    )
    .await;
    assert_eq!(ended["ended_reason"], "provider_timeout", "{ended}");
}

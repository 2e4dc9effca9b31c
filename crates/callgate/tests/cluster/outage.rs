//! PostgreSQL going away (issue 3, "Bad input"): unreachable at start is a clear error and a
//! non-zero exit; lost while serving, requests get 503 problem JSON within a bounded time, the
//! node recovers by itself when the database returns, and no accepted run is lost (the call
//! events that happened meanwhile are applied once it is back).

use crate::proxy::Proxy;
use crate::support::*;
use callgate_store_postgres::scratch::ScratchDatabase;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[tokio::test]
async fn an_unreachable_database_at_start_is_a_clear_error_and_a_non_zero_exit() {
    // Port 1 on the loopback interface: nothing listens there, the refusal is immediate.
    let stderr = start_must_fail("postgres://postgres@127.0.0.1:1/callgate", &[]).await;
    assert!(
        stderr.contains("cannot open the PostgreSQL database")
            && stderr.contains("cannot connect to PostgreSQL at 127.0.0.1:1/callgate"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_never_answers_at_start_is_an_error_after_the_timeout() {
    // A port that accepts connections and says nothing: no PostgreSQL needed.
    let proxy = Proxy::start("127.0.0.1:9".parse().unwrap()).await;
    proxy.unresponsive().await;
    let url = format!("postgres://postgres@{}/callgate", proxy.addr);
    let started = Instant::now();
    let stderr = start_must_fail(&url, &[("CALLGATE_DATABASE_TIMEOUT", "1")]).await;
    assert!(
        stderr.contains("cannot open the PostgreSQL database") && stderr.contains("no answer"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// The PostgreSQL server `url` names, as a socket address.
async fn server_of(url: &str) -> SocketAddr {
    let cfg: tokio_postgres::Config = url.parse().unwrap();
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        other => panic!("the outage test needs a TCP PostgreSQL URL, got {other:?}"),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// `url` rewritten to reach its database through `proxy`.
fn via(url: &str, proxy: SocketAddr) -> String {
    let cfg: tokio_postgres::Config = url.parse().unwrap();
    let user = cfg.get_user().unwrap_or("postgres");
    let auth = match cfg.get_password() {
        Some(p) => format!("{user}:{}", String::from_utf8_lossy(p)),
        None => user.to_owned(),
    };
    format!("postgres://{auth}@{proxy}/{}", cfg.get_dbname().unwrap())
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A request during the outage: 503 `database_unavailable` problem JSON, within `limit`.
fn assert_unavailable(r: &Resp, took: Duration, limit: Duration, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text);
    assert_eq!(r.body["code"], "database_unavailable", "{what}: {}", r.text);
    assert!(
        r.content_type.starts_with("application/problem+json"),
        "{what}: content type {}",
        r.content_type
    );
    assert!(took < limit, "{what} took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_database_is_503_and_the_node_recovers_without_losing_runs() {
    let name = "losing_the_database_is_503_and_the_node_recovers_without_losing_runs";
    let Some(admin) = postgres_admin_url(name) else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let scratch = ScratchDatabase::create(&admin).await.unwrap();
    let proxy = Proxy::start(server_of(scratch.url()).await).await;
    let node_url = via(scratch.url(), proxy.addr);
    let http = reqwest::Client::new();
    let db = sql(scratch.url()).await;

    let mut node = Node::start(NodeSpec {
        node_id: "node-outage",
        database_url: &node_url,
        bootstrap: true,
        // A request waits at most a second for a connection, so an outage answers quickly.
        env: vec![("CALLGATE_DATABASE_TIMEOUT", "1".to_owned())],
    });
    let (key, path) = node.first_start_credentials();
    configure(
        &http,
        &node.base,
        &key,
        json!({"ring_ms": 20, "talk_ms": 2500}),
        50.0,
        json!({"max_concurrent_calls": 10}),
    )
    .await;

    // Runs accepted before the outage, answered and talking when it starts.
    let mut accepted = Vec::new();
    for i in 0..5 {
        let r = trigger(&http, &node.base, &key, &path, &format!("+1415555200{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        accepted.push(r.body["call_id"].as_str().unwrap().to_owned());
    }
    eventually(
        "the first runs are answered",
        Duration::from_secs(15),
        || async {
            let n: i64 = db
                .query_one(
                    "SELECT count(*) FROM runs WHERE status = 'in_progress'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (n == 5).then_some(())
        },
    )
    .await;

    // The database goes away: connections cut, the port refuses.
    proxy.down();
    let outage = Instant::now();
    let bound = Duration::from_secs(5);
    for i in 0..3 {
        let t = Instant::now();
        let r = trigger(&http, &node.base, &key, &path, "+14155552100").await;
        assert_unavailable(&r, t.elapsed(), bound, &format!("trigger {i} while down"));
    }
    let t = Instant::now();
    let r = send(
        http.get(format!("{}/api/v1/calls/{}", node.base, accepted[0]))
            .header("X-API-Key", &key),
    )
    .await;
    assert_unavailable(&r, t.elapsed(), bound, "reading a run while down");
    let t = Instant::now();
    let r = send(http.get(format!("{}/readyz", node.base))).await;
    assert_unavailable(&r, t.elapsed(), bound, "/readyz while down");

    // Worse: the server accepts connections and never answers. The database timeout bounds it.
    proxy.unresponsive().await;
    let t = Instant::now();
    let r = trigger(&http, &node.base, &key, &path, "+14155552101").await;
    assert_unavailable(&r, t.elapsed(), bound, "trigger while unresponsive");

    // Keep it away until the talking calls have ended (their events wait in the node).
    let ended_by = Duration::from_millis(3500);
    if let Some(rest) = ended_by.checked_sub(outage.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    proxy.up().await;
    let back = Instant::now();
    let recovered_call = eventually(
        "triggers are accepted again",
        Duration::from_secs(20),
        || async {
            let r = trigger(&http, &node.base, &key, &path, "+14155552200").await;
            match r.status {
                200 => Some(r.body["call_id"].as_str().unwrap().to_owned()),
                503 => None,
                other => panic!("unexpected {other} after recovery: {}", r.text),
            }
        },
    )
    .await;
    let recovered_at = now_micros();
    eprintln!(
        "outage lasted {:?}; triggers accepted again {:?} after the database returned",
        back - outage,
        back.elapsed()
    );
    accepted.push(recovered_call);

    // Every accepted run ends as it would have: the events of the outage were applied late.
    let ended = eventually(
        "every accepted run ended",
        Duration::from_secs(30),
        || async {
            let rows = db
                .query(
                    "SELECT call_id::text, status, outcome,
                        (extract(epoch FROM ended_at) * 1000000)::bigint FROM runs ORDER BY id",
                    &[],
                )
                .await
                .unwrap();
            let all: Vec<(String, String, Option<String>, Option<i64>)> = rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            all.iter().all(|r| r.1 == "ended").then_some(all)
        },
    )
    .await;
    assert_eq!(
        ended.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        accepted,
        "exactly the accepted runs exist (a refused trigger left nothing behind)"
    );
    for (call_id, _, outcome, ended_at) in &ended[..5] {
        assert_eq!(outcome.as_deref(), Some("completed"), "{call_id}");
        assert!(
            ended_at.unwrap_or(i64::MAX) < recovered_at,
            "run {call_id} should have ended during the outage"
        );
    }
    let r = send(http.get(format!("{}/readyz", node.base))).await;
    assert_eq!(r.status, 200, "{}", r.text);

    drop(node);
    drop(proxy);
    scratch.drop_database().await.unwrap();
}

//! Three `callgate serve` processes on one PostgreSQL database (issue 3's proof): a burst of
//! triggers spread over all three is dialled exactly once per run, within the configuration's
//! calls per second and the organisation's concurrency limit cluster-wide; then one node is
//! killed with live calls and every run still ends, its calls settled by the survivors.

use crate::support::*;
use callgate_store_postgres::scratch::ScratchDatabase;
use serde_json::json;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The configuration's calls per second.
const CPS: usize = 5;
/// The organisation's `max_concurrent_calls`.
const ORG_LIMIT: usize = 3;
const PHASE1_RUNS: usize = 40;
const PHASE2_RUNS: usize = 12;
/// Phase 1 calls are short (the default), phase 2 calls (numbers `+141555590…`) talk 3 s so a
/// node can be killed while it holds live ones.
const PHASE1_PREFIX: &str = "+141555510";
const PHASE2_PREFIX: &str = "+141555590";

/// One run as the database recorded it.
#[derive(Debug, Clone)]
struct RunRow {
    id: i64,
    phone: String,
    /// Microseconds since the epoch.
    dialed_at: Option<i64>,
    ended_at: Option<i64>,
    status: String,
    outcome: Option<String>,
    ended_reason: Option<String>,
    attempt: i64,
    dialing_events: i64,
    max_event_attempt: i64,
}

async fn runs_with_prefix(db: &tokio_postgres::Client, prefix: &str) -> Vec<RunRow> {
    db.query(
        "SELECT r.id, r.phone_number,
                (extract(epoch FROM r.dialed_at) * 1000000)::bigint,
                (extract(epoch FROM r.ended_at) * 1000000)::bigint,
                r.status, r.outcome, r.ended_reason, r.attempt::bigint,
                (SELECT count(*) FROM run_events e WHERE e.run_id = r.id AND e.status = 'dialing'),
                (SELECT coalesce(max(e.attempt), 0)::bigint FROM run_events e WHERE e.run_id = r.id)
         FROM runs r WHERE r.phone_number LIKE $1 || '%' ORDER BY r.id",
        &[&prefix],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| RunRow {
        id: r.get(0),
        phone: r.get(1),
        dialed_at: r.get(2),
        ended_at: r.get(3),
        status: r.get(4),
        outcome: r.get(5),
        ended_reason: r.get(6),
        attempt: r.get(7),
        dialing_events: r.get(8),
        max_event_attempt: r.get(9),
    })
    .collect()
}

/// Most dial starts in any window `[t, t + 1 s)`, over sorted microsecond timestamps.
fn most_starts_in_a_second(starts: &[i64]) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (i, t) in starts.iter().enumerate() {
        while starts[first] <= t - 1_000_000 {
            first += 1;
        }
        most = most.max(i - first + 1);
    }
    most
}

/// Most intervals `[start, end)` open at one instant.
fn most_overlapping(intervals: &[(i64, i64)]) -> usize {
    let mut edges: Vec<(i64, i32)> = intervals
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    // At equal times the end comes first: a call ending at t and one starting at t never
    // overlap.
    edges.sort_unstable();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}

/// Calls that died with a killed node: their ids and the kill's time.
struct Lost<'a> {
    ids: &'a [i64],
    at: i64,
}

/// Every run dialled once, within pacing and concurrency; returns the runs.
///
/// A call of a killed node is live only until the kill (the simulator plays it inside that
/// process), although its run stays live until a survivor settles it: that `ended_at` is when
/// the reaper decided, and a survivor's claim that waited on the same rows may record a
/// `dialed_at` from just before it. The overlap check counts the calls, so it ends those at
/// the kill.
fn check_dialled_exactly_once_within_limits(runs: &[RunRow], lost: &Lost<'_>) {
    for r in runs {
        assert_eq!(
            (r.dialing_events, r.attempt, r.max_event_attempt),
            (1, 1, 1),
            "run {} ({}) must have exactly one dialing event, attempt 1: {r:?}",
            r.id,
            r.phone
        );
        assert_eq!(r.status, "ended", "{r:?}");
    }
    let mut starts: Vec<i64> = runs.iter().filter_map(|r| r.dialed_at).collect();
    assert_eq!(starts.len(), runs.len(), "every run has dialed_at");
    starts.sort_unstable();
    let peak = most_starts_in_a_second(&starts);
    assert!(
        peak <= CPS,
        "{peak} dial starts within one second, configured {CPS}/s"
    );
    let intervals: Vec<(i64, i64)> = runs
        .iter()
        .map(|r| {
            let end = r.ended_at.unwrap_or(i64::MAX);
            let end = if lost.ids.contains(&r.id) {
                end.min(lost.at)
            } else {
                end
            };
            (r.dialed_at.unwrap_or(0), end)
        })
        .collect();
    let live = most_overlapping(&intervals);
    assert!(
        live <= ORG_LIMIT,
        "{live} calls live at once, organisation limit {ORG_LIMIT}"
    );
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Sends `count` triggers at once, round-robin over `nodes`; every one must be accepted.
async fn burst(
    http: &reqwest::Client,
    nodes: &[&Node],
    key: &str,
    path: &str,
    prefix: &str,
    count: usize,
) {
    let mut tasks = Vec::new();
    for i in 0..count {
        let (http, base) = (http.clone(), nodes[i % nodes.len()].base.clone());
        let (key, path) = (key.to_owned(), path.to_owned());
        let phone = format!("{prefix}{i:02}");
        tasks.push(tokio::spawn(async move {
            trigger(&http, &base, &key, &path, &phone).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "trigger refused: {}", r.text);
    }
}

async fn wait_all_ended(db: &tokio_postgres::Client, prefix: &str, count: usize, limit: Duration) {
    eventually(
        &format!("all {count} runs {prefix}… ended"),
        limit,
        || async {
            let runs = runs_with_prefix(db, prefix).await;
            (runs.len() == count && runs.iter().all(|r| r.status == "ended")).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_limits_and_survive_the_loss_of_one() {
    let Some(admin) =
        postgres_admin_url("three_nodes_share_the_limits_and_survive_the_loss_of_one")
    else {
        return;
    };
    let _serial = SERIAL.lock().await;
    let scratch = ScratchDatabase::create(&admin).await.unwrap();
    let url = scratch.url().to_owned();
    let http = reqwest::Client::new();
    let started = Instant::now();

    // The first node migrates and creates the demo organisation; the others join it.
    let mut a = Node::start(NodeSpec {
        node_id: "node-a",
        database_url: &url,
        bootstrap: true,
        env: vec![],
    });
    let (key, path) = a.first_start_credentials();
    let db = sql(&url).await;
    configure(
        &http,
        &a.base,
        &key,
        json!({"ring_ms": 20, "talk_ms": 400,
               "rules": [{"match": format!("{PHASE2_PREFIX}*"), "outcome": "completed", "talk_ms": 3000}]}),
        CPS as f64,
        json!({"max_concurrent_calls": ORG_LIMIT}),
    )
    .await;
    let mut b = Node::start(NodeSpec {
        node_id: "node-b",
        database_url: &url,
        bootstrap: false,
        env: vec![],
    });
    let mut c = Node::start(NodeSpec {
        node_id: "node-c",
        database_url: &url,
        bootstrap: false,
        env: vec![],
    });
    eprintln!("cluster up in {:?}", started.elapsed());

    // Phase 1: a burst over all three nodes.
    let phase1 = Instant::now();
    burst(
        &http,
        &[&a, &b, &c],
        &key,
        &path,
        PHASE1_PREFIX,
        PHASE1_RUNS,
    )
    .await;
    wait_all_ended(&db, PHASE1_PREFIX, PHASE1_RUNS, Duration::from_secs(60)).await;
    eprintln!(
        "phase 1: {PHASE1_RUNS} runs ended in {:?}",
        phase1.elapsed()
    );
    let runs1 = runs_with_prefix(&db, PHASE1_PREFIX).await;
    check_dialled_exactly_once_within_limits(&runs1, &Lost { ids: &[], at: 0 });
    for r in &runs1 {
        assert_eq!(r.outcome.as_deref(), Some("completed"), "{r:?}");
    }
    // Who dialled: each process counts the runs it claimed.
    let mut per_node = Vec::new();
    for n in [&a, &b, &c] {
        let dialled = n
            .metric(&http, "callgate_dispatch_latency_seconds_count")
            .await;
        per_node.push((n.node_id.clone(), dialled as usize));
    }
    eprintln!("phase 1 dials per node: {per_node:?}");
    assert_eq!(
        per_node.iter().map(|(_, n)| n).sum::<usize>(),
        PHASE1_RUNS,
        "{per_node:?}"
    );
    for (node, n) in &per_node {
        assert!(*n > 0, "{node} dialled nothing: {per_node:?}");
    }

    // Phase 2: longer calls; kill a node while it holds live ones.
    let phase2 = Instant::now();
    burst(
        &http,
        &[&a, &b, &c],
        &key,
        &path,
        PHASE2_PREFIX,
        PHASE2_RUNS,
    )
    .await;
    // Wait until the organisation's limit is in use, then kill whoever holds the most.
    let victim: String = eventually(
        "the organisation's calls are all live",
        Duration::from_secs(15),
        || async {
            let owners = db
                .query(
                    "SELECT lease_owner, count(*) FROM runs
                     WHERE status IN ('dialing', 'ringing', 'in_progress')
                     GROUP BY lease_owner ORDER BY count(*) DESC, lease_owner",
                    &[],
                )
                .await
                .unwrap();
            let live: i64 = owners.iter().map(|r| r.get::<_, i64>(1)).sum();
            (live >= ORG_LIMIT as i64)
                .then(|| owners.first().and_then(|r| r.get(0)))
                .flatten()
        },
    )
    .await;
    let killed_at = now_micros();
    for n in [&mut a, &mut b, &mut c] {
        if n.node_id == victim {
            n.kill();
        }
    }
    // Nothing but the survivors' reaper touches the dead node's runs from here on.
    let orphans: Vec<i64> = db
        .query(
            "SELECT id FROM runs WHERE lease_owner = $1
             AND status IN ('dialing', 'ringing', 'in_progress') ORDER BY id",
            &[&victim],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    eprintln!("killed {victim} holding live runs {orphans:?}");
    assert!(
        !orphans.is_empty(),
        "{victim} had no live runs left to orphan"
    );

    wait_all_ended(&db, PHASE2_PREFIX, PHASE2_RUNS, Duration::from_secs(90)).await;
    eprintln!(
        "phase 2: {PHASE2_RUNS} runs ended in {:?}",
        phase2.elapsed()
    );
    let runs2 = runs_with_prefix(&db, PHASE2_PREFIX).await;
    let lost = Lost {
        ids: &orphans,
        at: killed_at,
    };
    check_dialled_exactly_once_within_limits(&runs2, &lost);
    for r in &runs2 {
        if orphans.contains(&r.id) {
            assert_eq!(r.outcome.as_deref(), Some("failed"), "{r:?}");
            assert!(
                matches!(
                    r.ended_reason.as_deref(),
                    Some("dial_unknown" | "provider_timeout")
                ),
                "{r:?}"
            );
            // Settled after the node went stale (10 s without a heartbeat), not before.
            let settled = r.ended_at.unwrap_or(0) - killed_at;
            assert!(
                (8_000_000..40_000_000).contains(&settled),
                "orphan {} settled {settled} µs after the kill",
                r.id
            );
        } else {
            assert_eq!(r.outcome.as_deref(), Some("completed"), "{r:?}");
        }
    }
    let after_kill = runs2
        .iter()
        .filter(|r| r.dialed_at.is_some_and(|d| d > killed_at))
        .count();
    assert!(
        after_kill > 0,
        "the survivors dialled none of the queued runs"
    );
    // Both phases together stay within the limits too.
    let all: Vec<RunRow> = runs1.into_iter().chain(runs2).collect();
    check_dialled_exactly_once_within_limits(&all, &lost);

    drop((a, b, c));
    scratch.drop_database().await.unwrap();
    eprintln!("multi-node test took {:?}", started.elapsed());
}

#[test]
fn the_window_and_overlap_checks_count_what_they_claim() {
    let s = 1_000_000;
    assert_eq!(most_starts_in_a_second(&[0, s - 1, s, 2 * s]), 2);
    assert_eq!(most_starts_in_a_second(&[0, 1, 2, s + 2]), 3);
    assert_eq!(most_overlapping(&[(0, 10), (10, 20), (5, 15)]), 2);
    assert_eq!(most_overlapping(&[(0, 10), (1, 9), (2, 8)]), 3);
}

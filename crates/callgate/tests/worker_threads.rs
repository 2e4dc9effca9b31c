//! The server's runtime is sized by `CALLGATE_WORKER_THREADS`, and on SQLite by default leaves
//! the database writer a CPU. Runs the real binary and reads the size the running runtime
//! reports in its start-up log line.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

/// Starts `callgate` on SQLite in a temp dir with `worker_threads` (unset when `None`) and
/// returns the `worker_threads` its "callgate listening" log line states.
fn reported_worker_threads(worker_threads: Option<&str>) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = common::callgate_in(dir.path());
    cmd.env("CALLGATE_LOG", "info")
        .env("CALLGATE_LOG_FORMAT", "json")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(n) = worker_threads {
        cmd.env("CALLGATE_WORKER_THREADS", n);
    }
    let mut child = cmd.spawn().expect("start callgate");
    let rx = common::stdout_lines(&mut child);
    let mut seen = Vec::new();
    let reported = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let parsed: Option<serde_json::Value> = serde_json::from_str(&line).ok();
                if let Some(v) = parsed
                    .as_ref()
                    .filter(|v| v["fields"]["message"] == "callgate listening")
                {
                    break v["fields"]["worker_threads"].as_u64();
                }
                seen.push(line);
            }
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let n = reported.unwrap_or_else(|| panic!("no listening line with worker_threads; {seen:?}"));
    usize::try_from(n).expect("a small number")
}

#[test]
fn the_worker_threads_setting_sizes_the_runtime() {
    assert_eq!(reported_worker_threads(Some("3")), 3);
    assert_eq!(reported_worker_threads(Some("1")), 1);
}

#[test]
fn on_sqlite_the_default_leaves_the_writer_a_cpu() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(reported_worker_threads(None), cpus.saturating_sub(1).max(1));
}

#[test]
fn zero_worker_threads_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = common::callgate_in(dir.path())
        .env("CALLGATE_WORKER_THREADS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start callgate");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("exit");
    assert!(!status.success(), "started with 0 worker threads");
    assert!(
        stderr.contains("worker threads must be between 1 and 1024, got 0"),
        "{stderr}"
    );
}

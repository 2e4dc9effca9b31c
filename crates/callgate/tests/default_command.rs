//! `callgate` run without a command is `callgate serve`, and reads the same environment
//! variables (the README's first command relies on it). Runs the real binary on SQLite.

mod common;

use std::process::Stdio;
use std::time::Duration;

#[test]
fn the_default_command_reads_the_serve_variables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let public = "http://callgate.example.test:1234";
    let mut child = common::callgate_in(dir.path())
        .env("CALLGATE_PUBLIC_URL", public)
        .env("CALLGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start callgate");
    let rx = common::stdout_lines(&mut child);
    let mut seen = Vec::new();
    let listening = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("callgate is listening on ") => break Some(line),
            Ok(line) => seen.push(line),
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let listening = listening.unwrap_or_else(|| panic!("never listened; printed {seen:?}"));
    assert_eq!(listening, format!("callgate is listening on {public}"));
}

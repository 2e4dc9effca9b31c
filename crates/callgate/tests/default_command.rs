//! `callgate` run without a command is `callgate serve`, and reads the same environment
//! variables (the README's first command relies on it). Runs the real binary on SQLite.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn the_default_command_reads_the_serve_variables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let public = "http://callgate.example.test:1234";
    let mut child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .current_dir(dir.path())
        .env_remove("CALLGATE_CONFIG")
        .env_remove("CALLGATE_DATABASE_URL")
        .env("CALLGATE_DATA_DIR", dir.path())
        .env("CALLGATE_BIND", "127.0.0.1:0")
        .env("CALLGATE_PUBLIC_URL", public)
        .env("CALLGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start callgate");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
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

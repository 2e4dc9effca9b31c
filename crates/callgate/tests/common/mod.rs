//! Helpers shared by the tests that run the real binary.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;

/// The lines the child prints on stdout, as they come (its stdout must be piped).
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `callgate` (serving by default) on a SQLite database in `dir`, on a free port, with no
/// configuration file, database URL or runtime size from the caller's environment.
pub fn callgate_in(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"));
    cmd.current_dir(dir)
        .env_remove("CALLGATE_CONFIG")
        .env_remove("CALLGATE_DATABASE_URL")
        .env_remove("CALLGATE_WORKER_THREADS")
        .env("CALLGATE_DATA_DIR", dir)
        .env("CALLGATE_BIND", "127.0.0.1:0");
    cmd
}

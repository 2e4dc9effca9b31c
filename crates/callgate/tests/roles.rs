//! `--role api` and `--role worker` split the work across nodes sharing PostgreSQL; on the
//! embedded SQLite database the binary refuses them at start instead of running a node that
//! accepts calls nothing dials. Runs the real binary.

// Not every helper there is used here.
#[allow(dead_code)]
mod common;

use std::process::Stdio;

#[test]
fn a_split_role_on_sqlite_is_refused_at_start() {
    for role in ["api", "worker"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = common::callgate_in(dir.path())
            .args(["serve", "--role", role])
            .env("CALLGATE_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run callgate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--role {role} started on SQLite");
        assert!(
            stderr.contains("--role api and --role worker need a PostgreSQL database"),
            "--role {role}: {stderr}"
        );
        // Refused before anything was created.
        assert!(
            !dir.path().join("callgate.db").exists(),
            "--role {role} created the database"
        );
    }
}

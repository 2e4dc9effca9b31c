//! Black-box tests of the `callgate` binary in a cluster: several real processes sharing one
//! PostgreSQL database (SPEC §8.2, §8.3, §12), and PostgreSQL going away under a serving node;
//! and, on the embedded SQLite default (no PostgreSQL needed), one process killed under load and
//! restarted (`crash`) and a second process refused the id of a running one (`node_id`).
//!
//! The PostgreSQL tests run when `CALLGATE_TEST_POSTGRES_URL` names a server and a role that may
//! create databases (CI: `postgres://postgres@127.0.0.1:5432/test`); each makes a fresh
//! database and drops it afterwards. Without the variable they print a SKIPPED line and pass.
#![allow(clippy::unwrap_used)]

mod crash;
mod multinode;
mod node_id;
mod outage;
mod proxy;
mod support;

//! Black-box tests of the `callgate` binary in a cluster: several real processes sharing one
//! PostgreSQL database (SPEC §8.2, §8.3, §12), and PostgreSQL going away under a serving node;
//! and one process on the embedded SQLite default killed under load and restarted (`crash`,
//! which needs no PostgreSQL).
//!
//! The PostgreSQL tests run when `CALLGATE_TEST_POSTGRES_URL` names a server and a role that may
//! create databases (CI: `postgres://postgres@127.0.0.1:5432/test`); each makes a fresh
//! database and drops it afterwards. Without the variable they print a SKIPPED line and pass.
#![allow(clippy::unwrap_used)]

mod crash;
mod multinode;
mod outage;
mod proxy;
mod support;

//! Black-box tests: each starts a real callgate server on a free port and speaks HTTP to it.
#![allow(clippy::unwrap_used)]

mod checks;
mod dry_run;
mod idempotency;
mod lifecycle;
mod management;
mod nodes;
mod openapi;
mod runs_api;
mod support;
mod templates;
mod tenancy;
mod versions;

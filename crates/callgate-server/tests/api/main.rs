//! Black-box tests: each starts a real callgate server on a free port and speaks HTTP to it.
#![allow(clippy::unwrap_used)]

mod checks;
mod lifecycle;

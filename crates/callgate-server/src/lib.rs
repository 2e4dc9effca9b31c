//! The callgate application: the HTTP API (public trigger, management, runs, admin, ops), the
//! dispatcher that paces and dials queued runs, and the worker that applies provider events.
//! `App::build` binds its own listener (port 0 allowed) so tests start real servers cheaply.
#![forbid(unsafe_code)]

pub mod app;
pub mod bootstrap;
pub mod cache;
pub mod capacity;
pub mod config;
pub mod crypto;
pub mod http;
pub mod metrics;
pub mod trigger;
pub mod views;
pub mod worker;

pub use app::{App, AppState};
pub use config::Config;

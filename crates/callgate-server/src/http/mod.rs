//! HTTP routes, one module per resource, assembled here with the shared layers.

pub mod admin;
pub mod calls;
pub mod extract;
pub mod keys;
pub mod openapi;
pub mod ops;
pub mod org;
pub mod problem;
pub mod public;
pub mod schemas;
pub mod telephony;
pub mod workflow;

use crate::app::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use problem::ApiError;
use std::sync::Arc;

/// SPEC §11: request bodies are at most 256 KiB.
pub const BODY_LIMIT: usize = 256 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(public::router())
        .merge(calls::router())
        .merge(workflow::router())
        .merge(keys::router())
        .merge(telephony::router())
        .merge(org::router())
        .merge(admin::router())
        .merge(ops::router())
        .fallback(|| async { ApiError::not_found("route_not_found", "No such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

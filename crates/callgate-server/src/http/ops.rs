//! Operational endpoints (SPEC §12): health, readiness, Prometheus metrics.

use crate::http::extract::SharedState;
use crate::http::problem::ApiError;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::Ordering;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and the node is not draining.
async fn readyz(State(s): State<SharedState>) -> Response {
    if !s.accepting.load(Ordering::SeqCst) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "draining", "Shutting down")
            .into_response();
    }
    match s.store.is_empty().await {
        Ok(_) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => ApiError::unavailable(e).into_response(),
    }
}

async fn metrics() -> Response {
    let body = crate::metrics::handle()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

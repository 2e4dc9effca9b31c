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
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::Response;
use problem::ApiError;
use std::convert::Infallible;
use std::sync::Arc;
use tower::Service;

/// SPEC §11: request bodies are at most 256 KiB.
pub const BODY_LIMIT: usize = 256 * 1024;

/// Every route, without the shared layers (see [`service`]).
fn router(state: Arc<AppState>) -> Router {
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
        .with_state(state)
}

/// What the server serves: every route behind the shared layers. The layers wrap the router
/// once rather than through `Router::layer`, which wraps each route in its own boxed service:
/// each request then cloned three boxes instead of one (measured in docs/benchmarks.md,
/// "Twenty-second round").
pub fn service(
    state: Arc<AppState>,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send + 'static
{
    tower::ServiceBuilder::new()
        // The trace layer wraps the body; the server takes axum's body type.
        .map_response(|r: axum::http::Response<_>| r.map(Body::new))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .service(router(state))
}

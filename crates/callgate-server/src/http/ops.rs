//! Operational endpoints (SPEC §12): health, readiness, Prometheus metrics, the OpenAPI document
//! and the interactive API docs, whose Swagger UI assets are compiled into the binary so `/docs`
//! works without a CDN (air-gapped installs included).

use crate::http::extract::SharedState;
use crate::http::openapi::ApiDoc;
use crate::http::problem::ApiError;
use crate::http::schemas as doc;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use utoipa::OpenApi;

/// OpenAPI description of these routes, merged into `crate::http::openapi::ApiDoc`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, metrics, openapi_json, docs_page, docs_asset))]
pub(crate) struct Docs;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs_page))
        .route("/docs/{asset}", get(docs_asset))
}

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "Operations",
    summary = "Liveness",
    responses(
        (status = 200, description = "The process is up", body = doc::Health),
    )
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and the node is not draining.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "Operations",
    summary = "Readiness",
    responses(
        (status = 200, description = "The database answers and the node accepts work", body = doc::Ready),
        (status = 503, response = doc::Unavailable),
    )
)]
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

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "Operations",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"),
    )
)]
async fn metrics() -> Response {
    let body = crate::metrics::handle()
        .map(|h| h.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The document is fixed at compile time, so it is rendered once, on first request.
static OPENAPI_JSON: LazyLock<Result<String, String>> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .map_err(|e| e.to_string())
});

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi_json",
    tag = "Operations",
    summary = "This OpenAPI document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of every route", body = Object, content_type = "application/json"),
        (status = 500, response = doc::InternalError),
    )
)]
async fn openapi_json() -> Response {
    match &*OPENAPI_JSON {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body.clone()).into_response(),
        Err(e) => {
            ApiError::internal(format!("rendering the OpenAPI document: {e}")).into_response()
        }
    }
}

/// The page of `/docs`: Swagger UI reading `/openapi.json`, with every asset served locally.
const DOCS_PAGE: &str = include_str!("../../assets/docs/index.html");

/// Files under `/docs/{asset}`: (name, content type, bytes). Swagger UI 5.35.0 from the npm
/// package `swagger-ui-dist`, Apache-2.0; its LICENSE and NOTICE (which Apache-2.0 requires us
/// to pass on) and the licences of the libraries in the bundle are served alongside.
const DOCS_ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/docs/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/docs/swagger-ui.css"),
    ),
    (
        "swagger-ui-bundle.js.LICENSE.txt",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/docs/swagger-ui-bundle.js.LICENSE.txt"),
    ),
    (
        "LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/docs/LICENSE"),
    ),
    (
        "NOTICE",
        "text/plain; charset=utf-8",
        include_bytes!("../../assets/docs/NOTICE"),
    ),
];

/// Assets change only with the binary; an hour of caching spares reloads without pinning an
/// old UI for long after an upgrade (the file names carry no version).
const DOCS_CACHE_CONTROL: &str = "public, max-age=3600";

#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "docs_page",
    tag = "Operations",
    summary = "Interactive API docs",
    responses(
        (status = 200, description = "Swagger UI for this document; it loads only assets served by callgate", body = String, content_type = "text/html; charset=utf-8"),
    )
)]
async fn docs_page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DOCS_PAGE,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/docs/{asset}",
    operation_id = "docs_asset",
    tag = "Operations",
    summary = "A file of the docs UI",
    params(
        ("asset" = String, Path, description = "`swagger-ui-bundle.js`, `swagger-ui.css`, `swagger-ui-bundle.js.LICENSE.txt`, `LICENSE` or `NOTICE`"),
    ),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript; charset=utf-8"),
            (String = "text/css; charset=utf-8"),
            (String = "text/plain; charset=utf-8")
        )),
        (status = 404, description = "`route_not_found`: no such file", body = doc::Problem, content_type = "application/problem+json"),
    )
)]
async fn docs_asset(Path(asset): Path<String>) -> Response {
    match DOCS_ASSETS.iter().find(|(name, _, _)| *name == asset) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, DOCS_CACHE_CONTROL),
            ],
            *bytes,
        )
            .into_response(),
        // The same answer as any unknown route.
        None => ApiError::not_found("route_not_found", "No such route").into_response(),
    }
}

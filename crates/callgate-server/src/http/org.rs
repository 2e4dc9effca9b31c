//! Organisation settings and live limits (SPEC §6.3, §8.2).

use crate::http::extract::{AdminKey, Auth, JsonBody, SharedState};
use crate::http::problem::{ApiError, ApiResult};
use crate::http::schemas as doc;
use crate::views;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use callgate_store::{OnCapacity, OrgSettings};
use serde::Deserialize;
use serde_json::{Value, json};

/// OpenAPI description of these routes, merged into `crate::http::openapi::ApiDoc`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(get_settings, put_settings, limits))]
pub(crate) struct Docs;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/api/v1/organizations/settings",
            get(get_settings).put(put_settings),
        )
        .route("/api/v1/organizations/limits", get(limits))
}

/// A partial settings update, shared with the instance admin API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    max_concurrent_calls: Option<u32>,
    max_queued_calls: Option<u32>,
    on_capacity: Option<OnCapacity>,
}

impl SettingsPatch {
    pub fn apply(self, mut s: OrgSettings) -> ApiResult<OrgSettings> {
        if let Some(n) = self.max_concurrent_calls {
            if !(1..=100_000).contains(&n) {
                return Err(ApiError::invalid_field(
                    "/max_concurrent_calls",
                    "max_concurrent_calls must be between 1 and 100000",
                ));
            }
            s.max_concurrent_calls = n;
        }
        if let Some(n) = self.max_queued_calls {
            if !(1..=10_000_000).contains(&n) {
                return Err(ApiError::invalid_field(
                    "/max_queued_calls",
                    "max_queued_calls must be between 1 and 10000000",
                ));
            }
            s.max_queued_calls = n;
        }
        if let Some(o) = self.on_capacity {
            s.on_capacity = o;
        }
        Ok(s)
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/settings",
    operation_id = "get_organization_settings",
    tag = "Organization",
    summary = "Get organisation settings",
    responses(
        (status = 200, description = "Capacity settings and quota", body = doc::OrgSettings),
        (status = 401, response = doc::Unauthorized),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn get_settings(State(s): State<SharedState>, Auth(key): Auth) -> ApiResult<Json<Value>> {
    let org = s.store.get_org(key.org_id).await?;
    Ok(Json(views::settings_json(&org)))
}

#[utoipa::path(
    put,
    path = "/api/v1/organizations/settings",
    operation_id = "update_organization_settings",
    tag = "Organization",
    summary = "Update organisation settings",
    description = "Absent fields keep their value (SPEC §8.2).",
    request_body(content = doc::SettingsPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated settings", body = doc::OrgSettings),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body`: an unknown field, a value out of range or of the wrong type", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn put_settings(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> ApiResult<Json<Value>> {
    let org = s.store.get_org(key.org_id).await?;
    let settings = patch.apply(org.settings)?;
    let org = s.store.update_org_settings(key.org_id, &settings).await?;
    s.catalog.invalidate_all();
    s.dispatch.notify_one();
    Ok(Json(views::settings_json(&org)))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/limits",
    operation_id = "get_organization_limits",
    tag = "Organization",
    summary = "Get live usage against limits",
    responses(
        (status = 200, description = "Concurrent and queued calls used, quota left, per-configuration pacing", body = doc::OrgLimits),
        (status = 401, response = doc::Unauthorized),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn limits(State(s): State<SharedState>, Auth(key): Auth) -> ApiResult<Json<Value>> {
    let org = s.store.get_org(key.org_id).await?;
    let (queued, live) = s.capacity.org_usage(org.id);
    let configs = s.store.list_configs(org.id).await?;
    let per_config: Vec<Value> = configs
        .iter()
        .map(|c| {
            let live = s
                .capacity
                .with(|x| x.live_by_config.get(&c.config.id).copied().unwrap_or(0))
                .unwrap_or(0);
            json!({
                "telephony_configuration_id": c.config.id,
                "name": c.config.name,
                "calls_per_second": c.config.calls_per_second,
                "max_concurrent_calls": c.config.max_concurrent_calls,
                "concurrent_calls_used": live,
            })
        })
        .collect();
    Ok(Json(json!({
        "concurrent_calls": { "used": live, "limit": org.settings.max_concurrent_calls },
        "queued_calls": { "used": queued, "limit": org.settings.max_queued_calls },
        "on_capacity": org.settings.on_capacity,
        "quota_seconds_remaining": org.quota_seconds_remaining,
        "telephony_configurations": per_config,
    })))
}

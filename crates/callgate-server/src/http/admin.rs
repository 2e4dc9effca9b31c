//! Instance administration over HTTP (SPEC §6.4), behind the admin token. The same operations
//! back the `callgate admin` subcommands through `crate::bootstrap`'s helpers.

use crate::http::extract::Path;
use crate::http::extract::{InstanceAdmin, JsonBody, SharedState, parse_name};
use crate::http::keys::{created_key_json, issue_api_key};
use crate::http::org::SettingsPatch;
use crate::http::problem::{ApiError, ApiResult, store_error};
use crate::http::schemas as doc;
use crate::views;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Json, Router};
use callgate_store::{KeyScopes, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

/// OpenAPI description of these routes, merged into `crate::http::openapi::ApiDoc`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create_org,
    list_orgs,
    create_user,
    update_user,
    create_key,
    set_quota,
    set_settings
))]
pub(crate) struct Docs;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/api/v1/admin/organizations",
            post(create_org).get(list_orgs),
        )
        .route(
            "/api/v1/admin/organizations/{org_id}/users",
            post(create_user),
        )
        .route(
            "/api/v1/admin/organizations/{org_id}/users/{user_id}",
            put(update_user),
        )
        .route(
            "/api/v1/admin/organizations/{org_id}/api-keys",
            post(create_key),
        )
        .route("/api/v1/admin/organizations/{org_id}/quota", put(set_quota))
        .route(
            "/api/v1/admin/organizations/{org_id}/settings",
            put(set_settings),
        )
}

const ORG_NOT_FOUND: (&str, &str) = ("organization_not_found", "Organization not found");
const USER_NOT_FOUND: (&str, &str) = ("user_not_found", "User not found");

#[derive(Deserialize)]
struct OrgBody {
    name: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/organizations",
    operation_id = "admin_create_organization",
    tag = "Admin",
    summary = "Create an organisation",
    request_body(content = doc::CreateOrgRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new organisation", body = doc::CreatedOrg),
        (status = 401, response = doc::InvalidAdminToken),
        (status = 404, description = "`admin_api_disabled`: no admin token is configured", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body`: `name` missing or not 1–255 characters", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("admin_token" = []))
)]
async fn create_org(
    State(s): State<SharedState>,
    _: InstanceAdmin,
    JsonBody(b): JsonBody<OrgBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = parse_name(&b.name)?;
    let org = s.store.create_org(&name, s.clock.now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": org.id, "name": org.name})),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/organizations",
    operation_id = "admin_list_organizations",
    tag = "Admin",
    summary = "List organisations",
    responses(
        (status = 200, description = "Every organisation with its settings and quota", body = Vec<doc::OrgSettings>),
        (status = 401, response = doc::InvalidAdminToken),
        (status = 404, description = "`admin_api_disabled`: no admin token is configured", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("admin_token" = []))
)]
async fn list_orgs(State(s): State<SharedState>, _: InstanceAdmin) -> ApiResult<Json<Value>> {
    let orgs = s.store.list_orgs().await?;
    Ok(Json(Value::Array(
        orgs.iter().map(views::settings_json).collect(),
    )))
}

#[derive(Deserialize)]
struct UserBody {
    email: String,
    name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/organizations/{org_id}/users",
    operation_id = "admin_create_user",
    tag = "Admin",
    summary = "Create a user",
    params(
        ("org_id" = i64, Path, description = "The organisation's id"),
    ),
    request_body(content = doc::CreateUserRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new user", body = doc::CreatedUser),
        (status = 401, response = doc::InvalidAdminToken),
        (status = 404, description = "`admin_api_disabled`: no admin token is configured; `organization_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`: a user with this email already exists in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body`: `email` missing or not an email address", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("admin_token" = []))
)]
async fn create_user(
    State(s): State<SharedState>,
    _: InstanceAdmin,
    Path(org_id): Path<i64>,
    JsonBody(b): JsonBody<UserBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let email = b.email.trim();
    if !email.contains('@') || email.len() > 320 {
        return Err(ApiError::invalid_field(
            "/email",
            "email must be an email address",
        ));
    }
    let user = s
        .store
        .create_user(org_id, email, b.name.as_deref(), s.clock.now())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(c) => {
                ApiError::conflict(c, "A user with this email already exists")
            }
            other => store_error(other, ORG_NOT_FOUND),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": user.id, "email": user.email, "name": user.name, "active": user.active})),
    ))
}

#[derive(Deserialize)]
struct ActiveBody {
    active: bool,
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/organizations/{org_id}/users/{user_id}",
    operation_id = "admin_update_user",
    tag = "Admin",
    summary = "Activate or deactivate a user",
    params(
        ("org_id" = i64, Path, description = "The organisation's id"),
        ("user_id" = i64, Path, description = "The user's id"),
    ),
    request_body(content = doc::UserActiveRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The user's new state; a deactivated user's agents have no execution owner until reassigned", body = doc::UserActive),
        (status = 401, response = doc::InvalidAdminToken),
        (status = 404, description = "`admin_api_disabled`: no admin token is configured; `user_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body`: `active` missing or not a boolean", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("admin_token" = []))
)]
async fn update_user(
    State(s): State<SharedState>,
    _: InstanceAdmin,
    Path((org_id, user_id)): Path<(i64, i64)>,
    JsonBody(b): JsonBody<ActiveBody>,
) -> ApiResult<Json<Value>> {
    let user = s
        .store
        .set_user_active(org_id, user_id, b.active)
        .await
        .map_err(|e| store_error(e, USER_NOT_FOUND))?;
    s.catalog.invalidate_all();
    Ok(Json(
        json!({"id": user.id, "email": user.email, "active": user.active}),
    ))
}

#[derive(Deserialize)]
struct KeyBody {
    user_id: i64,
    name: String,
    #[serde(default)]
    scopes: Option<KeyScopes>,
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/organizations/{org_id}/api-keys",
    operation_id = "admin_create_api_key",
    tag = "Admin",
    summary = "Issue an API key for a user",
    params(
        ("org_id" = i64, Path, description = "The organisation's id"),
    ),
    request_body(content = doc::AdminCreateApiKeyRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new key with its raw secret, shown only here", body = doc::CreatedApiKey),
        (status = 401, response = doc::InvalidAdminToken),
        (status = 404, description = "`admin_api_disabled`: no admin token is configured; `user_not_found`: no such user in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body`: `user_id` or `name` missing, `name` not 1–255 characters, or malformed `scopes`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("admin_token" = []))
)]
async fn create_key(
    State(s): State<SharedState>,
    _: InstanceAdmin,
    Path(org_id): Path<i64>,
    JsonBody(b): JsonBody<KeyBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = parse_name(&b.name)?;
    let (key, raw) = issue_api_key(
        s.store.as_ref(),
        org_id,
        b.user_id,
        &name,
        b.scopes.unwrap_or_default(),
        s.clock.now(),
    )
    .await
    .map_err(|e| store_error(e, USER_NOT_FOUND))?;
    Ok((StatusCode::CREATED, Json(created_key_json(&key, &raw))))
}

#[derive(Deserialize)]
struct QuotaBody {
    quota_seconds_remaining: Option<i64>,
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/organizations/{org_id}/quota",
    operation_id = "admin_set_quota",
    tag = "Admin",
    summary = "Set the call-seconds quota",
    description = "Triggers are refused with 402 once the quota is at or below zero (SPEC §9).",
    params(
        ("org_id" = i64, Path, description = "The organisation's id"),
    ),
    request_body(content = doc::QuotaRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The organisation with its new quota", body = doc::OrgSettings),
        (status = 401, response = doc::InvalidAdminToken),
        (status = 404, description = "`admin_api_disabled`: no admin token is configured; `organization_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body`: `quota_seconds_remaining` not an integer or null", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("admin_token" = []))
)]
async fn set_quota(
    State(s): State<SharedState>,
    _: InstanceAdmin,
    Path(org_id): Path<i64>,
    JsonBody(b): JsonBody<QuotaBody>,
) -> ApiResult<Json<Value>> {
    let org = s
        .store
        .set_quota(org_id, b.quota_seconds_remaining)
        .await
        .map_err(|e| store_error(e, ORG_NOT_FOUND))?;
    s.catalog.invalidate_org(org_id);
    Ok(Json(views::settings_json(&org)))
}

#[utoipa::path(
    put,
    path = "/api/v1/admin/organizations/{org_id}/settings",
    operation_id = "admin_update_organization_settings",
    tag = "Admin",
    summary = "Update an organisation's settings",
    params(
        ("org_id" = i64, Path, description = "The organisation's id"),
    ),
    request_body(content = doc::SettingsPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated settings", body = doc::OrgSettings),
        (status = 401, response = doc::InvalidAdminToken),
        (status = 404, description = "`admin_api_disabled`: no admin token is configured; `organization_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body`: an unknown field, a value out of range or of the wrong type", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("admin_token" = []))
)]
async fn set_settings(
    State(s): State<SharedState>,
    _: InstanceAdmin,
    Path(org_id): Path<i64>,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> ApiResult<Json<Value>> {
    let org = s
        .store
        .get_org(org_id)
        .await
        .map_err(|e| store_error(e, ORG_NOT_FOUND))?;
    let settings = patch.apply(org.settings)?;
    let org = s.store.update_org_settings(org_id, &settings).await?;
    s.catalog.invalidate_all();
    s.dispatch.notify_one();
    Ok(Json(views::settings_json(&org)))
}

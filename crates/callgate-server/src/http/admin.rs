//! Instance administration over HTTP (SPEC §6.4), behind the admin token. The same operations
//! back the `callgate admin` subcommands through `crate::bootstrap`'s helpers.

use crate::http::extract::{InstanceAdmin, JsonBody, SharedState};
use crate::http::keys::{check_key_name, created_key_json, issue_api_key};
use crate::http::org::SettingsPatch;
use crate::http::problem::{ApiError, ApiResult, store_error};
use crate::views;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Json, Router};
use callgate_store::{KeyScopes, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

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

async fn create_org(
    State(s): State<SharedState>,
    _: InstanceAdmin,
    JsonBody(b): JsonBody<OrgBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid_field(
            "/name",
            "name must be 1 to 255 characters",
        ));
    }
    let org = s.store.create_org(name, s.clock.now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": org.id, "name": org.name})),
    ))
}

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

async fn create_key(
    State(s): State<SharedState>,
    _: InstanceAdmin,
    Path(org_id): Path<i64>,
    JsonBody(b): JsonBody<KeyBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = check_key_name(&b.name)?;
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

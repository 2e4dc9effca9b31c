//! API keys (SPEC §6.3, §11): list, create (raw key shown once), archive, reactivate.

use crate::http::extract::Path;
use crate::http::extract::{AdminKey, JsonBody, SharedState, parse_name};
use crate::http::problem::{ApiResult, store_error};
use crate::http::schemas as doc;
use crate::views;
use axum::extract::State;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use callgate_domain::apikey::generate_api_key;
use callgate_store::{ApiKey, KeyScopes, NewApiKey, OrgId, Store, StoreResult, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

/// OpenAPI description of these routes, merged into `crate::http::openapi::ApiDoc`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, archive, reactivate))]
pub(crate) struct Docs;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/user/api-keys", get(list).post(create))
        .route("/api/v1/user/api-keys/{id}", delete(archive))
        .route("/api/v1/user/api-keys/{id}/reactivate", put(reactivate))
}

/// Creates a key and returns it with its raw secret, which is not stored anywhere.
pub async fn issue_api_key(
    store: &dyn Store,
    org: OrgId,
    user: UserId,
    name: &str,
    scopes: KeyScopes,
    now: jiff::Timestamp,
) -> StoreResult<(ApiKey, String)> {
    let generated = generate_api_key();
    let key = store
        .create_api_key(
            NewApiKey {
                org_id: org,
                user_id: user,
                name: name.to_owned(),
                key_prefix: generated.prefix.clone(),
                key_hash: generated.hash,
                scopes,
            },
            now,
        )
        .await?;
    Ok((key, generated.raw))
}

/// The answer to a key creation: the only time the raw key is shown.
pub fn created_key_json(key: &ApiKey, raw: &str) -> Value {
    let mut v = views::api_key_json(key);
    if let Value::Object(m) = &mut v {
        m.insert("api_key".into(), json!(raw));
    }
    v
}

#[derive(Deserialize)]
pub struct CreateKeyBody {
    pub name: String,
    #[serde(default)]
    pub scopes: Option<KeyScopes>,
}

#[utoipa::path(
    post,
    path = "/api/v1/user/api-keys",
    operation_id = "create_api_key",
    tag = "API keys",
    summary = "Create an API key",
    description = "The key belongs to the caller's organisation and user (SPEC §11).",
    request_body(content = doc::CreateApiKeyRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new key with its raw secret, shown only here", body = doc::CreatedApiKey),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body`: `name` missing or not 1–255 characters, or malformed `scopes`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn create(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    JsonBody(body): JsonBody<CreateKeyBody>,
) -> ApiResult<Json<Value>> {
    let name = parse_name(&body.name)?;
    let (created, raw) = issue_api_key(
        s.store.as_ref(),
        key.org_id,
        key.user_id,
        &name,
        body.scopes.unwrap_or_default(),
        s.clock.now(),
    )
    .await?;
    Ok(Json(created_key_json(&created, &raw)))
}

#[utoipa::path(
    get,
    path = "/api/v1/user/api-keys",
    operation_id = "list_api_keys",
    tag = "API keys",
    summary = "List API keys",
    responses(
        (status = 200, description = "The organisation's keys, without secrets", body = Vec<doc::ApiKey>),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn list(State(s): State<SharedState>, AdminKey(key): AdminKey) -> ApiResult<Json<Value>> {
    let keys = s.store.list_api_keys(key.org_id).await?;
    Ok(Json(Value::Array(
        keys.iter().map(views::api_key_json).collect(),
    )))
}

const NOT_FOUND: (&str, &str) = ("api_key_not_found", "API key not found");

async fn set_active(s: &SharedState, org: OrgId, id: i64, active: bool) -> ApiResult<Json<Value>> {
    let k = s
        .store
        .set_api_key_active(org, id, active)
        .await
        .map_err(|e| store_error(e, NOT_FOUND))?;
    // The change must take effect at once for this node's cached lookups.
    s.catalog.invalidate_all();
    Ok(Json(views::api_key_json(&k)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/user/api-keys/{id}",
    operation_id = "archive_api_key",
    tag = "API keys",
    summary = "Archive an API key",
    params(
        ("id" = i64, Path, description = "The key's id"),
    ),
    responses(
        (status = 200, description = "The archived key; it stops working at once", body = doc::ApiKey),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`api_key_not_found`: no such key in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn archive(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    set_active(&s, key.org_id, id, false).await
}

#[utoipa::path(
    put,
    path = "/api/v1/user/api-keys/{id}/reactivate",
    operation_id = "reactivate_api_key",
    tag = "API keys",
    summary = "Reactivate an API key",
    params(
        ("id" = i64, Path, description = "The key's id"),
    ),
    responses(
        (status = 200, description = "The reactivated key", body = doc::ApiKey),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`api_key_not_found`: no such key in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn reactivate(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    set_active(&s, key.org_id, id, true).await
}

//! Request extraction: API-key and admin authentication, and JSON bodies whose every failure
//! is problem JSON (SPEC §2.3 #1–3, §11).

use crate::app::AppState;
use crate::http::problem::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use callgate_store::ApiKey;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::sync::Arc;

pub type SharedState = Arc<AppState>;

/// Checks 1–2: the `X-API-Key` of an active key. `codes` are the route's (missing, invalid).
pub async fn authenticate(
    state: &AppState,
    parts: &Parts,
    codes: (&str, &str),
) -> ApiResult<Arc<ApiKey>> {
    let raw = parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, codes.0, "Missing API key"))?;
    let hash = callgate_domain::apikey::hash_api_key(raw);
    let key = state
        .catalog
        .api_key(&hash)
        .await?
        .filter(|k| k.active)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, codes.1, "Invalid API key"))?;
    state.note_key_use(key.id);
    Ok(key)
}

/// An authenticated API key (Dograh error codes).
pub struct Auth(pub Arc<ApiKey>);

impl FromRequestParts<SharedState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> ApiResult<Self> {
        authenticate(state, parts, ("missing_api_key", "invalid_api_key"))
            .await
            .map(Auth)
    }
}

/// An authenticated key with the `admin` scope (may manage agents, keys, configurations).
pub struct AdminKey(pub Arc<ApiKey>);

impl FromRequestParts<SharedState> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> ApiResult<Self> {
        let Auth(key) = Auth::from_request_parts(parts, state).await?;
        if !key.scopes.admin {
            return Err(ApiError::forbidden(
                "forbidden_scope",
                "API key does not have admin access",
            ));
        }
        Ok(AdminKey(key))
    }
}

/// The instance admin token (`Authorization: Bearer …`, SPEC §6.4).
pub struct InstanceAdmin;

impl FromRequestParts<SharedState> for InstanceAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> ApiResult<Self> {
        let Some(token) = &state.config.admin_token else {
            return Err(ApiError::not_found(
                "admin_api_disabled",
                "The admin API is disabled (no admin token configured)",
            ));
        };
        let given = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_admin_token",
                "Invalid admin token",
            ));
        }
        Ok(InstanceAdmin)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The raw body, with the size limit reported as problem JSON.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "Request body is larger than 256 KiB",
                    )
                } else {
                    ApiError::unprocessable("invalid_body", e.body_text())
                }
            })
    }
}

/// The display-name rule shared by agents, keys, configurations and organisations: trimmed,
/// 1 to 255 characters.
pub fn parse_name(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid_field(
            "/name",
            "name must be 1 to 255 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Check 3: the body must be one JSON object.
pub fn parse_object(bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "Request body must be a JSON object",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::unprocessable(
            "invalid_body",
            "Request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::unprocessable(
            "invalid_body",
            format!("Request body is not valid JSON: {e}"),
        )),
    }
}

/// A typed JSON body; unknown fields are ignored (as in Dograh), wrong types are 422.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        let map = parse_object(&bytes)?;
        serde_json::from_value(Value::Object(map))
            .map(JsonBody)
            .map_err(|e| ApiError::unprocessable("invalid_body", format!("Invalid body: {e}")))
    }
}

/// Path parameters whose parse failures are problem JSON (422 `invalid_path`, as FastAPI —
/// and so Dograh — answers a non-integer id) instead of axum's plain-text 400.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) if e.status().is_server_error() => Err(ApiError::internal(e.body_text())),
            Err(e) => Err(ApiError::unprocessable("invalid_path", e.body_text())),
        }
    }
}

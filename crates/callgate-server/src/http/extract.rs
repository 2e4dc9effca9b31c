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
    // One UTF-8 check over the whole body, then a parse that trusts it: parsing bytes checks
    // every string on its own (~3.5 instructions per byte for a trigger's short keys and
    // values). Bytes outside strings must be ASCII JSON either way, so the same bodies pass.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::unprocessable(
            "invalid_body",
            format!(
                "Request body is not valid JSON: invalid UTF-8 at byte {}",
                e.valid_up_to()
            ),
        )
    })?;
    match serde_json::from_str::<Value>(text) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn code_and_detail(bytes: &[u8]) -> Option<(String, String)> {
        parse_object(bytes).err().map(|e| (e.code, e.detail))
    }

    #[test]
    fn a_body_is_accepted_exactly_when_it_is_a_json_object_in_utf8() {
        let bodies: &[&[u8]] = &[
            br#"{"phone_number":"+14155550100"}"#,
            "{\"name\":\"Sof\u{ed}a \u{c1}lvarez\",\"emoji\":\"\u{1f4de}\"}".as_bytes(),
            br#"{"escaped":"\u00e9\ud83d\udcde"}"#,
            br#" { } "#,
            br#"[1, 2]"#,
            br#""text""#,
            br#"{"lone":"\ud800"}"#,
            b"{\"bad\":\"\xff\"}",
            b"{\"cut\":\"\xe2\x82\"}",
            b"{\"key\xc3\":1}",
            b"\xef\xbb\xbf{}",
            b"{} \x80",
            br#"{"a":1"#,
        ];
        for body in bodies {
            // The acceptance of parsing the bytes directly, as before.
            let expected = matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(_)));
            assert_eq!(
                parse_object(body).is_ok(),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let m = parse_object("{\"name\":\"Sof\u{ed}a\"}".as_bytes()).expect("valid object");
        assert_eq!(m["name"], "Sof\u{ed}a");
    }

    #[test]
    fn invalid_utf8_is_a_422_naming_the_byte() {
        let (code, detail) = code_and_detail(b"{\"bad\":\"ab\xffcd\"}").expect("refused");
        assert_eq!(code, "invalid_body");
        assert_eq!(
            detail,
            "Request body is not valid JSON: invalid UTF-8 at byte 10"
        );
        let (code, detail) = code_and_detail(b"[1]").expect("refused");
        assert_eq!(code, "invalid_body");
        assert_eq!(detail, "Request body must be a JSON object");
        let (code, detail) = code_and_detail(b"{\"a\":").expect("refused");
        assert_eq!(code, "invalid_body");
        assert!(
            detail.starts_with("Request body is not valid JSON: "),
            "{detail}"
        );
    }
}

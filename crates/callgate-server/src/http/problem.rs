//! The one API error type: RFC 9457 problem JSON with a stable `code` (SPEC §2.3). Internal
//! causes are logged here, once, and never sent to clients.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use callgate_store::StoreError;
use serde::Serialize;
use serde_json::{Map, Value};

/// One field-level problem (`errors[]` of a validation error).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    pub pointer: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.to_owned(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extra members of the problem object (e.g. `is_valid` for publish failures). Boxed: most
    /// problems have none, and every `ApiResult` is as large as its largest variant.
    pub extra: Option<Box<Map<String, Value>>>,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Adds a member beside the problem's own, which it must not repeat: a JSON object with a
    /// key twice is read differently by different clients.
    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        debug_assert!(
            !["type", "title", "status", "detail", "code"].contains(&key),
            "problem member {key} set twice"
        );
        self.extra
            .get_or_insert_with(Box::default)
            .insert(key.to_owned(), value);
        self
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn unprocessable(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }
    pub fn not_found(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }
    pub fn forbidden(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }
    pub fn conflict(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// A 422 `invalid_body` for one field.
    pub fn invalid_field(pointer: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::unprocessable("invalid_body", message.clone()).with_errors(vec![FieldError::new(
            pointer,
            "invalid_type",
            message,
        )])
    }

    /// A 500 whose cause is logged, not shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
        )
    }

    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(%cause, "database unavailable");
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "The database is unavailable; retry shortly",
        );
        e.retry_after = Some(1);
        e
    }
}

/// Maps store errors on management routes; `NotFound` becomes the route's own 404.
pub fn store_error(e: StoreError, not_found: (&str, &str)) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(not_found.0, not_found.1),
        StoreError::Conflict(code) => ApiError::conflict(code, conflict_detail(code)),
        StoreError::Unavailable(m) => ApiError::unavailable(m),
        StoreError::Internal(m) => ApiError::internal(m),
    }
}

fn conflict_detail(code: &str) -> &'static str {
    match code {
        "trigger_path_taken" => "Trigger path is already used by another agent",
        "email_taken" => "A user with this email already exists in the organization",
        "phone_number_exists" => "This phone number is already on the configuration",
        "user_not_found" => "User not found in this organization",
        "no_draft" => "No draft to publish",
        "idempotency_key_reused" => "Idempotency-Key was already used with a different body",
        _ => "Conflict",
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        store_error(e, ("not_found", "Not found"))
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Map<String, Value>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: format!(
                "https://callgate.dev/problems/{}",
                self.code.replace('_', "-")
            ),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: &self.detail,
            code: &self.code,
            errors: &self.errors,
            extra: self.extra.as_deref(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        res
    }
}

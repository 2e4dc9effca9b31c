//! Documentation types for the OpenAPI document (SPEC §12). Handlers build their JSON in
//! `crate::views` and parse bodies by hand (to keep Dograh's error strings), so these structs are
//! never serialised or parsed: they only describe the wire shapes for `utoipa`. Keep them in step
//! with `views.rs` and the handlers' body structs; the API tests compare real responses with
//! these schemas' property lists so drift fails a test.
//!
//! Conventions: a field the server always sends is a plain type, marked `nullable` when it may be
//! `null`; an `Option` field is one a client may leave out or send as `null` (request bodies), or
//! one the server leaves out (marked `nullable = false`, since it is never `null` when present).

mod admin;
mod agents;
mod org;
mod runs;
mod trigger;

pub use admin::*;
pub use agents::*;
pub use org::*;
pub use runs::*;
pub use trigger::*;

use utoipa::{ToResponse, ToSchema};

// Errors (RFC 9457): shared by every module above.

/// An RFC 9457 problem (`application/problem+json`). `code` is stable and snake_case; `detail` is
/// the human-readable message (identical to Dograh's where Dograh has one, SPEC §2.3).
#[derive(ToSchema)]
#[schema(example = json!({
    "type": "https://callgate.dev/problems/missing-phone-number",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "phone_number is required",
    "code": "missing_phone_number",
    "errors": [{"pointer": "/phone_number", "code": "required", "message": "phone_number is required"}]
}))]
pub struct Problem {
    /// A URI naming the problem kind, derived from `code`.
    #[schema(rename = "type", format = "uri")]
    pub kind: String,
    /// The HTTP reason phrase of `status`.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for humans.
    pub detail: String,
    /// What went wrong, for programs: a stable snake_case code.
    pub code: String,
    /// Field-level problems of a validation error; absent otherwise.
    #[schema(nullable = false)]
    pub errors: Option<Vec<FieldProblem>>,
    /// Publish validation failures only: always `false`.
    #[schema(nullable = false)]
    pub is_valid: Option<bool>,
    /// Publish validation failures only: `{kind, id, field, message}` per graph problem.
    #[schema(nullable = false)]
    pub validation_errors: Option<Vec<DefinitionProblem>>,
    /// `dial_failed` only: the run that stays in history with outcome `failed`.
    #[schema(nullable = false)]
    pub workflow_run_id: Option<i64>,
    /// `dial_failed` only: that run's `call_id`.
    #[schema(nullable = false)]
    pub call_id: Option<String>,
}

/// One field-level problem of a validation error.
#[derive(ToSchema)]
pub struct FieldProblem {
    /// JSON Pointer (RFC 6901) to the offending member of the request body.
    pub pointer: String,
    /// A stable snake_case code, e.g. `required`, `invalid_type`, `invalid_phone_number`.
    pub code: String,
    /// What is wrong with it.
    pub message: String,
}

/// One problem found while validating a workflow definition graph (SPEC §6.1).
#[derive(ToSchema)]
pub struct DefinitionProblem {
    /// `graph`, `node`, `edge` or `variable`.
    pub kind: String,
    /// The node or edge id (or variable name), when the problem is about one.
    #[schema(nullable)]
    pub id: String,
    /// The offending field, when there is one.
    #[schema(nullable)]
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// `missing_api_key` or `invalid_api_key` (`unauthorized` on the outbound API): the `X-API-Key`
/// header is missing, or names an unknown, revoked or archived key (SPEC §2.3 #1–2).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Unauthorized(pub Problem);

/// `forbidden_scope`: the API key lacks the `admin` scope this route needs (SPEC §11).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct AdminScopeRequired(pub Problem);

/// `invalid_admin_token`: `Authorization: Bearer` is missing or not the configured admin token
/// (SPEC §6.4).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct InvalidAdminToken(pub Problem);

/// `body_too_large`: the request body is larger than 256 KiB (SPEC §11).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct PayloadTooLarge(pub Problem);

/// `internal_error`: an unexpected failure; the cause is logged on the server, never sent.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct InternalError(pub Problem);

/// `database_unavailable` (or `draining` on `/readyz`): retry after `Retry-After` seconds.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct Unavailable(pub Problem);

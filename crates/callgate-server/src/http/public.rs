//! The public trigger API (SPEC §2), the outbound call API (§3) and Dograh's dashboard test
//! call (§6.3 initiate-call): HTTP in, `trigger::prepare`, one durable write, HTTP out.

use crate::app::AppState;
use crate::http::extract::{RawBody, SharedState, authenticate, parse_trigger_body};
use crate::http::problem::{ApiError, ApiResult};
use crate::http::schemas as doc;
use crate::trigger::{AgentRef, Flavor, TriggerRequest, dry_run_body, prepare};
use crate::views;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use callgate_domain::lifecycle::RunStatus;
use callgate_store::{DirectClaim, Environment, IdempotencyClaim, Run, StoreError, StoredResponse};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/public/agent/{path}", post(trigger_production))
        .route("/api/v1/public/agent/test/{path}", post(trigger_test))
        .route(
            "/api/v1/public/agent/workflow/{uuid}",
            post(workflow_production),
        )
        .route(
            "/api/v1/public/agent/test/workflow/{uuid}",
            post(workflow_test),
        )
        .route("/api/v1/calls/outbound", post(outbound))
        .route("/api/v1/telephony/initiate-call", post(initiate_call))
}

/// OpenAPI description of these routes, merged into `crate::http::openapi::ApiDoc`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    trigger_production,
    trigger_test,
    workflow_production,
    workflow_test,
    outbound,
    initiate_call
))]
pub(crate) struct Docs;

/// The response format of each entry point.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Trigger,
    Outbound,
    InitiateCall,
}

struct Call {
    route: &'static str,
    env: Environment,
    flavor: Flavor,
    shape: Shape,
}

#[utoipa::path(
    post,
    path = "/api/v1/public/agent/{trigger_path}",
    operation_id = "trigger_production",
    tag = "Public triggers",
    summary = "Trigger a call (published definition)",
    description = "Dograh-compatible (SPEC §2): runs the agent whose published definition holds this trigger path. Checks run in the order of SPEC §2.3; the run name is `WR-API-<n>`.",
    params(
        ("trigger_path" = String, Path, description = "The trigger path of the agent"),
        ("dry_run" = Option<bool>, Query, description = "`true` runs every check and renders the greeting and prompts; nothing is created, counted or dialled (SPEC §2.1)"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–255 ASCII characters: the same key from the same API key on the same route with the same body replays the original answer for 24 hours"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 30): wait up to N seconds for the provider to accept or reject the dial"),
    ),
    request_body(content = doc::TriggerRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted and durably queued (`status: initiated`), or validated by a dry run (`status: validated`)", body = doc::TriggerOk,
            headers(
                ("Location" = String, description = "`/api/v1/calls/{call_id}` of the run"),
                ("Idempotent-Replayed" = String, description = "`true` when this answer is a replay of an earlier request with the same Idempotency-Key")
            )),
        (status = 400, description = "`telephony_not_configured`, `telephony_not_ready`, `from_phone_number_not_found`; `dial_failed` when `Prefer: wait` saw the provider reject the dial (the run stays in history with outcome `failed`; the problem carries its `workflow_run_id` and `call_id`)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 401, response = doc::Unauthorized),
        (status = 402, description = "`quota_exhausted`: the organisation has no call seconds left", body = doc::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the agent belongs to another organisation; `forbidden_scope`: the key is scoped to other agents or the other environment", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`trigger_not_found` (unknown, or its agent is archived), `trigger_inactive` (disabled in the executed definition), `not_published`, `trigger_not_in_agent`, `telephony_configuration_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_execution_owner`: the agent has no active owner; `idempotency_in_flight`: a request with this Idempotency-Key is still being processed", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body` (not a JSON object, or a field of the wrong type), `missing_phone_number`, `invalid_phone_number`, `invalid_variables` (declared variables missing or mistyped), `unsupported_field` (an extension this version refuses), `invalid_idempotency_key`, `idempotency_key_reused` (same key, different body)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`concurrency_limit_reached`: over capacity under the `reject` policy, or the queue is full", body = doc::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn trigger_production(
    State(s): State<SharedState>,
    Path(path): Path<String>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "trigger",
        env: Environment::Production,
        flavor: Flavor::Dograh,
        shape: Shape::Trigger,
    };
    handle(&s, call, Some(AgentRef::TriggerPath(path)), parts, &body).await
}

#[utoipa::path(
    post,
    path = "/api/v1/public/agent/test/{trigger_path}",
    operation_id = "trigger_test",
    tag = "Public triggers",
    summary = "Trigger a test call (draft definition)",
    description = "Like the production route, but executes the latest draft (else the published definition) and fills missing variables from the editor defaults (SPEC §5.5); the run name is `WR-TEST-<n>`.",
    params(
        ("trigger_path" = String, Path, description = "The trigger path of the agent"),
        ("dry_run" = Option<bool>, Query, description = "`true` runs every check and renders the greeting and prompts; nothing is created, counted or dialled (SPEC §2.1)"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–255 ASCII characters: the same key from the same API key on the same route with the same body replays the original answer for 24 hours"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 30): wait up to N seconds for the provider to accept or reject the dial"),
    ),
    request_body(content = doc::TriggerRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted and durably queued (`status: initiated`), or validated by a dry run (`status: validated`)", body = doc::TriggerOk,
            headers(
                ("Location" = String, description = "`/api/v1/calls/{call_id}` of the run"),
                ("Idempotent-Replayed" = String, description = "`true` when this answer is a replay of an earlier request with the same Idempotency-Key")
            )),
        (status = 400, description = "`telephony_not_configured`, `telephony_not_ready`, `from_phone_number_not_found`; `dial_failed` when `Prefer: wait` saw the provider reject the dial (the run stays in history with outcome `failed`; the problem carries its `workflow_run_id` and `call_id`)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 401, response = doc::Unauthorized),
        (status = 402, description = "`quota_exhausted`: the organisation has no call seconds left", body = doc::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the agent belongs to another organisation; `forbidden_scope`: the key is scoped to other agents or the other environment", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`trigger_not_found` (unknown, or its agent is archived), `trigger_inactive` (disabled in the executed definition), `not_published`, `trigger_not_in_agent`, `telephony_configuration_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_execution_owner`: the agent has no active owner; `idempotency_in_flight`: a request with this Idempotency-Key is still being processed", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body` (not a JSON object, or a field of the wrong type), `missing_phone_number`, `invalid_phone_number`, `invalid_variables` (declared variables missing or mistyped), `unsupported_field` (an extension this version refuses), `invalid_idempotency_key`, `idempotency_key_reused` (same key, different body)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`concurrency_limit_reached`: over capacity under the `reject` policy, or the queue is full", body = doc::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn trigger_test(
    State(s): State<SharedState>,
    Path(path): Path<String>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "trigger_test",
        env: Environment::Test,
        flavor: Flavor::Dograh,
        shape: Shape::Trigger,
    };
    handle(&s, call, Some(AgentRef::TriggerPath(path)), parts, &body).await
}

#[utoipa::path(
    post,
    path = "/api/v1/public/agent/workflow/{workflow_uuid}",
    operation_id = "workflow_production",
    tag = "Public triggers",
    summary = "Trigger a call by agent UUID (published definition)",
    description = "Dograh-compatible (SPEC §2): the agent is named by its UUID instead of a trigger path.",
    params(
        ("workflow_uuid" = String, Path, description = "The agent UUID (`workflow_uuid`)"),
        ("dry_run" = Option<bool>, Query, description = "`true` runs every check and renders the greeting and prompts; nothing is created, counted or dialled (SPEC §2.1)"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–255 ASCII characters: the same key from the same API key on the same route with the same body replays the original answer for 24 hours"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 30): wait up to N seconds for the provider to accept or reject the dial"),
    ),
    request_body(content = doc::TriggerRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted and durably queued (`status: initiated`), or validated by a dry run (`status: validated`)", body = doc::TriggerOk,
            headers(
                ("Location" = String, description = "`/api/v1/calls/{call_id}` of the run"),
                ("Idempotent-Replayed" = String, description = "`true` when this answer is a replay of an earlier request with the same Idempotency-Key")
            )),
        (status = 400, description = "`telephony_not_configured`, `telephony_not_ready`, `from_phone_number_not_found`; `dial_failed` when `Prefer: wait` saw the provider reject the dial (the run stays in history with outcome `failed`; the problem carries its `workflow_run_id` and `call_id`)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 401, response = doc::Unauthorized),
        (status = 402, description = "`quota_exhausted`: the organisation has no call seconds left", body = doc::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the agent belongs to another organisation; `forbidden_scope`: the key is scoped to other agents or the other environment", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workflow_not_found`, `workflow_inactive` (archived), `not_published`, `telephony_configuration_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_execution_owner`: the agent has no active owner; `idempotency_in_flight`: a request with this Idempotency-Key is still being processed", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body` (not a JSON object, or a field of the wrong type), `missing_phone_number`, `invalid_phone_number`, `invalid_variables` (declared variables missing or mistyped), `unsupported_field` (an extension this version refuses), `invalid_idempotency_key`, `idempotency_key_reused` (same key, different body)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`concurrency_limit_reached`: over capacity under the `reject` policy, or the queue is full", body = doc::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn workflow_production(
    State(s): State<SharedState>,
    Path(uuid): Path<String>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "workflow",
        env: Environment::Production,
        flavor: Flavor::Dograh,
        shape: Shape::Trigger,
    };
    handle(&s, call, Some(AgentRef::WorkflowUuid(uuid)), parts, &body).await
}

#[utoipa::path(
    post,
    path = "/api/v1/public/agent/test/workflow/{workflow_uuid}",
    operation_id = "workflow_test",
    tag = "Public triggers",
    summary = "Trigger a test call by agent UUID (draft definition)",
    description = "Executes the latest draft, else the published definition.",
    params(
        ("workflow_uuid" = String, Path, description = "The agent UUID (`workflow_uuid`)"),
        ("dry_run" = Option<bool>, Query, description = "`true` runs every check and renders the greeting and prompts; nothing is created, counted or dialled (SPEC §2.1)"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–255 ASCII characters: the same key from the same API key on the same route with the same body replays the original answer for 24 hours"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 30): wait up to N seconds for the provider to accept or reject the dial"),
    ),
    request_body(content = doc::TriggerRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted and durably queued (`status: initiated`), or validated by a dry run (`status: validated`)", body = doc::TriggerOk,
            headers(
                ("Location" = String, description = "`/api/v1/calls/{call_id}` of the run"),
                ("Idempotent-Replayed" = String, description = "`true` when this answer is a replay of an earlier request with the same Idempotency-Key")
            )),
        (status = 400, description = "`telephony_not_configured`, `telephony_not_ready`, `from_phone_number_not_found`; `dial_failed` when `Prefer: wait` saw the provider reject the dial (the run stays in history with outcome `failed`; the problem carries its `workflow_run_id` and `call_id`)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 401, response = doc::Unauthorized),
        (status = 402, description = "`quota_exhausted`: the organisation has no call seconds left", body = doc::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the agent belongs to another organisation; `forbidden_scope`: the key is scoped to other agents or the other environment", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workflow_not_found`, `workflow_inactive` (archived), `not_published`, `telephony_configuration_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_execution_owner`: the agent has no active owner; `idempotency_in_flight`: a request with this Idempotency-Key is still being processed", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body` (not a JSON object, or a field of the wrong type), `missing_phone_number`, `invalid_phone_number`, `invalid_variables` (declared variables missing or mistyped), `unsupported_field` (an extension this version refuses), `invalid_idempotency_key`, `idempotency_key_reused` (same key, different body)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`concurrency_limit_reached`: over capacity under the `reject` policy, or the queue is full", body = doc::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn workflow_test(
    State(s): State<SharedState>,
    Path(uuid): Path<String>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "workflow_test",
        env: Environment::Test,
        flavor: Flavor::Dograh,
        shape: Shape::Trigger,
    };
    handle(&s, call, Some(AgentRef::WorkflowUuid(uuid)), parts, &body).await
}

#[utoipa::path(
    post,
    path = "/api/v1/calls/outbound",
    operation_id = "create_outbound_call",
    tag = "Calls",
    summary = "Place an outbound call",
    description = "VoiceInfra-compatible (SPEC §3): runs the agent's published definition. Errors use this API's own codes (`unauthorized`, `invalid_phone`, `not_found`) where they differ.",
    params(
        ("dry_run" = Option<bool>, Query, description = "`true` runs every check and renders the greeting and prompts; nothing is created, counted or dialled (SPEC §2.1)"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–255 ASCII characters: the same key from the same API key on the same route with the same body replays the original answer for 24 hours"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 30): wait up to N seconds for the provider to accept or reject the dial"),
    ),
    request_body(content = doc::OutboundRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted and durably queued, or validated by a dry run", body = doc::OutboundOk,
            headers(
                ("Location" = String, description = "`/api/v1/calls/{call_id}` of the run"),
                ("Idempotent-Replayed" = String, description = "`true` when this answer is a replay of an earlier request with the same Idempotency-Key")
            )),
        (status = 400, description = "`telephony_not_configured`, `telephony_not_ready`, `from_phone_number_not_found`; `dial_failed` when `Prefer: wait` saw the provider reject the dial (the run stays in history with outcome `failed`; the problem carries its `workflow_run_id` and `call_id`)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 401, response = doc::Unauthorized),
        (status = 402, description = "`quota_exhausted`: the organisation has no call seconds left", body = doc::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden_scope`: the key is scoped to other agents or the other environment", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the agent is unknown, archived or has no published definition; `telephony_configuration_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_execution_owner`: the agent has no active owner; `idempotency_in_flight`: a request with this Idempotency-Key is still being processed", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body` (not a JSON object, a field of the wrong type, `agent_id` missing), `invalid_phone` (bad `to_number` or `from_number`, or `from_number` not an active number of the organisation), `invalid_variables`, `unsupported_field`, `invalid_idempotency_key`, `idempotency_key_reused`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`concurrency_limit_reached`: over capacity under the `reject` policy, or the queue is full", body = doc::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn outbound(State(s): State<SharedState>, parts: Parts, RawBody(body): RawBody) -> Response {
    let call = Call {
        route: "outbound",
        env: Environment::Production,
        flavor: Flavor::Outbound,
        shape: Shape::Outbound,
    };
    handle(&s, call, None, parts, &body).await
}

#[utoipa::path(
    post,
    path = "/api/v1/telephony/initiate-call",
    operation_id = "initiate_call",
    tag = "Calls",
    summary = "Place a test call (Dograh dashboard)",
    description = "Dograh's dashboard test call, used by `dograh-sdk`'s `test_phone_call` (SPEC §6.3): runs the agent's draft, else its published definition, exactly like the test trigger route.",
    params(
        ("dry_run" = Option<bool>, Query, description = "`true` runs every check and renders the greeting and prompts; nothing is created, counted or dialled (SPEC §2.1)"),
        ("Idempotency-Key" = Option<String>, Header, description = "1–255 ASCII characters: the same key from the same API key on the same route with the same body replays the original answer for 24 hours"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N ≤ 30): wait up to N seconds for the provider to accept or reject the dial"),
    ),
    request_body(content = doc::InitiateCallRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted and durably queued, or validated by a dry run", body = doc::InitiateCallOk,
            headers(
                ("Location" = String, description = "`/api/v1/calls/{call_id}` of the run"),
                ("Idempotent-Replayed" = String, description = "`true` when this answer is a replay of an earlier request with the same Idempotency-Key")
            )),
        (status = 400, description = "`telephony_not_configured`, `telephony_not_ready`, `from_phone_number_not_found`; `dial_failed` when `Prefer: wait` saw the provider reject the dial (the run stays in history with outcome `failed`; the problem carries its `workflow_run_id` and `call_id`)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 401, response = doc::Unauthorized),
        (status = 402, description = "`quota_exhausted`: the organisation has no call seconds left", body = doc::Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden_scope`: the key is scoped to other agents or the other environment", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`workflow_not_found` (no agent with this `workflow_id` in the organisation), `workflow_inactive` (archived), `not_published`, `telephony_configuration_not_found`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_execution_owner`: the agent has no active owner; `idempotency_in_flight`: a request with this Idempotency-Key is still being processed", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body` (not a JSON object, a field of the wrong type, `workflow_id` missing or not an integer), `missing_phone_number`, `invalid_phone_number`, `invalid_variables`, `unsupported_field`, `invalid_idempotency_key`, `idempotency_key_reused`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 429, description = "`concurrency_limit_reached`: over capacity under the `reject` policy, or the queue is full", body = doc::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn initiate_call(
    State(s): State<SharedState>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "initiate_call",
        env: Environment::Test,
        flavor: Flavor::Dograh,
        shape: Shape::InitiateCall,
    };
    handle(&s, call, None, parts, &body).await
}

async fn handle(
    state: &Arc<AppState>,
    call: Call,
    agent: Option<AgentRef>,
    parts: Parts,
    body: &[u8],
) -> Response {
    let route = call.route;
    let res = accept(state, call, agent, &parts, body).await;
    let res = match res {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    crate::metrics::trigger(route, res.status().as_u16());
    res
}

/// Removes an in-flight idempotency key when the request finishes, however it finishes.
struct InFlight<'a> {
    state: &'a AppState,
    key: (i64, String, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.state.inflight.lock() {
            set.remove(&self.key);
        }
    }
}

fn query_flag(parts: &Parts, name: &str) -> bool {
    parts.uri.query().is_some_and(|q| {
        q.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            k == name && matches!(v, "true" | "1" | "yes")
        })
    })
}

/// `Prefer: wait=N` (N ≤ 30).
fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("prefer")?.to_str().ok()?;
    v.split([',', ';'])
        .filter_map(|p| p.trim().strip_prefix("wait="))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .map(|n| Duration::from_secs(n.min(30)))
        .next()
}

async fn accept(
    state: &Arc<AppState>,
    call: Call,
    agent: Option<AgentRef>,
    parts: &Parts,
    body: &[u8],
) -> ApiResult<Response> {
    let codes = match call.flavor {
        Flavor::Outbound => ("unauthorized", "unauthorized"),
        Flavor::Dograh => ("missing_api_key", "invalid_api_key"),
    };
    let key = authenticate(state, parts, codes).await?;
    let dry_run = query_flag(parts, "dry_run");

    // Idempotency (SPEC §2.1): replay, reuse with another body, or in flight.
    let idem_key = parts
        .headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| {
            ApiError::unprocessable("invalid_idempotency_key", "Idempotency-Key must be ASCII")
        })?;
    if idem_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 255)
    {
        return Err(ApiError::unprocessable(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 characters",
        ));
    }
    // Only idempotent requests compare bodies.
    let body_hash: [u8; 32] = match &idem_key {
        Some(_) => Sha256::digest(body).into(),
        None => [0; 32],
    };
    let route_id = parts.uri.path().to_owned();
    let mut _guard = None;
    let mut claim = None;
    if let (Some(k), false) = (&idem_key, dry_run) {
        let inflight_key = (key.id, route_id.clone(), k.clone());
        let fresh = state
            .inflight
            .lock()
            .map(|mut set| set.insert(inflight_key.clone()))
            .unwrap_or(false);
        if !fresh {
            return Err(ApiError::conflict(
                "idempotency_in_flight",
                "A request with this Idempotency-Key is still being processed",
            ));
        }
        _guard = Some(InFlight {
            state,
            key: inflight_key,
        });
        if let Some(resp) = replay(
            state, &call, key.org_id, key.id, &route_id, k, &body_hash, body,
        )
        .await?
        {
            return Ok(resp);
        }
        claim = Some(IdempotencyClaim {
            api_key_id: key.id,
            route: route_id.clone(),
            key: k.clone(),
            body_hash,
        });
    }

    let (map, context) = parse_trigger_body(body, call.flavor.context_field())?;
    let agent = match (agent, call.shape) {
        (Some(a), _) => a,
        (None, Shape::Outbound) => match map.get("agent_id") {
            None | Some(Value::Null) => {
                return Err(ApiError::invalid_field("/agent_id", "agent_id is required"));
            }
            Some(v @ (Value::Number(_) | Value::String(_))) => AgentRef::AgentId(v.clone()),
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "/agent_id",
                    "agent_id must be an integer or a UUID string",
                ));
            }
        },
        (None, _) => match map.get("workflow_id") {
            Some(Value::Number(n)) if n.is_i64() => AgentRef::WorkflowId(n.as_i64().unwrap_or(0)),
            None | Some(Value::Null) => {
                return Err(ApiError::invalid_field(
                    "/workflow_id",
                    "workflow_id is required",
                ));
            }
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "/workflow_id",
                    "workflow_id must be an integer",
                ));
            }
        },
    };
    let agent_value = map.get("agent_id").cloned().unwrap_or(Value::Null);
    let req = TriggerRequest {
        env: call.env,
        agent,
        flavor: call.flavor,
        key: key.clone(),
        body: map,
        context,
        dry_run,
    };
    let prepared = prepare(state, req).await?;
    if dry_run {
        return Ok((StatusCode::OK, axum::Json(dry_run_body(&prepared))).into_response());
    }

    let wait = prefer_wait(&parts.headers);
    let waiter = wait.map(|_| state.register_dial_waiter(prepared.run.id));
    // A node that dials asks for the run to be claimed as it is written when nothing waits
    // before it: no dispatcher pass between the answer and the dial (SPEC §8.2 limits hold).
    let written = if state.config.run_worker {
        let direct = DirectClaim {
            limits: prepared.limits,
            node: state.config.node_id.clone(),
        };
        state
            .store
            .enqueue_or_claim(prepared.run, claim, &direct)
            .await
    } else {
        state.store.enqueue_run(prepared.run, claim).await
    };
    let run = match written {
        Ok(run) => run,
        Err(StoreError::Conflict("idempotency_key_reused")) => {
            // Another node took the key between our lookup and our write.
            if let Some(k) = &idem_key
                && let Some(resp) = replay(
                    state, &call, key.org_id, key.id, &route_id, k, &body_hash, body,
                )
                .await?
            {
                return Ok(resp);
            }
            return Err(ApiError::conflict(
                "idempotency_in_flight",
                "A request with this Idempotency-Key is still being processed",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if run.status == RunStatus::Dialing {
        crate::worker::dispatcher::dial_claimed(state, &run).await;
    } else {
        state.run_enqueued(&run);
    }

    let mut answered = run;
    let (Some(wait), Some(rx)) = (wait, waiter) else {
        return Ok(respond(&call, &answered, &agent_value, false));
    };
    // With `Prefer: wait` the answer depends on the provider, so an idempotent replay cannot
    // rebuild it from the run: it is stored as sent.
    let res = match wait_for_dial(state, rx, key.org_id, answered.id, wait).await {
        Some(Err(message)) => {
            // The run stays in history (outcome `failed`); say which one it is.
            ApiError::bad_request("dial_failed", format!("Failed to initiate call: {message}"))
                .with_extra("workflow_run_id", json!(answered.id))
                .with_extra("call_id", json!(answered.call_id.to_string()))
                .into_response()
        }
        Some(Ok(())) => {
            if let Ok(r) = state.store.get_run(key.org_id, answered.id).await {
                answered = r;
                // `call_status` reports the status at the time of the answer.
                answered.initial_status = answered.status;
            }
            respond(&call, &answered, &agent_value, false)
        }
        None => {
            state.forget_dial_waiter(answered.id);
            respond(&call, &answered, &agent_value, false)
        }
    };
    let Some(k) = idem_key else {
        return Ok(res);
    };
    let status = res.status().as_u16();
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, crate::http::BODY_LIMIT)
        .await
        .map_err(ApiError::internal)?;
    let stored = StoredResponse {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    if let Err(e) = state
        .store
        .save_idempotent_response(key.id, &route_id, &k, stored)
        .await
    {
        tracing::warn!(error = %e, "could not store the idempotent answer; replays rebuild it");
    }
    Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
}

/// How often `Prefer: wait` looks at the run in the database while no local dial reports.
const DIAL_POLL: Duration = Duration::from_millis(100);

/// The dial's result for `Prefer: wait`, or `None` if it did not come within `wait`. This
/// node's dialler reports at once when it dials the run itself; otherwise the run is dialled
/// by another node (a node with `--role api` dials nothing, and any worker may claim a queued
/// run), and only the database shows how the dial went.
async fn wait_for_dial(
    state: &AppState,
    mut local: tokio::sync::oneshot::Receiver<crate::app::DialResult>,
    org: i64,
    run_id: i64,
    wait: Duration,
) -> Option<crate::app::DialResult> {
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    let mut local_open = true;
    loop {
        tokio::select! {
            r = &mut local, if local_open => match r {
                Ok(result) => return Some(result),
                Err(_) => local_open = false,
            },
            _ = &mut deadline => return None,
            _ = tokio::time::sleep(DIAL_POLL) => {
                if let Ok(run) = state.store.get_run(org, run_id).await
                    && let Some(result) = dial_result_of(&run)
                {
                    return Some(result);
                }
            }
        }
    }
}

/// What a run in the database says of its dial: placed once the provider named the call or it
/// rings; failed if it ended before that (the provider refused it, or it was never placed).
fn dial_result_of(run: &Run) -> Option<crate::app::DialResult> {
    if run.provider_call_id.is_some()
        || matches!(run.status, RunStatus::Ringing | RunStatus::InProgress)
    {
        return Some(Ok(()));
    }
    (run.status == RunStatus::Ended).then(|| {
        Err(run
            .error
            .clone()
            .or_else(|| run.ended_reason.clone())
            .unwrap_or_else(|| "the call ended before it was placed".to_owned()))
    })
}

#[allow(clippy::too_many_arguments)]
async fn replay(
    state: &AppState,
    call: &Call,
    org: i64,
    key_id: i64,
    route_id: &str,
    key: &str,
    body_hash: &[u8; 32],
    body: &[u8],
) -> ApiResult<Option<Response>> {
    let since = state.clock.now() - jiff::SignedDuration::from_hours(24);
    let Some(rec) = state
        .store
        .find_idempotency(key_id, route_id, key, since)
        .await?
    else {
        return Ok(None);
    };
    if &rec.body_hash != body_hash {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "Idempotency-Key was already used with a different request body",
        ));
    }
    if let Some(stored) = rec.response {
        let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
        let content_type = if status.is_success() {
            "application/json"
        } else {
            "application/problem+json"
        };
        let mut res = (status, stored.body).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        if status.is_success() {
            let run = state.store.get_run(org, rec.run_id).await?;
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/calls/{}", run.call_id)) {
                headers.insert(header::LOCATION, v);
            }
        }
        return Ok(Some(res));
    }
    let run = state.store.get_run(org, rec.run_id).await?;
    let agent_value = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("agent_id").cloned())
        .unwrap_or(Value::Null);
    Ok(Some(respond(call, &run, &agent_value, true)))
}

fn respond(call: &Call, run: &Run, agent_value: &Value, replayed: bool) -> Response {
    let body = match call.shape {
        Shape::Trigger => axum::Json(views::trigger_response(run)).into_response(),
        Shape::Outbound => axum::Json(views::outbound_response(run, agent_value)).into_response(),
        Shape::InitiateCall => {
            let name = views::run_name(run.id, run.environment);
            axum::Json(json!({
                "message": format!("Call initiated successfully with run name {name}"),
                "workflow_run_id": run.id,
                "workflow_run_name": name,
                "call_id": run.call_id.to_string(),
            }))
            .into_response()
        }
    };
    let mut res = (StatusCode::OK, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/calls/{}", run.call_id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

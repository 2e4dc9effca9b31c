//! Request and answer shapes of the public trigger API (SPEC §2), the outbound API (§3) and
//! Dograh's initiate-call (§6.3).

use super::{Environment, Provider, RunStatus};
use serde_json::Value;
use utoipa::ToSchema;

/// A call request on a public trigger route (SPEC §2.1). Unknown top-level fields are ignored.
/// The extension fields `scheduled_at`, `not_after`, `calling_window`, `retry`, `callback_url`,
/// `machine_detection`, `max_duration_seconds` and `ring_timeout_seconds` are refused with 422
/// `unsupported_field` by this version rather than silently ignored.
#[derive(ToSchema)]
#[schema(example = json!({
    "phone_number": "+14155550100",
    "initial_context": {"customer_name": "Jane", "appointment_date": "Tuesday"}
}))]
pub struct TriggerRequest {
    /// Destination in E.164; spaces, dashes and parentheses are stripped first. Required.
    pub phone_number: Option<String>,
    /// Per-call template variables (at most 64 KiB serialised, 16 levels deep). Dograh's
    /// `greeting_override: {"type": "text", "text": …}` inside it is honoured.
    #[schema(value_type = Option<Object>)]
    pub initial_context: Option<Value>,
    /// Use this telephony configuration instead of the organisation's default outbound one.
    pub telephony_configuration_id: Option<i64>,
    /// Caller ID: a phone number id of the resolved configuration.
    pub from_phone_number_id: Option<i64>,
    /// Overrides the agent's greeting for this call (templated).
    pub first_message: Option<String>,
    /// Echoed unchanged in the run and its webhooks (at most 16 KiB); not visible to templates.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// The caller's own id for this call (at most 128 characters); filterable in the runs list.
    #[schema(max_length = 128)]
    pub external_id: Option<String>,
}

/// The answer of an accepted trigger (SPEC §2.2).
#[derive(ToSchema)]
pub struct TriggerResponse {
    /// Always `initiated`.
    #[schema(example = "initiated")]
    pub status: String,
    /// The run's integer id.
    pub workflow_run_id: i64,
    /// `WR-API-<n>` on production routes, `WR-TEST-<n>` on test routes.
    #[schema(example = "WR-API-0042")]
    pub workflow_run_name: String,
    /// The run's UUID, used by the calls API and webhooks.
    #[schema(format = "uuid")]
    pub call_id: String,
    /// Lifecycle status when the answer was written.
    pub call_status: RunStatus,
    /// Version number of the definition pinned to this run.
    pub agent_version: i64,
    /// The telephony configuration that will place the call.
    pub telephony_configuration_id: i64,
    /// The caller ID that will be used (null for the simulator without numbers).
    #[schema(nullable)]
    pub from_number: String,
    /// The earliest time the call will be dialled.
    #[schema(format = DateTime)]
    pub scheduled_for: String,
}

/// The answer of `?dry_run=true`: every check passed, nothing was created or dialled.
#[derive(ToSchema)]
pub struct DryRunResponse {
    /// Always `validated`.
    #[schema(example = "validated")]
    pub status: String,
    pub agent_id: i64,
    #[schema(format = "uuid")]
    pub workflow_uuid: String,
    pub agent_version: i64,
    pub trigger_mode: Environment,
    /// The normalised destination.
    pub phone_number: String,
    pub telephony_configuration_id: i64,
    pub provider: Provider,
    #[schema(nullable)]
    pub from_number: String,
    /// The greeting as it would be spoken.
    #[schema(nullable)]
    pub rendered_greeting: String,
    /// Every node prompt, rendered.
    pub rendered_prompts: Vec<RenderedPrompt>,
    /// Template variables that had no value and no fallback.
    pub unresolved_variables: Vec<String>,
    #[schema(format = DateTime)]
    pub scheduled_for: String,
}

/// One node prompt rendered by a dry run.
#[derive(ToSchema)]
pub struct RenderedPrompt {
    pub node_id: String,
    pub text: String,
}

/// 200 on a trigger route: the run was accepted, or (with `?dry_run=true`) validated.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum TriggerOk {
    Initiated(TriggerResponse),
    Validated(DryRunResponse),
}

/// A call request on the outbound API (SPEC §3, VoiceInfra-compatible).
#[derive(ToSchema)]
#[schema(example = json!({"agent_id": 1, "to_number": "+14155550100", "variables": {"customer_name": "Jane"}}))]
pub struct OutboundRequest {
    /// The agent's integer id or its UUID. Required.
    #[schema(value_type = Option<Value>)]
    pub agent_id: Option<Value>,
    /// Destination in E.164. Required.
    pub to_number: Option<String>,
    /// Caller ID in E.164: an active phone number of one of the organisation's configurations,
    /// which then places the call.
    pub from_number: Option<String>,
    /// Greeting override for this call.
    pub first_message: Option<String>,
    /// Text appended to the agent's system prompt for this call only.
    pub context: Option<String>,
    /// Template variables (same role as `initial_context`).
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Value>,
    pub telephony_configuration_id: Option<i64>,
    pub from_phone_number_id: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[schema(max_length = 128)]
    pub external_id: Option<String>,
}

/// The answer of the outbound API (SPEC §3).
#[derive(ToSchema)]
pub struct OutboundResponse {
    #[schema(format = "uuid")]
    pub call_id: String,
    /// Always `queued`.
    #[schema(example = "queued")]
    pub status: String,
    /// The `agent_id` of the request, echoed.
    #[schema(value_type = Value)]
    pub agent_id: Value,
    pub to_number: String,
    /// The caller ID actually resolved.
    #[schema(nullable)]
    pub from_number: String,
    #[schema(format = DateTime)]
    pub queued_at: String,
    pub workflow_run_id: i64,
}

/// Dograh's dashboard test call (SPEC §6.3): runs the agent's draft, else its published version.
#[derive(ToSchema)]
#[schema(example = json!({"workflow_id": 1, "phone_number": "+14155550100"}))]
pub struct InitiateCallRequest {
    /// The agent's integer id. Required.
    pub workflow_id: Option<i64>,
    /// Destination in E.164. Required.
    pub phone_number: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub initial_context: Option<Value>,
    pub telephony_configuration_id: Option<i64>,
    pub from_phone_number_id: Option<i64>,
    pub first_message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[schema(max_length = 128)]
    pub external_id: Option<String>,
}

/// The answer of initiate-call.
#[derive(ToSchema)]
pub struct InitiateCallResponse {
    #[schema(example = "Call initiated successfully with run name WR-TEST-0042")]
    pub message: String,
    pub workflow_run_id: i64,
    pub workflow_run_name: String,
    #[schema(format = "uuid")]
    pub call_id: String,
}

/// 200 on the outbound API: the run was accepted, or (with `?dry_run=true`) validated.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum OutboundOk {
    Queued(OutboundResponse),
    Validated(DryRunResponse),
}

/// 200 on initiate-call: the run was accepted, or (with `?dry_run=true`) validated.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum InitiateCallOk {
    Initiated(InitiateCallResponse),
    Validated(DryRunResponse),
}

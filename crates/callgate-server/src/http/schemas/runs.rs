//! Run shapes (SPEC §4.1) and the enums the lifecycle and providers share (§7, §8).

use serde_json::Value;
use utoipa::ToSchema;

/// Lifecycle status of a run (SPEC §8.1).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Scheduled,
    Queued,
    Dialing,
    Ringing,
    InProgress,
    Ended,
}

/// How an ended run ended (SPEC §8.1).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Busy,
    NoAnswer,
    Voicemail,
    Failed,
    Canceled,
    Expired,
    Rejected,
}

/// Which definition a route executes: the published one, or the draft (SPEC §2, §11).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Production,
    Test,
}

/// A telephony provider (SPEC §7.1).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Simulator,
    Twilio,
    Vonage,
    Plivo,
    Telnyx,
}

/// One utterance of a transcript.
#[derive(ToSchema)]
pub struct TranscriptEntry {
    /// `agent` or `user`.
    pub role: String,
    pub text: String,
    #[schema(format = DateTime)]
    pub at: String,
}

/// One status change of a run.
#[derive(ToSchema)]
pub struct RunEvent {
    pub status: RunStatus,
    #[schema(format = DateTime)]
    pub at: String,
    pub attempt: u32,
    /// The provider's own status name, when a provider reported the change.
    #[schema(nullable = false)]
    pub provider_status: Option<String>,
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

/// A run with its results (SPEC §4.1). Times are RFC 3339 UTC.
#[derive(ToSchema)]
pub struct Run {
    #[schema(format = "uuid")]
    pub call_id: String,
    pub workflow_run_id: i64,
    /// `WR-API-<n>` or `WR-TEST-<n>`.
    pub name: String,
    pub agent_id: i64,
    #[schema(format = "uuid")]
    pub workflow_uuid: String,
    pub agent_version: i64,
    pub trigger_mode: Environment,
    pub phone_number: String,
    #[schema(nullable)]
    pub from_number: String,
    pub telephony_configuration_id: i64,
    pub provider: Provider,
    #[schema(nullable)]
    pub provider_call_id: String,
    pub status: RunStatus,
    #[schema(nullable)]
    pub outcome: Outcome,
    /// E.g. `agent_hangup`, `user_hangup`, `max_duration`, `provider_error`, `provider_timeout`.
    #[schema(nullable)]
    pub ended_reason: String,
    /// `human` or `machine` when machine detection ran.
    #[schema(nullable)]
    pub answered_by: String,
    pub attempt: u32,
    pub max_attempts: u32,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub scheduled_for: String,
    #[schema(nullable, format = DateTime)]
    pub dialed_at: String,
    #[schema(nullable, format = DateTime)]
    pub answered_at: String,
    #[schema(nullable, format = DateTime)]
    pub ended_at: String,
    /// Answered → ended, in seconds.
    #[schema(nullable)]
    pub duration_seconds: i64,
    pub transcript: Vec<TranscriptEntry>,
    #[schema(nullable, format = "uri")]
    pub recording_url: String,
    /// Variables the agent collected.
    #[schema(value_type = Object, nullable)]
    pub extracted: Value,
    /// The caller's context with the system values of SPEC §2.4 laid over it.
    #[schema(value_type = Object)]
    pub initial_context: Value,
    /// The caller's `metadata`, unchanged.
    #[schema(value_type = Value)]
    pub metadata: Value,
    #[schema(nullable)]
    pub external_id: String,
    pub unresolved_variables: Vec<String>,
    /// The rendered greeting.
    #[schema(nullable)]
    pub greeting: String,
    #[schema(nullable)]
    pub error: String,
    /// Status history, oldest first.
    pub events: Vec<RunEvent>,
}

/// One page of `GET /api/v1/calls`, newest first.
#[derive(ToSchema)]
pub struct RunList {
    pub data: Vec<Run>,
    /// Pass as `cursor` to get the next page; null on the last page.
    #[schema(nullable)]
    pub next_cursor: String,
}

/// Dograh's run view: SPEC §4.1 plus Dograh's own field names.
#[derive(ToSchema)]
pub struct DograhRun {
    #[serde(flatten)]
    pub run: Run,
    /// Same as `workflow_run_id`.
    pub id: i64,
    /// Same as `agent_id`.
    pub workflow_id: i64,
    /// The provider.
    pub mode: String,
    pub is_completed: bool,
    /// Always null: transcripts are inline.
    #[schema(nullable)]
    pub transcript_url: String,
    #[schema(value_type = Object)]
    pub cost_info: Value,
    #[schema(value_type = Object)]
    pub usage_info: Value,
    /// The definition version id.
    pub definition_id: i64,
    /// Always `outbound`.
    pub call_type: String,
    /// Same as `extracted` (an empty object before the call ends).
    #[schema(value_type = Object)]
    pub gathered_context: Value,
    /// `{"events": [...]}`.
    #[schema(value_type = Object)]
    pub logs: Value,
}

/// One page of Dograh's run list.
#[derive(ToSchema)]
pub struct DograhRunList {
    pub runs: Vec<DograhRun>,
    pub page: u32,
    pub limit: u32,
}

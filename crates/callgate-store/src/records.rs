//! Records the store hands out. They are plain data; wire formats live in the server.

pub use callgate_domain::context::InitialContext;
use callgate_domain::lifecycle::{Outcome, RunStatus};
pub use callgate_domain::system_context::{SystemContext, SystemFields};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub type OrgId = i64;
pub type UserId = i64;
pub type ApiKeyId = i64;
pub type AgentId = i64;
pub type VersionId = i64;
pub type ConfigId = i64;
pub type NumberId = i64;
pub type RunId = i64;

/// What a full organisation queue or a busy organisation does to new triggers (SPEC §8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnCapacity {
    #[default]
    Queue,
    Reject,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgSettings {
    pub max_concurrent_calls: u32,
    pub max_queued_calls: u32,
    pub on_capacity: OnCapacity,
}

impl Default for OrgSettings {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 10,
            max_queued_calls: 10_000,
            on_capacity: OnCapacity::Queue,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    /// `None` is unlimited (SPEC §9).
    pub quota_seconds_remaining: Option<i64>,
    pub settings: OrgSettings,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub org_id: OrgId,
    pub email: String,
    pub name: Option<String>,
    pub active: bool,
    pub created_at: Timestamp,
}

/// Which trigger environment a request targets (SPEC §11 key scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Production,
    Test,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Test => "test",
        }
    }
}

/// Optional restrictions of an API key; `None` lists mean "all".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyScopes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<AgentId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<Environment>>,
    #[serde(default)]
    pub admin: bool,
}

impl KeyScopes {
    pub fn allows_agent(&self, agent: AgentId) -> bool {
        self.agents.as_ref().is_none_or(|a| a.contains(&agent))
    }
    pub fn allows_env(&self, env: Environment) -> bool {
        self.environments.as_ref().is_none_or(|e| e.contains(&env))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub user_id: UserId,
    pub name: String,
    pub key_prefix: String,
    pub scopes: KeyScopes,
    pub active: bool,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

pub struct NewApiKey {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub name: String,
    pub key_prefix: String,
    pub key_hash: [u8; 32],
    pub scopes: KeyScopes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Active,
    Archived,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Archived => "archived",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: AgentId,
    pub org_id: OrgId,
    pub uuid: Uuid,
    pub name: String,
    pub status: AgentStatus,
    pub owner_user_id: Option<UserId>,
    pub total_runs: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    Draft,
    Published,
    Archived,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Archived => "archived",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentVersion {
    pub id: VersionId,
    pub agent_id: AgentId,
    pub version_number: i64,
    pub status: VersionStatus,
    pub definition: Value,
    pub template_context_variables: Option<Map<String, Value>>,
    pub created_at: Timestamp,
    pub published_at: Option<Timestamp>,
}

/// An agent with the versions triggers execute: the production route runs `published`, the
/// test route `draft` else `published` (SPEC §2, §6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentBundle {
    pub agent: Agent,
    pub published: Option<AgentVersion>,
    pub draft: Option<AgentVersion>,
}

/// The instance-wide owner of a trigger path (SPEC §6.2: once used, never another agent's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerOwner {
    pub path: String,
    pub agent_id: AgentId,
    pub org_id: OrgId,
}

pub struct NewAgent {
    pub org_id: OrgId,
    pub name: String,
    pub owner_user_id: UserId,
    pub definition: Value,
    pub trigger_paths: Vec<String>,
}

/// A draft edit; `None` fields keep the current draft's (or published version's) value.
pub struct DraftEdit {
    pub name: Option<String>,
    pub definition: Option<Value>,
    pub template_context_variables: Option<Map<String, Value>>,
    pub trigger_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelephonyConfig {
    pub id: ConfigId,
    pub org_id: OrgId,
    pub name: String,
    pub provider: String,
    /// AEAD-sealed credentials JSON; only the server can open it.
    pub credentials_sealed: Vec<u8>,
    /// Names of the credential fields that are set (what the API may show).
    pub credential_fields: Vec<String>,
    pub is_default_outbound: bool,
    pub calls_per_second: f64,
    pub max_concurrent_calls: Option<u32>,
    pub active: bool,
    pub created_at: Timestamp,
}

pub struct NewTelephonyConfig {
    pub org_id: OrgId,
    pub name: String,
    pub provider: String,
    pub credentials_sealed: Vec<u8>,
    pub credential_fields: Vec<String>,
    pub is_default_outbound: bool,
    pub calls_per_second: f64,
    pub max_concurrent_calls: Option<u32>,
}

/// A full replacement of a configuration's editable fields.
pub struct TelephonyConfigUpdate {
    pub name: String,
    pub credentials_sealed: Vec<u8>,
    pub credential_fields: Vec<String>,
    pub calls_per_second: f64,
    pub max_concurrent_calls: Option<u32>,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumber {
    pub id: NumberId,
    pub config_id: ConfigId,
    pub org_id: OrgId,
    pub address: String,
    pub label: Option<String>,
    pub is_default_caller_id: bool,
    pub is_active: bool,
    pub created_at: Timestamp,
}

pub struct PhoneNumberFields {
    pub address: String,
    pub label: Option<String>,
    pub is_default_caller_id: bool,
    pub is_active: bool,
}

/// A configuration with its caller-ID numbers, as trigger resolution needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigWithNumbers {
    pub config: TelephonyConfig,
    pub numbers: Vec<PhoneNumber>,
}

/// One entry of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    pub role: String,
    pub text: String,
    #[serde(serialize_with = "callgate_domain::rfc3339::serialize")]
    pub at: Timestamp,
}

/// One status change of a run (SPEC §4.1 `events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub status: RunStatus,
    #[serde(serialize_with = "callgate_domain::rfc3339::serialize")]
    pub at: Timestamp,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Everything a run is born with; written with its first event in one transaction.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// From `RunStore::allocate_run_id`.
    pub id: RunId,
    pub call_id: Uuid,
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub workflow_uuid: Uuid,
    pub version_id: VersionId,
    pub version_number: i64,
    pub environment: Environment,
    /// `api` for the public trigger and outbound routes, `test` for test routes.
    pub phone_number: String,
    pub from_number: Option<String>,
    pub config_id: ConfigId,
    pub provider: String,
    pub status: RunStatus,
    pub created_at: Timestamp,
    pub scheduled_for: Timestamp,
    pub initial_context: InitialContext,
    pub system_context: SystemContext,
    pub metadata: Option<Value>,
    pub external_id: Option<String>,
    pub unresolved_variables: Vec<String>,
    pub greeting: Option<String>,
    pub max_attempts: u32,
    pub api_key_id: Option<ApiKeyId>,
}

/// The idempotency record a trigger writes together with its run (SPEC §2.1).
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub api_key_id: ApiKeyId,
    pub route: String,
    pub key: String,
    pub body_hash: [u8; 32],
}

#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    pub body_hash: [u8; 32],
    pub run_id: RunId,
    pub created_at: Timestamp,
    /// The answer as sent, when it could not be rebuilt from the run alone (e.g. a
    /// `Prefer: wait` answer that reported the provider's verdict).
    pub response: Option<StoredResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: RunId,
    pub call_id: Uuid,
    pub org_id: OrgId,
    pub agent_id: AgentId,
    pub workflow_uuid: Uuid,
    pub version_id: VersionId,
    pub version_number: i64,
    pub environment: Environment,
    pub phone_number: String,
    pub from_number: Option<String>,
    pub config_id: ConfigId,
    pub provider: String,
    pub provider_call_id: Option<String>,
    pub status: RunStatus,
    /// The status the trigger answered with.
    pub initial_status: RunStatus,
    pub outcome: Option<Outcome>,
    pub ended_reason: Option<String>,
    pub answered_by: Option<String>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub created_at: Timestamp,
    pub scheduled_for: Timestamp,
    pub dialed_at: Option<Timestamp>,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub duration_seconds: Option<i64>,
    pub transcript: Vec<TranscriptEntry>,
    pub recording_url: Option<String>,
    pub extracted: Option<Value>,
    pub initial_context: InitialContext,
    pub system_context: SystemContext,
    pub metadata: Option<Value>,
    pub external_id: Option<String>,
    pub unresolved_variables: Vec<String>,
    pub greeting: Option<String>,
    pub error: Option<String>,
    pub events: Vec<RunEvent>,
}

/// What a provider (or the dispatcher) reports about a run; applied through the lifecycle
/// state machine in one transaction.
#[derive(Debug, Clone)]
pub struct RunUpdate {
    pub signal: callgate_domain::lifecycle::CallSignal,
    pub at: Timestamp,
    pub provider_call_id: Option<String>,
    pub provider_status: Option<String>,
    pub detail: Option<String>,
    /// Results that arrive with the end of a call.
    pub transcript: Option<Vec<TranscriptEntry>>,
    pub recording_url: Option<String>,
    pub extracted: Option<Value>,
    pub error: Option<String>,
}

impl RunUpdate {
    pub fn new(signal: callgate_domain::lifecycle::CallSignal, at: Timestamp) -> Self {
        Self {
            signal,
            at,
            provider_call_id: None,
            provider_status: None,
            detail: None,
            transcript: None,
            recording_url: None,
            extracted: None,
            error: None,
        }
    }
}

/// What `cancel_run` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancel {
    /// The run had not been dialled (it `was` queued or scheduled); it is now ended with
    /// outcome `canceled`.
    Canceled { run: Run, was: RunStatus },
    /// The run was already dialling, live or ended (a dispatcher claimed it first); unchanged.
    NotCancelable(Run),
}

/// `ended_reason` of a run canceled through the API.
pub const CANCELED_REASON: &str = "canceled";
/// The `detail` of its history entry.
pub const CANCELED_DETAIL: &str = "canceled through the API before it was dialled";

/// The result of applying a `RunUpdate`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedUpdate {
    pub run_id: RunId,
    pub org_id: OrgId,
    pub config_id: ConfigId,
    pub before: RunStatus,
    pub after: RunStatus,
    /// False when the state machine ignored the signal (duplicate or late).
    pub changed: bool,
    pub outcome: Option<Outcome>,
}

/// A queued run handed to the dispatcher, with what dialling needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedRun {
    pub id: RunId,
    pub call_id: Uuid,
    pub org_id: OrgId,
    pub config_id: ConfigId,
    pub phone_number: String,
    pub from_number: Option<String>,
    pub greeting: Option<String>,
    pub created_at: Timestamp,
    pub attempt: u32,
}

/// Queued work per configuration, for the dispatcher's bookkeeping after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueCount {
    pub org_id: OrgId,
    pub config_id: ConfigId,
    pub status: RunStatus,
    pub count: i64,
}

/// Filters of `GET /api/v1/calls` (SPEC §4).
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub outcome: Option<Outcome>,
    pub agent_id: Option<AgentId>,
    pub external_id: Option<String>,
    pub phone_number: Option<String>,
    pub created_after: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    /// Only runs with an id below this (cursor paging, newest first).
    pub before_id: Option<RunId>,
    pub limit: u32,
}

/// Asks `RunStore::enqueue_or_claim` to claim the new run at once when the limits allow.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectClaim {
    pub limits: ClaimLimits,
    /// The node that will dial it (its lease).
    pub node: String,
}

/// The limits a dispatcher claim must respect (SPEC §8.2); the store enforces them in the same
/// transaction as the claim, so they hold across every node sharing the database.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimLimits {
    pub org_max_live: u32,
    pub config_max_live: Option<u32>,
    pub calls_per_second: f64,
    pub max_batch: u32,
}

/// What a paced claim produced.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claim {
    pub runs: Vec<ClaimedRun>,
    /// When pacing allows the next dial of this configuration, if it held one back.
    pub retry_at: Option<Timestamp>,
    /// No due queued run is left for this configuration.
    pub drained: bool,
}

/// "This configuration of this organisation has queued work."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkHint {
    pub config_id: ConfigId,
    pub org_id: OrgId,
}

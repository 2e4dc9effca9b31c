//! Agents, their definitions, versions and trigger URLs (SPEC §6).

use serde_json::Value;
use utoipa::ToSchema;

/// A React-Flow graph (SPEC §6.1). Extra top-level keys (e.g. `viewport`) are kept; the schema
/// allows them because JSON Schema objects accept unlisted properties by default.
#[derive(ToSchema)]
pub struct WorkflowDefinition {
    pub nodes: Vec<DefinitionNode>,
    pub edges: Vec<DefinitionEdge>,
    /// Declared template variables (SPEC §5.4).
    pub variables: Option<Vec<DeclaredVariable>>,
}

/// A node: `startCall` (exactly one), `agentNode`, `endCall`, `globalNode`, `trigger`,
/// `webhook`, `qa`; unknown types are kept and ignored.
#[derive(ToSchema)]
pub struct DefinitionNode {
    pub id: String,
    #[schema(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub position: Value,
    /// Type-specific settings, e.g. `prompt`, `greeting`, or a trigger's `trigger_path` and
    /// `enabled`.
    #[schema(value_type = Object)]
    pub data: Value,
}

/// An edge between two nodes; `data` carries `label` and `condition`.
#[derive(ToSchema)]
pub struct DefinitionEdge {
    pub id: String,
    pub source: String,
    pub target: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// A declared template variable (SPEC §5.4).
#[derive(ToSchema)]
pub struct DeclaredVariable {
    pub name: String,
    /// `string`, `number`, `boolean` or `object`.
    #[schema(rename = "type")]
    pub kind: String,
    pub required: Option<bool>,
    #[schema(value_type = Option<Value>)]
    pub default: Option<Value>,
}

/// Dograh's `WorkflowResponse`: an agent with its current draft-or-published definition.
#[derive(ToSchema)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub status: AgentStatus,
    /// RFC 3339 with an explicit offset (Dograh's format).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The draft if there is one, else the published definition.
    pub workflow_definition: WorkflowDefinition,
    #[schema(nullable)]
    pub current_definition_id: i64,
    /// Editor defaults for test routes (SPEC §5.5).
    #[schema(value_type = Object, nullable)]
    pub template_context_variables: Value,
    #[schema(nullable)]
    pub version_number: i64,
    #[schema(nullable)]
    pub version_status: VersionStatus,
    #[schema(nullable)]
    pub published_version_number: i64,
    #[schema(format = "uuid")]
    pub workflow_uuid: String,
    /// The execution owner; null when none.
    #[schema(nullable)]
    pub owner_user_id: i64,
    pub total_runs: i64,
}

/// An item of the agent list.
#[derive(ToSchema)]
pub struct AgentListItem {
    pub id: i64,
    pub name: String,
    pub status: AgentStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub total_runs: i64,
    #[schema(format = "uuid")]
    pub workflow_uuid: String,
}

/// Whether an agent's triggers work.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    Active,
    Archived,
}

/// Where a definition version stands (SPEC §1).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    Draft,
    Published,
    Archived,
}

/// One definition version.
#[derive(ToSchema)]
pub struct AgentVersion {
    pub id: i64,
    pub version_number: i64,
    pub status: VersionStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(nullable, format = DateTime)]
    pub published_at: String,
    pub workflow_definition: WorkflowDefinition,
    #[schema(value_type = Object, nullable)]
    pub template_context_variables: Value,
}

/// An agent's trigger URLs (SPEC §6.3), absolute, built from the configured public URL.
#[derive(ToSchema)]
pub struct AgentTriggers {
    pub workflow_id: i64,
    #[schema(format = "uuid")]
    pub workflow_uuid: String,
    #[schema(format = "uri")]
    pub workflow_production_url: String,
    #[schema(format = "uri")]
    pub workflow_test_url: String,
    pub triggers: Vec<TriggerUrls>,
}

/// One trigger path of an agent.
#[derive(ToSchema)]
pub struct TriggerUrls {
    pub trigger_path: String,
    #[schema(format = "uri")]
    pub production_url: String,
    #[schema(format = "uri")]
    pub test_url: String,
    /// The published version has this trigger, enabled, and the agent is active.
    pub live_in_production: bool,
    /// The draft (else published) version has this trigger, enabled, and the agent is active.
    pub live_in_test: bool,
}

/// Creates an agent whose version 1 is published; its owner is the key's creator.
#[derive(ToSchema)]
pub struct CreateAgentRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub workflow_definition: WorkflowDefinition,
}

/// Creates or updates the draft; absent fields keep their current value.
#[derive(ToSchema)]
pub struct UpdateAgentRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    pub workflow_definition: Option<WorkflowDefinition>,
    /// Editor defaults for test routes (SPEC §5.5).
    #[schema(value_type = Option<Object>)]
    pub template_context_variables: Option<Value>,
}

/// Reassigns the execution owner.
#[derive(ToSchema)]
pub struct OwnerRequest {
    pub user_id: i64,
}

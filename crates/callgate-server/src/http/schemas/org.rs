//! Organisation resources: API keys (SPEC §6.3, §11), telephony configurations and caller-ID
//! numbers (§7), settings and live limits (§8.2, §9).

use super::{Environment, Provider};
use serde_json::Value;
use utoipa::ToSchema;

// API keys.

/// Optional restrictions of an API key; absent lists mean "all".
#[derive(ToSchema)]
pub struct KeyScopes {
    /// Agent ids the key may trigger.
    pub agents: Option<Vec<i64>>,
    /// Trigger environments the key may use.
    pub environments: Option<Vec<Environment>>,
    /// May manage agents, keys and configurations.
    #[serde(default)]
    pub admin: bool,
}

/// An API key; the raw secret is never shown again after creation.
#[derive(ToSchema)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// The first characters of the key, for recognising it.
    pub key_prefix: String,
    pub scopes: KeyScopes,
    pub is_active: bool,
    /// The user who created it.
    pub user_id: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(nullable, format = DateTime)]
    pub last_used_at: String,
}

/// A newly created key, with its raw secret (shown only here).
#[derive(ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The raw key (`cg_…`) to send as `X-API-Key`.
    pub api_key: String,
}

/// Creates an API key in the caller's organisation.
#[derive(ToSchema)]
pub struct CreateApiKeyRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub scopes: Option<KeyScopes>,
}

// Telephony configurations and phone numbers.

/// A caller-ID phone number of a configuration.
#[derive(ToSchema)]
pub struct PhoneNumber {
    pub id: i64,
    /// E.164.
    pub address: String,
    #[schema(nullable)]
    pub label: String,
    pub is_default_caller_id: bool,
    pub is_active: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A telephony configuration. Credentials are never returned, only which fields are set.
#[derive(ToSchema)]
pub struct TelephonyConfig {
    pub id: i64,
    pub name: String,
    pub provider: Provider,
    /// `{field: true}` for each credential field that is set.
    #[schema(value_type = Object)]
    pub credentials_set: Value,
    pub is_default_outbound: bool,
    pub calls_per_second: f64,
    #[schema(nullable)]
    pub max_concurrent_calls: u32,
    pub is_active: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub phone_numbers: Vec<PhoneNumber>,
}

/// Creates a telephony configuration.
#[derive(ToSchema)]
pub struct CreateTelephonyConfigRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub provider: Provider,
    /// Provider credentials, sealed at rest. For the simulator: `ring_ms`, `talk_ms`, `rules`.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Value>,
    #[serde(default)]
    pub is_default_outbound: bool,
    /// Defaults by provider: twilio 1, telnyx 1, plivo 2, vonage 3, simulator 50.
    #[schema(exclusive_minimum = 0, maximum = 100000)]
    pub calls_per_second: Option<f64>,
    #[schema(minimum = 1)]
    pub max_concurrent_calls: Option<u32>,
}

/// Updates a telephony configuration; new `credentials` replace the old ones entirely.
#[derive(ToSchema)]
pub struct UpdateTelephonyConfigRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Value>,
    #[schema(exclusive_minimum = 0, maximum = 100000)]
    pub calls_per_second: Option<f64>,
    #[schema(minimum = 1)]
    pub max_concurrent_calls: Option<u32>,
    pub is_active: Option<bool>,
}

/// Adds a caller-ID number.
#[derive(ToSchema)]
pub struct CreatePhoneNumberRequest {
    /// E.164. Required.
    pub address: Option<String>,
    pub label: Option<String>,
    /// Defaults to false.
    pub is_default_caller_id: Option<bool>,
    /// Defaults to true.
    pub is_active: Option<bool>,
}

/// Updates a caller-ID number; absent fields keep their current value.
#[derive(ToSchema)]
pub struct UpdatePhoneNumberRequest {
    pub address: Option<String>,
    pub label: Option<String>,
    pub is_default_caller_id: Option<bool>,
    pub is_active: Option<bool>,
}

// Settings and limits.

/// What a busy organisation does with new triggers (SPEC §8.2).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnCapacity {
    Queue,
    Reject,
}

/// An organisation's settings and quota.
#[derive(ToSchema)]
pub struct OrgSettings {
    pub organization_id: i64,
    pub name: String,
    pub max_concurrent_calls: u32,
    pub max_queued_calls: u32,
    pub on_capacity: OnCapacity,
    /// Null is unlimited (SPEC §9).
    #[schema(nullable)]
    pub quota_seconds_remaining: i64,
}

/// A partial settings update; unknown fields are refused.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[schema(minimum = 1, maximum = 100000)]
    pub max_concurrent_calls: Option<u32>,
    #[schema(minimum = 1, maximum = 10000000)]
    pub max_queued_calls: Option<u32>,
    pub on_capacity: Option<OnCapacity>,
}

/// Used and allowed amounts of one limit.
#[derive(ToSchema)]
pub struct Usage {
    pub used: i64,
    pub limit: u32,
}

/// Live usage of one telephony configuration.
#[derive(ToSchema)]
pub struct ConfigUsage {
    pub telephony_configuration_id: i64,
    pub name: String,
    pub calls_per_second: f64,
    #[schema(nullable)]
    pub max_concurrent_calls: u32,
    pub concurrent_calls_used: i64,
}

/// Live usage against the organisation's limits.
#[derive(ToSchema)]
pub struct OrgLimits {
    pub concurrent_calls: Usage,
    pub queued_calls: Usage,
    pub on_capacity: OnCapacity,
    #[schema(nullable)]
    pub quota_seconds_remaining: i64,
    pub telephony_configurations: Vec<ConfigUsage>,
}

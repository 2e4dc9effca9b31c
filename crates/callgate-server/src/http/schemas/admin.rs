//! Instance administration (SPEC §6.4) and operational endpoints (§12).

use super::KeyScopes;
use utoipa::ToSchema;

/// Creates an organisation.
#[derive(ToSchema)]
pub struct CreateOrgRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
}

/// A newly created organisation.
#[derive(ToSchema)]
pub struct CreatedOrg {
    pub id: i64,
    pub name: String,
}

/// Creates a user in an organisation.
#[derive(ToSchema)]
pub struct CreateUserRequest {
    #[schema(format = Email, max_length = 320)]
    pub email: String,
    pub name: Option<String>,
}

/// A newly created user.
#[derive(ToSchema)]
pub struct CreatedUser {
    pub id: i64,
    pub email: String,
    #[schema(nullable)]
    pub name: String,
    pub active: bool,
}

/// Activates or deactivates a user; a deactivated user's agents have no execution owner.
#[derive(ToSchema)]
pub struct UserActiveRequest {
    pub active: bool,
}

/// A user's activation state.
#[derive(ToSchema)]
pub struct UserActive {
    pub id: i64,
    pub email: String,
    pub active: bool,
}

/// Issues an API key for a user of the organisation.
#[derive(ToSchema)]
pub struct AdminCreateApiKeyRequest {
    pub user_id: i64,
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    pub scopes: Option<KeyScopes>,
}

/// Sets the organisation's remaining call seconds; null is unlimited.
#[derive(ToSchema)]
pub struct QuotaRequest {
    #[schema(required = true)]
    pub quota_seconds_remaining: Option<i64>,
}

// Operations.

/// The process is up.
#[derive(ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// The database answers and the node accepts work.
#[derive(ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: String,
}

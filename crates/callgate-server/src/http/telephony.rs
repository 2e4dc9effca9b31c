//! Telephony configurations and caller-ID numbers (SPEC §6.3, §7). Credentials are sealed at
//! rest and never returned; responses only say which fields are set.

use crate::app::AppState;
use crate::http::extract::Path;
use crate::http::extract::{AdminKey, JsonBody, SharedState, parse_name};
use crate::http::problem::{ApiError, ApiResult, store_error};
use crate::http::schemas as doc;
use crate::views;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use callgate_domain::E164;
use callgate_store::{
    ConfigWithNumbers, NewTelephonyConfig, OrgId, PhoneNumberFields, StoreError,
    TelephonyConfigUpdate,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// OpenAPI description of these routes, merged into `crate::http::openapi::ApiDoc`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list,
    create,
    one,
    update,
    remove,
    set_default,
    list_numbers,
    add_number,
    update_number,
    remove_number
))]
pub(crate) struct Docs;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/api/v1/organizations/telephony-configs",
            get(list).post(create),
        )
        .route(
            "/api/v1/organizations/telephony-configs/{id}",
            get(one).put(update).delete(remove),
        )
        .route(
            "/api/v1/organizations/telephony-configs/{id}/set-default-outbound",
            post(set_default),
        )
        .route(
            "/api/v1/organizations/telephony-configs/{id}/phone-numbers",
            get(list_numbers).post(add_number),
        )
        .route(
            "/api/v1/organizations/telephony-configs/{id}/phone-numbers/{number_id}",
            put(update_number).delete(remove_number),
        )
}

const NOT_FOUND: (&str, &str) = (
    "telephony_configuration_not_found",
    "Telephony configuration not found",
);
const NUMBER_NOT_FOUND: (&str, &str) = ("phone_number_not_found", "Phone number not found");

/// Validates provider, credentials and limits; returns (sealed, field names, cps).
fn check_config(
    s: &AppState,
    provider: &str,
    credentials: &Map<String, Value>,
    cps: Option<f64>,
    max_concurrent: Option<u32>,
) -> ApiResult<(Vec<u8>, Vec<String>, f64)> {
    let Some(default_cps) = callgate_telephony::default_cps(provider) else {
        let known: Vec<&str> = callgate_telephony::PROVIDERS.iter().map(|p| p.0).collect();
        return Err(ApiError::invalid_field(
            "/provider",
            format!("provider must be one of: {}", known.join(", ")),
        ));
    };
    if provider == "simulator" {
        callgate_telephony::simulator::Settings::from_credentials(&Value::Object(
            credentials.clone(),
        ))
        .map_err(|m| ApiError::invalid_field("/credentials", m))?;
    }
    let cps = cps.unwrap_or(default_cps);
    if !(cps.is_finite() && cps > 0.0 && cps <= 100_000.0) {
        return Err(ApiError::invalid_field(
            "/calls_per_second",
            "calls_per_second must be greater than 0 and at most 100000",
        ));
    }
    if max_concurrent == Some(0) {
        return Err(ApiError::invalid_field(
            "/max_concurrent_calls",
            "max_concurrent_calls must be at least 1",
        ));
    }
    let fields = credentials
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    let plain = serde_json::to_vec(credentials).map_err(ApiError::internal)?;
    Ok((s.sealer.seal(&plain), fields, cps))
}

fn view(c: &ConfigWithNumbers) -> Json<Value> {
    Json(views::config_json(&c.config, &c.numbers))
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    provider: String,
    #[serde(default)]
    credentials: Option<Map<String, Value>>,
    #[serde(default)]
    is_default_outbound: bool,
    calls_per_second: Option<f64>,
    max_concurrent_calls: Option<u32>,
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/telephony-configs",
    operation_id = "create_telephony_config",
    tag = "Telephony",
    summary = "Create a telephony configuration",
    request_body(content = doc::CreateTelephonyConfigRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new configuration (credentials sealed; only their field names are shown)", body = doc::TelephonyConfig),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body`: `name` not 1–255 characters, an unknown `provider`, invalid simulator `credentials`, `calls_per_second` not in (0, 100000], `max_concurrent_calls` of 0, or a field of the wrong type", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn create(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = parse_name(&b.name)?;
    let credentials = b.credentials.unwrap_or_default();
    let (sealed, fields, cps) = check_config(
        &s,
        &b.provider,
        &credentials,
        b.calls_per_second,
        b.max_concurrent_calls,
    )?;
    let cfg = s
        .store
        .create_config(
            NewTelephonyConfig {
                org_id: key.org_id,
                name,
                provider: b.provider,
                credentials_sealed: sealed,
                credential_fields: fields,
                is_default_outbound: b.is_default_outbound,
                calls_per_second: cps,
                max_concurrent_calls: b.max_concurrent_calls,
            },
            s.clock.now(),
        )
        .await?;
    s.catalog.invalidate_all();
    Ok((StatusCode::CREATED, Json(views::config_json(&cfg, &[]))))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/telephony-configs",
    operation_id = "list_telephony_configs",
    tag = "Telephony",
    summary = "List telephony configurations",
    responses(
        (status = 200, description = "The organisation's configurations with their phone numbers", body = Vec<doc::TelephonyConfig>),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn list(State(s): State<SharedState>, AdminKey(key): AdminKey) -> ApiResult<Json<Value>> {
    let configs = s.store.list_configs(key.org_id).await?;
    Ok(Json(Value::Array(
        configs
            .iter()
            .map(|c| views::config_json(&c.config, &c.numbers))
            .collect(),
    )))
}

async fn load(s: &SharedState, org: OrgId, id: i64) -> ApiResult<ConfigWithNumbers> {
    s.store
        .get_config(org, id)
        .await
        .map_err(|e| store_error(e, NOT_FOUND))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/telephony-configs/{id}",
    operation_id = "get_telephony_config",
    tag = "Telephony",
    summary = "Get a telephony configuration",
    params(
        ("id" = i64, Path, description = "The telephony configuration's id"),
    ),
    responses(
        (status = 200, description = "The configuration with its phone numbers", body = doc::TelephonyConfig),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`telephony_configuration_not_found`: no such configuration in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn one(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    Ok(view(&load(&s, key.org_id, id).await?))
}

#[derive(Deserialize)]
struct UpdateBody {
    name: Option<String>,
    credentials: Option<Map<String, Value>>,
    calls_per_second: Option<f64>,
    max_concurrent_calls: Option<u32>,
    is_active: Option<bool>,
}

#[utoipa::path(
    put,
    path = "/api/v1/organizations/telephony-configs/{id}",
    operation_id = "update_telephony_config",
    tag = "Telephony",
    summary = "Update a telephony configuration",
    description = "New `credentials` replace the stored ones entirely; without them the sealed ones stay.",
    params(
        ("id" = i64, Path, description = "The telephony configuration's id"),
    ),
    request_body(content = doc::UpdateTelephonyConfigRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated configuration", body = doc::TelephonyConfig),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`telephony_configuration_not_found`: no such configuration in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body`: `name` not 1–255 characters, an unknown `provider`, invalid simulator `credentials`, `calls_per_second` not in (0, 100000], `max_concurrent_calls` of 0, or a field of the wrong type", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn update(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    let current = load(&s, key.org_id, id).await?.config;
    let name = match &b.name {
        Some(n) => parse_name(n)?,
        None => current.name.clone(),
    };
    // New credentials replace the old ones entirely; without them the sealed ones stay.
    let (sealed, fields, cps) = match &b.credentials {
        Some(c) => check_config(
            &s,
            &current.provider,
            c,
            b.calls_per_second.or(Some(current.calls_per_second)),
            b.max_concurrent_calls,
        )?,
        None => {
            // Without new credentials the sealed ones stay; only the limits are checked.
            let (_, _, cps) = check_config(
                &s,
                &current.provider,
                &Map::new(),
                b.calls_per_second.or(Some(current.calls_per_second)),
                b.max_concurrent_calls,
            )?;
            (
                current.credentials_sealed.clone(),
                current.credential_fields.clone(),
                cps,
            )
        }
    };
    let cfg = s
        .store
        .update_config(
            key.org_id,
            id,
            TelephonyConfigUpdate {
                name,
                credentials_sealed: sealed,
                credential_fields: fields,
                calls_per_second: cps,
                max_concurrent_calls: b.max_concurrent_calls.or(current.max_concurrent_calls),
                active: b.is_active.unwrap_or(current.active),
            },
        )
        .await
        .map_err(|e| store_error(e, NOT_FOUND))?;
    s.catalog.invalidate_all();
    s.dispatch.notify_one();
    let numbers = load(&s, key.org_id, id).await?.numbers;
    Ok(Json(views::config_json(&cfg, &numbers)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/organizations/telephony-configs/{id}",
    operation_id = "delete_telephony_config",
    tag = "Telephony",
    summary = "Delete a telephony configuration",
    params(
        ("id" = i64, Path, description = "The telephony configuration's id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`telephony_configuration_not_found`: no such configuration in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn remove(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.store
        .delete_config(key.org_id, id)
        .await
        .map_err(|e| store_error(e, NOT_FOUND))?;
    s.catalog.invalidate_all();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/telephony-configs/{id}/set-default-outbound",
    operation_id = "set_default_outbound",
    tag = "Telephony",
    summary = "Make a configuration the default outbound one",
    params(
        ("id" = i64, Path, description = "The telephony configuration's id"),
    ),
    responses(
        (status = 200, description = "The configuration, now the default; the previous default is cleared", body = doc::TelephonyConfig),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`telephony_configuration_not_found`: no such configuration in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn set_default(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    s.store
        .set_default_outbound(key.org_id, id)
        .await
        .map_err(|e| store_error(e, NOT_FOUND))?;
    s.catalog.invalidate_all();
    Ok(view(&load(&s, key.org_id, id).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/organizations/telephony-configs/{id}/phone-numbers",
    operation_id = "list_phone_numbers",
    tag = "Telephony",
    summary = "List caller-ID numbers",
    params(
        ("id" = i64, Path, description = "The telephony configuration's id"),
    ),
    responses(
        (status = 200, description = "The configuration's phone numbers", body = Vec<doc::PhoneNumber>),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`telephony_configuration_not_found`: no such configuration in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn list_numbers(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let c = load(&s, key.org_id, id).await?;
    Ok(Json(Value::Array(
        c.numbers.iter().map(views::number_json).collect(),
    )))
}

#[derive(Deserialize)]
struct NumberBody {
    address: Option<String>,
    label: Option<String>,
    is_default_caller_id: Option<bool>,
    is_active: Option<bool>,
}

fn parse_address(a: &str) -> ApiResult<String> {
    E164::parse(a).map(|e| e.as_str().to_owned()).map_err(|_| {
        ApiError::unprocessable("invalid_phone_number", "Invalid phone number format").with_errors(
            vec![crate::http::problem::FieldError::new(
                "/address",
                "invalid_phone_number",
                "address must be an E.164 phone number",
            )],
        )
    })
}

fn number_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict("phone_number_exists") => ApiError::conflict(
            "phone_number_exists",
            "This phone number is already on the configuration",
        ),
        other => store_error(other, NUMBER_NOT_FOUND),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/organizations/telephony-configs/{id}/phone-numbers",
    operation_id = "add_phone_number",
    tag = "Telephony",
    summary = "Add a caller-ID number",
    params(
        ("id" = i64, Path, description = "The telephony configuration's id"),
    ),
    request_body(content = doc::CreatePhoneNumberRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new phone number", body = doc::PhoneNumber),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`telephony_configuration_not_found`: no such configuration in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`phone_number_exists`: this number is already on the configuration", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body` (`address` missing or a field of the wrong type), `invalid_phone_number` (`address` is not E.164)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn add_number(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
    JsonBody(b): JsonBody<NumberBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    load(&s, key.org_id, id).await?;
    let Some(address) = b.address.as_deref() else {
        return Err(ApiError::invalid_field("/address", "address is required"));
    };
    let n = s
        .store
        .add_number(
            key.org_id,
            id,
            PhoneNumberFields {
                address: parse_address(address)?,
                label: b.label,
                is_default_caller_id: b.is_default_caller_id.unwrap_or(false),
                is_active: b.is_active.unwrap_or(true),
            },
            s.clock.now(),
        )
        .await
        .map_err(number_error)?;
    s.catalog.invalidate_all();
    Ok((StatusCode::CREATED, Json(views::number_json(&n))))
}

#[utoipa::path(
    put,
    path = "/api/v1/organizations/telephony-configs/{id}/phone-numbers/{number_id}",
    operation_id = "update_phone_number",
    tag = "Telephony",
    summary = "Update a caller-ID number",
    params(
        ("id" = i64, Path, description = "The telephony configuration's id"),
        ("number_id" = i64, Path, description = "The phone number's id"),
    ),
    request_body(content = doc::UpdatePhoneNumberRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated phone number", body = doc::PhoneNumber),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`telephony_configuration_not_found`, or `phone_number_not_found`: no such number on the configuration", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`phone_number_exists`: the new address is already on the configuration", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body` (`address` missing or a field of the wrong type), `invalid_phone_number` (`address` is not E.164)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn update_number(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path((id, number_id)): Path<(i64, i64)>,
    JsonBody(b): JsonBody<NumberBody>,
) -> ApiResult<Json<Value>> {
    let c = load(&s, key.org_id, id).await?;
    let current = c
        .numbers
        .iter()
        .find(|n| n.id == number_id)
        .ok_or_else(|| ApiError::not_found(NUMBER_NOT_FOUND.0, NUMBER_NOT_FOUND.1))?;
    let address = match b.address.as_deref() {
        Some(a) => parse_address(a)?,
        None => current.address.clone(),
    };
    let n = s
        .store
        .update_number(
            key.org_id,
            id,
            number_id,
            PhoneNumberFields {
                address,
                label: b.label.or_else(|| current.label.clone()),
                is_default_caller_id: b
                    .is_default_caller_id
                    .unwrap_or(current.is_default_caller_id),
                is_active: b.is_active.unwrap_or(current.is_active),
            },
        )
        .await
        .map_err(number_error)?;
    s.catalog.invalidate_all();
    Ok(Json(views::number_json(&n)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/organizations/telephony-configs/{id}/phone-numbers/{number_id}",
    operation_id = "delete_phone_number",
    tag = "Telephony",
    summary = "Delete a caller-ID number",
    params(
        ("id" = i64, Path, description = "The telephony configuration's id"),
        ("number_id" = i64, Path, description = "The phone number's id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`phone_number_not_found`: no such number on this configuration of the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn remove_number(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path((id, number_id)): Path<(i64, i64)>,
) -> ApiResult<StatusCode> {
    s.store
        .delete_number(key.org_id, id, number_id)
        .await
        .map_err(|e| store_error(e, NUMBER_NOT_FOUND))?;
    s.catalog.invalidate_all();
    Ok(StatusCode::NO_CONTENT)
}

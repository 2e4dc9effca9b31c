//! Agents (Dograh "workflows", SPEC §6.3): create, fetch, list, edit the draft, publish,
//! versions, triggers with their URLs, owner, archive.

use crate::http::extract::Path;
use crate::http::extract::{AdminKey, JsonBody, SharedState, parse_name};
use crate::http::problem::{ApiError, ApiResult, store_error};
use crate::http::schemas as doc;
use crate::views;
use axum::extract::{Query, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use callgate_domain::definition::{Definition, DefinitionError};
use callgate_store::{AgentBundle, AgentStatus, DraftEdit, NewAgent, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// OpenAPI description of these routes, merged into `crate::http::openapi::ApiDoc`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create, list, fetch, update, publish, versions, triggers, owner, archive
))]
pub(crate) struct Docs;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/workflow/create/definition", post(create))
        .route("/api/v1/workflow/fetch", get(list))
        .route("/api/v1/workflow/fetch/{id}", get(fetch))
        .route("/api/v1/workflow/{id}", put(update))
        .route("/api/v1/workflow/{id}/publish", post(publish))
        .route("/api/v1/workflow/{id}/versions", get(versions))
        .route("/api/v1/workflow/{id}/triggers", get(triggers))
        .route("/api/v1/workflow/{id}/owner", put(owner))
        .route("/api/v1/workflow/{id}/archive", post(archive))
}

const NOT_FOUND: (&str, &str) = ("workflow_not_found", "Workflow not found");

fn definition_errors(status: u16, errors: Vec<DefinitionError>) -> ApiError {
    let detail = errors
        .iter()
        .map(|e| e.message.clone())
        .collect::<Vec<_>>()
        .join("; ");
    let fields = errors
        .iter()
        .map(|e| {
            let mut pointer = "/workflow_definition".to_owned();
            if let Some(id) = &e.id {
                pointer.push_str(&format!("/{}s/{id}", e.kind));
            }
            if let Some(f) = &e.field {
                pointer.push_str(&format!("/{f}"));
            }
            // SPEC §6.1: each error carries `kind, id, field, message` (Dograh's
            // WorkflowError) next to the problem-JSON `pointer` and `code`.
            json!({
                "pointer": pointer,
                "code": "invalid_definition",
                "message": e.message,
                "kind": e.kind,
                "id": e.id,
                "field": e.field,
            })
        })
        .collect::<Vec<Value>>();
    let code = if status == 422 {
        "invalid_definition"
    } else {
        "bad_definition"
    };
    ApiError::unprocessable(code, format!("Invalid workflow definition: {detail}"))
        .with_extra("errors", json!(fields))
        .with_extra("is_valid", json!(false))
        .with_extra("validation_errors", json!(errors))
}

fn parse_definition(v: Value) -> ApiResult<(Value, Vec<String>)> {
    let def = Definition::parse_for_save(v).map_err(|e| definition_errors(422, e))?;
    let paths = def
        .triggers()
        .into_iter()
        .map(|t| t.path.as_str().to_owned())
        .collect();
    Ok((def.into_json(), paths))
}

fn map_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict("trigger_path_taken") => ApiError::conflict(
            "trigger_path_taken",
            "Trigger path is already used by another agent",
        ),
        StoreError::Conflict("user_not_found") => {
            ApiError::not_found("user_not_found", "User not found in this organization")
        }
        StoreError::Conflict("no_draft") => {
            ApiError::bad_request("no_draft", "No draft to publish")
        }
        other => store_error(other, NOT_FOUND),
    }
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
    workflow_definition: Value,
}

#[utoipa::path(
    post,
    path = "/api/v1/workflow/create/definition",
    operation_id = "create_workflow",
    tag = "Workflows",
    summary = "Create an agent",
    description = "SPEC §6.3. Saving checks only what storage needs; a trigger node without `trigger_path` gets a fresh UUID.",
    request_body(content = doc::CreateAgentRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new agent; version 1 is published and owned by the key's creator", body = doc::Agent),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 409, description = "`trigger_path_taken`: a trigger path of the definition is used by another agent", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_body` (e.g. `name` not 1–255 characters), `invalid_definition` (the graph cannot be stored: shape or trigger path format)", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn create(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<Json<Value>> {
    let name = parse_name(&body.name)?;
    let (definition, trigger_paths) = parse_definition(body.workflow_definition)?;
    let bundle = s
        .store
        .create_agent(
            NewAgent {
                org_id: key.org_id,
                name,
                owner_user_id: key.user_id,
                definition,
                trigger_paths,
            },
            s.clock.now(),
        )
        .await
        .map_err(map_conflict)?;
    s.catalog.invalidate_all();
    Ok(Json(views::agent_json(&bundle)))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/workflow/fetch",
    operation_id = "list_workflows",
    tag = "Workflows",
    summary = "List agents",
    params(
        ("status" = Option<doc::AgentStatus>, Query, description = "Only agents with this status"),
    ),
    responses(
        (status = 200, description = "The organisation's agents", body = Vec<doc::AgentListItem>),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 422, description = "`invalid_query`: `status` is not `active` or `archived`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn list(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some("active") => Some(AgentStatus::Active),
        Some("archived") => Some(AgentStatus::Archived),
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_query",
                "status must be active or archived",
            ));
        }
    };
    let agents = s.store.list_agents(key.org_id, status).await?;
    Ok(Json(Value::Array(
        agents.iter().map(views::agent_list_item).collect(),
    )))
}

async fn load(s: &SharedState, org: i64, id: i64) -> ApiResult<AgentBundle> {
    s.store
        .get_agent(org, id)
        .await
        .map_err(|e| store_error(e, NOT_FOUND))
}

#[utoipa::path(
    get,
    path = "/api/v1/workflow/fetch/{id}",
    operation_id = "get_workflow",
    tag = "Workflows",
    summary = "Get an agent",
    params(
        ("id" = i64, Path, description = "The agent's integer id"),
    ),
    responses(
        (status = 200, description = "The agent with its current draft-or-published definition", body = doc::Agent),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`workflow_not_found`: no such agent in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn fetch(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    Ok(Json(views::agent_json(&load(&s, key.org_id, id).await?)))
}

#[derive(Deserialize)]
struct UpdateBody {
    name: Option<String>,
    workflow_definition: Option<Value>,
    template_context_variables: Option<Value>,
}

#[utoipa::path(
    put,
    path = "/api/v1/workflow/{id}",
    operation_id = "update_workflow",
    tag = "Workflows",
    summary = "Edit the draft",
    description = "Creates the draft if there is none (SPEC §6.3); the production URL keeps running the published version until the draft is published.",
    params(
        ("id" = i64, Path, description = "The agent's integer id"),
    ),
    request_body(content = doc::UpdateAgentRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The agent with its updated draft", body = doc::Agent),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`workflow_not_found`: no such agent in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`trigger_path_taken`: a trigger path of the definition is used by another agent", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body` (e.g. `name` not 1–255 characters, `template_context_variables` not an object), `invalid_definition`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn update(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    load(&s, key.org_id, id).await?;
    let name = body.name.as_deref().map(parse_name).transpose()?;
    let (definition, trigger_paths) = match body.workflow_definition {
        Some(v) => {
            let (d, p) = parse_definition(v)?;
            (Some(d), p)
        }
        None => (None, Vec::new()),
    };
    let tcv: Option<Map<String, Value>> = match body.template_context_variables {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "/template_context_variables",
                "template_context_variables must be a JSON object",
            ));
        }
    };
    let bundle = s
        .store
        .save_draft(
            key.org_id,
            id,
            DraftEdit {
                name,
                definition,
                template_context_variables: tcv,
                trigger_paths,
            },
            s.clock.now(),
        )
        .await
        .map_err(map_conflict)?;
    s.catalog.invalidate_all();
    Ok(Json(views::agent_json(&bundle)))
}

#[utoipa::path(
    post,
    path = "/api/v1/workflow/{id}/publish",
    operation_id = "publish_workflow",
    tag = "Workflows",
    summary = "Publish the draft",
    description = "Validates the whole graph (SPEC §6.1) before it goes live.",
    params(
        ("id" = i64, Path, description = "The agent's integer id"),
    ),
    responses(
        (status = 200, description = "The agent; the draft is now the published version", body = doc::Agent),
        (status = 400, description = "`no_draft`: No draft to publish", body = doc::Problem, content_type = "application/problem+json"),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`workflow_not_found`: no such agent in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`trigger_path_taken`: a trigger path of the draft is used by another agent", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_definition`: the graph fails publish validation; the problem carries `is_valid: false` and `validation_errors`", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn publish(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let bundle = load(&s, key.org_id, id).await?;
    let Some(draft) = &bundle.draft else {
        return Err(ApiError::bad_request("no_draft", "No draft to publish"));
    };
    Definition::from_stored(draft.definition.clone())
        .validate_for_publish()
        .map_err(|e| definition_errors(422, e))?;
    let bundle = s
        .store
        .publish(key.org_id, id, s.clock.now())
        .await
        .map_err(map_conflict)?;
    s.catalog.invalidate_all();
    Ok(Json(views::agent_json(&bundle)))
}

#[utoipa::path(
    get,
    path = "/api/v1/workflow/{id}/versions",
    operation_id = "list_workflow_versions",
    tag = "Workflows",
    summary = "List definition versions",
    params(
        ("id" = i64, Path, description = "The agent's integer id"),
    ),
    responses(
        (status = 200, description = "Every version with its status and `published_at`", body = Vec<doc::AgentVersion>),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`workflow_not_found`: no such agent in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn versions(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let versions = s
        .store
        .list_versions(key.org_id, id)
        .await
        .map_err(|e| store_error(e, NOT_FOUND))?;
    Ok(Json(Value::Array(
        versions.iter().map(views::version_json).collect(),
    )))
}

#[utoipa::path(
    get,
    path = "/api/v1/workflow/{id}/triggers",
    operation_id = "list_workflow_triggers",
    tag = "Workflows",
    summary = "List trigger URLs",
    params(
        ("id" = i64, Path, description = "The agent's integer id"),
    ),
    responses(
        (status = 200, description = "Each trigger path with its absolute production and test URLs and whether it is live", body = doc::AgentTriggers),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`workflow_not_found`: no such agent in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn triggers(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let bundle = load(&s, key.org_id, id).await?;
    let active = bundle.agent.status == AgentStatus::Active;
    let nodes = |v: Option<&callgate_store::AgentVersion>| {
        v.map(|v| Definition::from_stored(v.definition.clone()).triggers())
            .unwrap_or_default()
    };
    let published = nodes(bundle.published.as_ref());
    let test_version = bundle.draft.as_ref().or(bundle.published.as_ref());
    let test = nodes(test_version);
    let mut paths: Vec<String> = Vec::new();
    for t in published.iter().chain(test.iter()) {
        if !paths.contains(&t.path.as_str().to_owned()) {
            paths.push(t.path.as_str().to_owned());
        }
    }
    let live = |set: &[callgate_domain::definition::TriggerNode], p: &str| {
        active && set.iter().any(|t| t.path.as_str() == p && t.enabled)
    };
    let items: Vec<Value> = paths
        .iter()
        .map(|p| {
            json!({
                "trigger_path": p,
                "production_url": s.url(&format!("/api/v1/public/agent/{p}")),
                "test_url": s.url(&format!("/api/v1/public/agent/test/{p}")),
                "live_in_production": live(&published, p),
                "live_in_test": live(&test, p),
            })
        })
        .collect();
    Ok(Json(json!({
        "workflow_id": bundle.agent.id,
        "workflow_uuid": bundle.agent.uuid.to_string(),
        "workflow_production_url":
            s.url(&format!("/api/v1/public/agent/workflow/{}", bundle.agent.uuid)),
        "workflow_test_url":
            s.url(&format!("/api/v1/public/agent/test/workflow/{}", bundle.agent.uuid)),
        "triggers": items,
    })))
}

#[derive(Deserialize)]
struct OwnerBody {
    user_id: i64,
}

#[utoipa::path(
    put,
    path = "/api/v1/workflow/{id}/owner",
    operation_id = "set_workflow_owner",
    tag = "Workflows",
    summary = "Reassign the execution owner",
    params(
        ("id" = i64, Path, description = "The agent's integer id"),
    ),
    request_body(content = doc::OwnerRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The agent with its new owner", body = doc::Agent),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`workflow_not_found`, or `user_not_found`: the user is not in this organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 413, response = doc::PayloadTooLarge),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_body`: `user_id` missing or not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn owner(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<OwnerBody>,
) -> ApiResult<Json<Value>> {
    let bundle = s
        .store
        .set_owner(key.org_id, id, body.user_id)
        .await
        .map_err(map_conflict)?;
    s.catalog.invalidate_all();
    Ok(Json(views::agent_json(&bundle)))
}

#[utoipa::path(
    post,
    path = "/api/v1/workflow/{id}/archive",
    operation_id = "archive_workflow",
    tag = "Workflows",
    summary = "Archive an agent",
    params(
        ("id" = i64, Path, description = "The agent's integer id"),
    ),
    responses(
        (status = 200, description = "The archived agent; its triggers stop working", body = doc::Agent),
        (status = 401, response = doc::Unauthorized),
        (status = 403, response = doc::AdminScopeRequired),
        (status = 404, description = "`workflow_not_found`: no such agent in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn archive(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    let bundle = s
        .store
        .archive_agent(key.org_id, id)
        .await
        .map_err(|e| store_error(e, NOT_FOUND))?;
    s.catalog.invalidate_all();
    Ok(Json(views::agent_json(&bundle)))
}

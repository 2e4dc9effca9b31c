//! Agents (Dograh "workflows", SPEC §6.3): create, fetch, list, edit the draft, publish,
//! versions, triggers with their URLs, owner, archive.

use crate::http::extract::{AdminKey, JsonBody, SharedState};
use crate::http::problem::{ApiError, ApiResult, FieldError, store_error};
use crate::views;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use callgate_domain::definition::{Definition, DefinitionError};
use callgate_store::{AgentBundle, AgentStatus, DraftEdit, NewAgent, StoreError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

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
            FieldError::new(&pointer, "invalid_definition", e.message.clone())
        })
        .collect();
    let code = if status == 422 {
        "invalid_definition"
    } else {
        "bad_definition"
    };
    ApiError::unprocessable(code, format!("Invalid workflow definition: {detail}"))
        .with_errors(fields)
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

async fn create(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<Json<Value>> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid_field(
            "/name",
            "name must be 1 to 255 characters",
        ));
    }
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

async fn update(
    State(s): State<SharedState>,
    AdminKey(key): AdminKey,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    load(&s, key.org_id, id).await?;
    let name = match body.name.map(|n| n.trim().to_owned()) {
        Some(n) if n.is_empty() || n.chars().count() > 255 => {
            return Err(ApiError::invalid_field(
                "/name",
                "name must be 1 to 255 characters",
            ));
        }
        other => other,
    };
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

//! The runs API (SPEC §4): calls by `call_id`, the filtered list with cursor paging, and
//! Dograh's workflow run views.

use crate::http::extract::{Auth, SharedState};
use crate::http::problem::{ApiError, ApiResult, store_error};
use crate::views;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use callgate_domain::lifecycle::{Outcome, RunStatus};
use callgate_store::RunFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/calls", get(list))
        .route("/api/v1/calls/{call_id}", get(one))
        .route("/api/v1/workflow/{workflow_id}/runs", get(dograh_list))
        .route(
            "/api/v1/workflow/{workflow_id}/runs/{run_id}",
            get(dograh_one),
        )
}

const RUN_NOT_FOUND: (&str, &str) = ("call_not_found", "Call not found");

async fn one(
    State(s): State<SharedState>,
    Auth(key): Auth,
    Path(call_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = Uuid::parse_str(&call_id)
        .map_err(|_| ApiError::not_found(RUN_NOT_FOUND.0, RUN_NOT_FOUND.1))?;
    let run = s
        .store
        .get_run_by_call_id(key.org_id, id)
        .await
        .map_err(|e| store_error(e, RUN_NOT_FOUND))?;
    Ok(Json(views::run_json(&run)))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    outcome: Option<String>,
    agent_id: Option<i64>,
    external_id: Option<String>,
    phone_number: Option<String>,
    created_after: Option<String>,
    created_before: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn bad_query(field: &str, msg: &str) -> ApiError {
    ApiError::unprocessable("invalid_query", format!("{field}: {msg}"))
}

fn parse_time(field: &str, v: Option<String>) -> ApiResult<Option<jiff::Timestamp>> {
    v.map(|s| {
        s.parse::<jiff::Timestamp>()
            .map_err(|_| bad_query(field, "must be an RFC 3339 time"))
    })
    .transpose()
}

async fn list(
    State(s): State<SharedState>,
    Auth(key): Auth,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(bad_query("limit", "must be between 1 and 100"));
    }
    let before_id = q
        .cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| bad_query("cursor", "is not a valid cursor"))
        })
        .transpose()?;
    let filter = RunFilter {
        status: q
            .status
            .map(|v| RunStatus::parse(&v).ok_or_else(|| bad_query("status", "unknown status")))
            .transpose()?,
        outcome: q
            .outcome
            .map(|v| Outcome::parse(&v).ok_or_else(|| bad_query("outcome", "unknown outcome")))
            .transpose()?,
        agent_id: q.agent_id,
        external_id: q.external_id,
        phone_number: q.phone_number.map(|p| {
            callgate_domain::E164::parse(&p)
                .map(|e| e.as_str().to_owned())
                .unwrap_or(p)
        }),
        created_after: parse_time("created_after", q.created_after)?,
        created_before: parse_time("created_before", q.created_before)?,
        before_id,
        limit: limit + 1,
    };
    let mut runs = s.store.list_runs(key.org_id, &filter).await?;
    let next = if runs.len() > limit as usize {
        runs.truncate(limit as usize);
        runs.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(Json(json!({
        "data": runs.iter().map(views::run_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

const DOGRAH_RUN_NOT_FOUND: (&str, &str) = ("workflow_run_not_found", "Workflow run not found");

async fn dograh_one(
    State(s): State<SharedState>,
    Auth(key): Auth,
    Path((workflow_id, run_id)): Path<(i64, i64)>,
) -> ApiResult<Json<Value>> {
    let run = s
        .store
        .get_run(key.org_id, run_id)
        .await
        .map_err(|e| store_error(e, DOGRAH_RUN_NOT_FOUND))?;
    if run.agent_id != workflow_id {
        return Err(ApiError::not_found(
            DOGRAH_RUN_NOT_FOUND.0,
            DOGRAH_RUN_NOT_FOUND.1,
        ));
    }
    Ok(Json(views::dograh_run_json(&run)))
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<u32>,
    limit: Option<u32>,
}

async fn dograh_list(
    State(s): State<SharedState>,
    Auth(key): Auth,
    Path(workflow_id): Path<i64>,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::unprocessable("invalid_query", e.body_text()))?;
    s.catalog
        .agent(key.org_id, workflow_id)
        .await
        .map_err(|e| store_error(e, ("workflow_not_found", "Workflow not found")))?;
    let page = q.page.unwrap_or(1).max(1);
    let limit = q.limit.unwrap_or(50).clamp(1, 100);
    // Page through with the id cursor; pages are small and bounded.
    let mut before_id = None;
    let mut runs = Vec::new();
    for _ in 0..page {
        let filter = RunFilter {
            agent_id: Some(workflow_id),
            before_id,
            limit,
            ..RunFilter::default()
        };
        runs = s.store.list_runs(key.org_id, &filter).await?;
        match runs.last() {
            Some(r) => before_id = Some(r.id),
            None => break,
        }
    }
    Ok(Json(json!({
        "runs": runs.iter().map(views::dograh_run_json).collect::<Vec<_>>(),
        "page": page,
        "limit": limit,
    })))
}

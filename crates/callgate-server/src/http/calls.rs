//! The runs API (SPEC §4): calls by `call_id`, the filtered list with cursor paging, and
//! Dograh's workflow run views.

use crate::http::extract::Path;
use crate::http::extract::{Auth, SharedState};
use crate::http::problem::{ApiError, ApiResult, store_error};
use crate::http::schemas as doc;
use crate::views;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use callgate_domain::lifecycle::{Outcome, RunStatus};
use callgate_store::{ApiKey, Cancel, Run, RunFilter};
use callgate_telephony::HangupError;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// OpenAPI description of these routes, merged into `crate::http::openapi::ApiDoc`.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, one, cancel, hangup, dograh_list, dograh_one))]
pub(crate) struct Docs;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/calls", get(list))
        .route("/api/v1/calls/{call_id}", get(one))
        .route("/api/v1/calls/{call_id}/cancel", post(cancel))
        .route("/api/v1/calls/{call_id}/hangup", post(hangup))
        .route("/api/v1/workflow/{workflow_id}/runs", get(dograh_list))
        .route(
            "/api/v1/workflow/{workflow_id}/runs/{run_id}",
            get(dograh_one),
        )
}

const RUN_NOT_FOUND: (&str, &str) = ("call_not_found", "Call not found");

#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}",
    operation_id = "get_call",
    tag = "Calls",
    summary = "Get a call",
    params(
        ("call_id" = String, Path, format = "uuid", description = "The run's `call_id`"),
    ),
    responses(
        (status = 200, description = "The run with its results (SPEC §4.1)", body = doc::Run),
        (status = 401, response = doc::Unauthorized),
        (status = 404, description = "`call_not_found`: no run with this `call_id` in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn one(
    State(s): State<SharedState>,
    Auth(key): Auth,
    Path(call_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let run = run_by_call_id(&s, key.org_id, &call_id).await?;
    Ok(Json(views::run_json(&run)))
}

/// The run with this `call_id`, for a change through `key`: a key limited to some agents or
/// environments may change only their calls, as it may only place those.
async fn scoped_run(s: &SharedState, key: &ApiKey, call_id: &str) -> ApiResult<Run> {
    let run = run_by_call_id(s, key.org_id, call_id).await?;
    if !key.scopes.allows_agent(run.agent_id) || !key.scopes.allows_env(run.environment) {
        return Err(ApiError::forbidden(
            "forbidden_scope",
            "API key does not have access to this agent",
        ));
    }
    Ok(run)
}

/// The organisation's run with this `call_id`; `call_not_found` for any other id.
async fn run_by_call_id(s: &SharedState, org: i64, call_id: &str) -> ApiResult<Run> {
    let id = Uuid::parse_str(call_id)
        .map_err(|_| ApiError::not_found(RUN_NOT_FOUND.0, RUN_NOT_FOUND.1))?;
    s.store
        .get_run_by_call_id(org, id)
        .await
        .map_err(|e| store_error(e, RUN_NOT_FOUND))
}

#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_id}/cancel",
    operation_id = "cancel_call",
    tag = "Calls",
    summary = "Cancel a call that has not been dialled",
    description = "Ends a queued or scheduled run with outcome `canceled` (`ended_reason` \
        `canceled`); it is never dialled. Once dialling began the run is unchanged and the \
        answer is 409 `not_cancelable`.",
    params(
        ("call_id" = String, Path, format = "uuid", description = "The run's `call_id`"),
    ),
    responses(
        (status = 200, description = "The canceled run (SPEC §4.1)", body = doc::Run),
        (status = 401, response = doc::Unauthorized),
        (status = 403, description = "`forbidden_scope`: the key's scopes do not cover the run's agent or environment", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`call_not_found`: no run with this `call_id` in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_cancelable`: dialling began, or the run already ended; `call_status` is the run's", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn cancel(
    State(s): State<SharedState>,
    Auth(key): Auth,
    Path(call_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let run = scoped_run(&s, &key, &call_id).await?;
    let now = s.clock.now();
    match s
        .store
        .cancel_run(key.org_id, run.call_id, now)
        .await
        .map_err(|e| store_error(e, RUN_NOT_FOUND))?
    {
        Cancel::Canceled { run, was } => {
            s.capacity.ended(run.org_id, run.config_id, was);
            crate::metrics::run_ended(Outcome::Canceled.as_str());
            // A `Prefer: wait` trigger of this run on this node hears at once.
            s.dial_settled(run.id, Err(callgate_store::CANCELED_REASON.to_owned()));
            Ok(Json(views::run_json(&run)))
        }
        Cancel::NotCancelable(run) => Err(ApiError::conflict(
            "not_cancelable",
            match run.status {
                RunStatus::Ended => "The call already ended",
                _ => "The call can no longer be canceled: dialling began",
            },
        )
        .with_extra("call_status", json!(run.status.as_str()))),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_id}/hangup",
    operation_id = "hang_up_call",
    tag = "Calls",
    summary = "End a live call",
    description = "Asks the provider to end a call that is ringing or in progress. The answer \
        (202) comes once the provider accepted the request; the call ends as the provider \
        reports it, with `ended_reason` `api_hangup` (outcome `canceled` if nobody had answered, \
        else as the call went). A call not yet dialled is canceled instead \
        (`POST /api/v1/calls/{call_id}/cancel`).",
    params(
        ("call_id" = String, Path, format = "uuid", description = "The run's `call_id`"),
    ),
    responses(
        (status = 202, description = "The provider is ending the call; the run as it stands (SPEC §4.1)", body = doc::Run),
        (status = 401, response = doc::Unauthorized),
        (status = 403, description = "`forbidden_scope`: the key's scopes do not cover the run's agent or environment", body = doc::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`call_not_found`: no run with this `call_id` in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_live`: the call is not ringing or in progress (not yet dialled, still being placed, or ended; `call_status` is the run's), or its provider does not have it live", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 502, description = "`provider_error`: the provider did not take the request; try again", body = doc::Problem, content_type = "application/problem+json"),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
async fn hangup(
    State(s): State<SharedState>,
    Auth(key): Auth,
    Path(call_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let run = scoped_run(&s, &key, &call_id).await?;
    let not_live = |detail: &str, run: &Run| {
        ApiError::conflict("not_live", detail).with_extra("call_status", json!(run.status.as_str()))
    };
    let provider_call_id = match (&run.provider_call_id, run.status) {
        (Some(id), RunStatus::Dialing | RunStatus::Ringing | RunStatus::InProgress) => id,
        (None, RunStatus::Dialing) => {
            return Err(not_live(
                "The provider has not placed the call yet; try again in a moment",
                &run,
            ));
        }
        (_, RunStatus::Scheduled | RunStatus::Queued) => {
            return Err(not_live(
                "The call has not been dialled; cancel it instead",
                &run,
            ));
        }
        _ => return Err(not_live("The call already ended", &run)),
    };
    let cfg = s
        .catalog
        .config_any(run.config_id)
        .await
        .map_err(ApiError::internal)?;
    let provider = crate::worker::dispatcher::provider_for(&s, &cfg).map_err(ApiError::internal)?;
    match provider.hangup(provider_call_id).await {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(views::run_json(&run)))),
        Err(HangupError::NotLive(why)) => Err(not_live(
            &format!("The provider does not have the call live: {why}"),
            &run,
        )),
        Err(HangupError::Transient(why)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "provider_error",
            format!("The provider did not take the hangup request: {why}"),
        )),
    }
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

#[utoipa::path(
    get,
    path = "/api/v1/calls",
    operation_id = "list_calls",
    tag = "Calls",
    summary = "List calls",
    description = "Cursor pagination (SPEC §4): pass `next_cursor` as `cursor` until it is null.",
    params(
        ("status" = Option<doc::RunStatus>, Query, description = "Only runs with this lifecycle status"),
        ("outcome" = Option<doc::Outcome>, Query, description = "Only ended runs with this outcome"),
        ("agent_id" = Option<i64>, Query, description = "Only runs of this agent"),
        ("external_id" = Option<String>, Query, description = "Only runs with this `external_id`"),
        ("phone_number" = Option<String>, Query, description = "Only runs to this number (normalised to E.164 when it parses)"),
        ("created_after" = Option<String>, Query, format = DateTime, description = "RFC 3339 lower bound on `created_at`"),
        ("created_before" = Option<String>, Query, format = DateTime, description = "RFC 3339 upper bound on `created_at`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1–100 (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of runs, newest first", body = doc::RunList),
        (status = 401, response = doc::Unauthorized),
        (status = 422, description = "`invalid_query`: an unknown status or outcome, a bad time, limit or cursor", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/workflow/{workflow_id}/runs/{run_id}",
    operation_id = "get_workflow_run",
    tag = "Workflow runs",
    summary = "Get a workflow run (Dograh)",
    params(
        ("workflow_id" = i64, Path, description = "The agent's integer id"),
        ("run_id" = i64, Path, description = "The run's `workflow_run_id`"),
    ),
    responses(
        (status = 200, description = "Dograh's run view: SPEC §4.1 plus Dograh's field names", body = doc::DograhRun),
        (status = 401, response = doc::Unauthorized),
        (status = 404, description = "`workflow_run_not_found`: no such run of this agent in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
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

#[utoipa::path(
    get,
    path = "/api/v1/workflow/{workflow_id}/runs",
    operation_id = "list_workflow_runs",
    tag = "Workflow runs",
    summary = "List workflow runs (Dograh)",
    params(
        ("workflow_id" = i64, Path, description = "The agent's integer id"),
        ("page" = Option<u32>, Query, minimum = 1, description = "1-based page number (default 1)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, clamped to 1–100 (default 50)"),
    ),
    responses(
        (status = 200, description = "One page of the agent's runs, newest first", body = doc::DograhRunList),
        (status = 401, response = doc::Unauthorized),
        (status = 404, description = "`workflow_not_found`: no such agent in the organisation", body = doc::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_path`: a path id is not an integer; `invalid_query`: `page` or `limit` is not a number", body = doc::Problem, content_type = "application/problem+json"),
        (status = 500, response = doc::InternalError),
        (status = 503, response = doc::Unavailable),
    ),
    security(("api_key" = []))
)]
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

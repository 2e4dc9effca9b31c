//! The public trigger API (SPEC §2), the outbound call API (§3) and Dograh's dashboard test
//! call (§6.3 initiate-call): HTTP in, `trigger::prepare`, one durable write, HTTP out.

use crate::app::AppState;
use crate::http::extract::{RawBody, SharedState, authenticate, parse_object};
use crate::http::problem::{ApiError, ApiResult};
use crate::trigger::{AgentRef, Flavor, TriggerRequest, dry_run_body, prepare};
use crate::views;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use callgate_store::{Environment, IdempotencyClaim, Run, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/public/agent/{path}", post(trigger_production))
        .route("/api/v1/public/agent/test/{path}", post(trigger_test))
        .route(
            "/api/v1/public/agent/workflow/{uuid}",
            post(workflow_production),
        )
        .route(
            "/api/v1/public/agent/test/workflow/{uuid}",
            post(workflow_test),
        )
        .route("/api/v1/calls/outbound", post(outbound))
        .route("/api/v1/telephony/initiate-call", post(initiate_call))
}

/// The response format of each entry point.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Trigger,
    Outbound,
    InitiateCall,
}

struct Call {
    route: &'static str,
    env: Environment,
    flavor: Flavor,
    shape: Shape,
}

async fn trigger_production(
    State(s): State<SharedState>,
    Path(path): Path<String>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "trigger",
        env: Environment::Production,
        flavor: Flavor::Dograh,
        shape: Shape::Trigger,
    };
    handle(&s, call, Some(AgentRef::TriggerPath(path)), parts, &body).await
}

async fn trigger_test(
    State(s): State<SharedState>,
    Path(path): Path<String>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "trigger_test",
        env: Environment::Test,
        flavor: Flavor::Dograh,
        shape: Shape::Trigger,
    };
    handle(&s, call, Some(AgentRef::TriggerPath(path)), parts, &body).await
}

async fn workflow_production(
    State(s): State<SharedState>,
    Path(uuid): Path<String>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "workflow",
        env: Environment::Production,
        flavor: Flavor::Dograh,
        shape: Shape::Trigger,
    };
    handle(&s, call, Some(AgentRef::WorkflowUuid(uuid)), parts, &body).await
}

async fn workflow_test(
    State(s): State<SharedState>,
    Path(uuid): Path<String>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "workflow_test",
        env: Environment::Test,
        flavor: Flavor::Dograh,
        shape: Shape::Trigger,
    };
    handle(&s, call, Some(AgentRef::WorkflowUuid(uuid)), parts, &body).await
}

async fn outbound(State(s): State<SharedState>, parts: Parts, RawBody(body): RawBody) -> Response {
    let call = Call {
        route: "outbound",
        env: Environment::Production,
        flavor: Flavor::Outbound,
        shape: Shape::Outbound,
    };
    handle(&s, call, None, parts, &body).await
}

async fn initiate_call(
    State(s): State<SharedState>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let call = Call {
        route: "initiate_call",
        env: Environment::Test,
        flavor: Flavor::Dograh,
        shape: Shape::InitiateCall,
    };
    handle(&s, call, None, parts, &body).await
}

async fn handle(
    state: &Arc<AppState>,
    call: Call,
    agent: Option<AgentRef>,
    parts: Parts,
    body: &[u8],
) -> Response {
    let route = call.route;
    let res = accept(state, call, agent, &parts, body).await;
    let res = match res {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    crate::metrics::trigger(route, res.status().as_u16());
    res
}

/// Removes an in-flight idempotency key when the request finishes, however it finishes.
struct InFlight<'a> {
    state: &'a AppState,
    key: (i64, String, String),
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.state.inflight.lock() {
            set.remove(&self.key);
        }
    }
}

fn query_flag(parts: &Parts, name: &str) -> bool {
    parts.uri.query().is_some_and(|q| {
        q.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            k == name && matches!(v, "true" | "1" | "yes")
        })
    })
}

/// `Prefer: wait=N` (N ≤ 30).
fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get("prefer")?.to_str().ok()?;
    v.split([',', ';'])
        .filter_map(|p| p.trim().strip_prefix("wait="))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .map(|n| Duration::from_secs(n.min(30)))
        .next()
}

async fn accept(
    state: &Arc<AppState>,
    call: Call,
    agent: Option<AgentRef>,
    parts: &Parts,
    body: &[u8],
) -> ApiResult<Response> {
    let codes = match call.flavor {
        Flavor::Outbound => ("unauthorized", "unauthorized"),
        Flavor::Dograh => ("missing_api_key", "invalid_api_key"),
    };
    let key = authenticate(state, parts, codes).await?;
    let dry_run = query_flag(parts, "dry_run");

    // Idempotency (SPEC §2.1): replay, reuse with another body, or in flight.
    let idem_key = parts
        .headers
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| {
            ApiError::unprocessable("invalid_idempotency_key", "Idempotency-Key must be ASCII")
        })?;
    if idem_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 255)
    {
        return Err(ApiError::unprocessable(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 characters",
        ));
    }
    let body_hash: [u8; 32] = Sha256::digest(body).into();
    let route_id = parts.uri.path().to_owned();
    let mut _guard = None;
    let mut claim = None;
    if let (Some(k), false) = (&idem_key, dry_run) {
        let inflight_key = (key.id, route_id.clone(), k.clone());
        let fresh = state
            .inflight
            .lock()
            .map(|mut set| set.insert(inflight_key.clone()))
            .unwrap_or(false);
        if !fresh {
            return Err(ApiError::conflict(
                "idempotency_in_flight",
                "A request with this Idempotency-Key is still being processed",
            ));
        }
        _guard = Some(InFlight {
            state,
            key: inflight_key,
        });
        if let Some(resp) = replay(
            state, &call, key.org_id, key.id, &route_id, k, &body_hash, body,
        )
        .await?
        {
            return Ok(resp);
        }
        claim = Some(IdempotencyClaim {
            api_key_id: key.id,
            route: route_id.clone(),
            key: k.clone(),
            body_hash,
        });
    }

    let map = parse_object(body)?;
    let agent = match (agent, call.shape) {
        (Some(a), _) => a,
        (None, Shape::Outbound) => match map.get("agent_id") {
            None | Some(Value::Null) => {
                return Err(ApiError::invalid_field("/agent_id", "agent_id is required"));
            }
            Some(v @ (Value::Number(_) | Value::String(_))) => AgentRef::AgentId(v.clone()),
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "/agent_id",
                    "agent_id must be an integer or a UUID string",
                ));
            }
        },
        (None, _) => match map.get("workflow_id") {
            Some(Value::Number(n)) if n.is_i64() => AgentRef::WorkflowId(n.as_i64().unwrap_or(0)),
            None | Some(Value::Null) => {
                return Err(ApiError::invalid_field(
                    "/workflow_id",
                    "workflow_id is required",
                ));
            }
            Some(_) => {
                return Err(ApiError::invalid_field(
                    "/workflow_id",
                    "workflow_id must be an integer",
                ));
            }
        },
    };
    let agent_value = map.get("agent_id").cloned().unwrap_or(Value::Null);
    let req = TriggerRequest {
        env: call.env,
        agent,
        flavor: call.flavor,
        key: key.clone(),
        body: map,
        dry_run,
    };
    let prepared = prepare(state, &req).await?;
    if dry_run {
        return Ok((StatusCode::OK, axum::Json(dry_run_body(&prepared))).into_response());
    }

    let wait = prefer_wait(&parts.headers);
    let waiter = wait.map(|_| state.register_dial_waiter(prepared.run.id));
    let run = match state.store.enqueue_run(prepared.run, claim).await {
        Ok(run) => run,
        Err(StoreError::Conflict("idempotency_key_reused")) => {
            // Another node took the key between our lookup and our write.
            if let Some(k) = &idem_key {
                if let Some(resp) = replay(
                    state, &call, key.org_id, key.id, &route_id, k, &body_hash, body,
                )
                .await?
                {
                    return Ok(resp);
                }
            }
            return Err(ApiError::conflict(
                "idempotency_in_flight",
                "A request with this Idempotency-Key is still being processed",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    state.run_enqueued(&run);

    let mut answered = run;
    if let (Some(wait), Some(rx)) = (wait, waiter) {
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Err(message))) => {
                // The run stays in history (outcome `failed`); say which one it is.
                return Err(ApiError::bad_request(
                    "dial_failed",
                    format!("Failed to initiate call: {message}"),
                )
                .with_extra("workflow_run_id", json!(answered.id))
                .with_extra("call_id", json!(answered.call_id.to_string())));
            }
            Ok(Ok(Ok(()))) => {
                if let Ok(r) = state.store.get_run(key.org_id, answered.id).await {
                    let initial = answered.initial_status;
                    answered = r;
                    // `call_status` reports the status at the time of the answer.
                    answered.initial_status = answered.status;
                    let _ = initial;
                }
            }
            _ => state.forget_dial_waiter(answered.id),
        }
    }
    Ok(respond(&call, &answered, &agent_value, false))
}

#[allow(clippy::too_many_arguments)]
async fn replay(
    state: &AppState,
    call: &Call,
    org: i64,
    key_id: i64,
    route_id: &str,
    key: &str,
    body_hash: &[u8; 32],
    body: &[u8],
) -> ApiResult<Option<Response>> {
    let since = state.clock.now() - jiff::SignedDuration::from_hours(24);
    let Some(rec) = state
        .store
        .find_idempotency(key_id, route_id, key, since)
        .await?
    else {
        return Ok(None);
    };
    if &rec.body_hash != body_hash {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "Idempotency-Key was already used with a different request body",
        ));
    }
    let run = state.store.get_run(org, rec.run_id).await?;
    let agent_value = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("agent_id").cloned())
        .unwrap_or(Value::Null);
    Ok(Some(respond(call, &run, &agent_value, true)))
}

fn respond(call: &Call, run: &Run, agent_value: &Value, replayed: bool) -> Response {
    let body = match call.shape {
        Shape::Trigger => views::trigger_response(run),
        Shape::Outbound => views::outbound_response(run, agent_value),
        Shape::InitiateCall => {
            let name = views::run_name(run.id, run.environment);
            json!({
                "message": format!("Call initiated successfully with run name {name}"),
                "workflow_run_id": run.id,
                "workflow_run_name": name,
                "call_id": run.call_id.to_string(),
            })
        }
    };
    let mut res = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/calls/{}", run.call_id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

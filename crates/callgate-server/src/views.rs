//! Wire shapes of records (SPEC §4.1, Dograh's WorkflowResponse and run views). Store records
//! never leave the server in any other form.

use callgate_store::*;
use serde_json::{Map, Value, json};

pub fn run_name(run_id: RunId, env: Environment) -> String {
    match env {
        Environment::Production => format!("WR-API-{run_id:04}"),
        Environment::Test => format!("WR-TEST-{run_id:04}"),
    }
}

/// The caller's context with system values laid over it (SPEC §2.4).
pub fn merged_context(run: &Run) -> Map<String, Value> {
    let mut ctx = run.initial_context.map().clone();
    for (k, v) in run.system_context.iter() {
        ctx.insert(k.to_owned(), v.clone());
    }
    ctx
}

fn ts(t: Option<jiff::Timestamp>) -> Value {
    t.map(|t| Value::String(t.to_string()))
        .unwrap_or(Value::Null)
}

/// SPEC §4.1.
pub fn run_json(run: &Run) -> Value {
    json!({
        "call_id": run.call_id.to_string(),
        "workflow_run_id": run.id,
        "name": run_name(run.id, run.environment),
        "agent_id": run.agent_id,
        "workflow_uuid": run.workflow_uuid.to_string(),
        "agent_version": run.version_number,
        "trigger_mode": run.environment.as_str(),
        "phone_number": run.phone_number,
        "from_number": run.from_number,
        "telephony_configuration_id": run.config_id,
        "provider": run.provider,
        "provider_call_id": run.provider_call_id,
        "status": run.status.as_str(),
        "outcome": run.outcome.map(|o| o.as_str()),
        "ended_reason": run.ended_reason,
        "answered_by": run.answered_by,
        "attempt": run.attempt,
        "max_attempts": run.max_attempts,
        "created_at": run.created_at.to_string(),
        "scheduled_for": run.scheduled_for.to_string(),
        "dialed_at": ts(run.dialed_at),
        "answered_at": ts(run.answered_at),
        "ended_at": ts(run.ended_at),
        "duration_seconds": run.duration_seconds,
        "transcript": run.transcript,
        "recording_url": run.recording_url,
        "extracted": run.extracted,
        "initial_context": merged_context(run),
        "metadata": run.metadata,
        "external_id": run.external_id,
        "unresolved_variables": run.unresolved_variables,
        "greeting": run.greeting,
        "error": run.error,
        "events": run.events,
    })
}

/// Dograh's run view: SPEC §4.1 plus Dograh's own field names.
pub fn dograh_run_json(run: &Run) -> Value {
    let mut v = run_json(run);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), json!(run.id));
        m.insert("workflow_id".into(), json!(run.agent_id));
        m.insert("mode".into(), json!(run.provider));
        m.insert("is_completed".into(), json!(run.outcome.is_some()));
        m.insert("transcript_url".into(), Value::Null);
        m.insert(
            "cost_info".into(),
            json!({"duration_seconds": run.duration_seconds}),
        );
        m.insert(
            "usage_info".into(),
            json!({"call_duration_seconds": run.duration_seconds}),
        );
        m.insert("definition_id".into(), json!(run.version_id));
        m.insert("call_type".into(), json!("outbound"));
        m.insert(
            "gathered_context".into(),
            run.extracted.clone().unwrap_or_else(|| json!({})),
        );
        m.insert("logs".into(), json!({"events": run.events}));
    }
    v
}

/// The trigger answer of SPEC §2.2, serialised straight from the run: it is written once per
/// accepted trigger, and building a `Value` first allocated every key and value again.
#[derive(serde::Serialize)]
pub struct TriggerAnswer<'a> {
    status: &'static str,
    workflow_run_id: RunId,
    workflow_run_name: String,
    #[serde(serialize_with = "as_text")]
    call_id: &'a uuid::Uuid,
    call_status: &'static str,
    agent_version: i64,
    telephony_configuration_id: ConfigId,
    from_number: Option<&'a str>,
    #[serde(serialize_with = "time_text")]
    scheduled_for: &'a jiff::Timestamp,
}

fn time_text<S: serde::Serializer>(t: &&jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    callgate_domain::rfc3339::serialize(t, s)
}

fn as_text<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub fn trigger_response(run: &Run) -> TriggerAnswer<'_> {
    TriggerAnswer {
        status: "initiated",
        workflow_run_id: run.id,
        workflow_run_name: run_name(run.id, run.environment),
        call_id: &run.call_id,
        call_status: run.initial_status.as_str(),
        agent_version: run.version_number,
        telephony_configuration_id: run.config_id,
        from_number: run.from_number.as_deref(),
        scheduled_for: &run.scheduled_for,
    }
}

/// The answer of the outbound API (SPEC §3).
pub fn outbound_response(run: &Run, agent_ref: &Value) -> Value {
    json!({
        "call_id": run.call_id.to_string(),
        "status": "queued",
        "agent_id": agent_ref,
        "to_number": run.phone_number,
        "from_number": run.from_number,
        "queued_at": run.created_at.to_string(),
        "workflow_run_id": run.id,
    })
}

/// Dograh's `created_at`: RFC 3339 with an explicit offset.
pub fn offset_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

/// The version the management API shows: the draft if there is one, else the published one.
pub fn current_version(b: &AgentBundle) -> Option<&AgentVersion> {
    b.draft.as_ref().or(b.published.as_ref())
}

/// Dograh's `WorkflowResponse`.
pub fn agent_json(b: &AgentBundle) -> Value {
    let current = current_version(b);
    json!({
        "id": b.agent.id,
        "name": b.agent.name,
        "status": b.agent.status.as_str(),
        "created_at": offset_time(b.agent.created_at),
        "workflow_definition": current.map(|v| v.definition.clone()).unwrap_or_else(|| json!({})),
        "current_definition_id": current.map(|v| v.id),
        "template_context_variables": current.and_then(|v| v.template_context_variables.clone()),
        "version_number": current.map(|v| v.version_number),
        "version_status": current.map(|v| v.status.as_str()),
        "published_version_number": b.published.as_ref().map(|v| v.version_number),
        "workflow_uuid": b.agent.uuid.to_string(),
        "owner_user_id": b.agent.owner_user_id,
        "total_runs": b.agent.total_runs,
    })
}

pub fn agent_list_item(a: &Agent) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "status": a.status.as_str(),
        "created_at": offset_time(a.created_at),
        "total_runs": a.total_runs,
        "workflow_uuid": a.uuid.to_string(),
    })
}

pub fn version_json(v: &AgentVersion) -> Value {
    json!({
        "id": v.id,
        "version_number": v.version_number,
        "status": v.status.as_str(),
        "created_at": offset_time(v.created_at),
        "published_at": v.published_at.map(offset_time),
        "workflow_definition": v.definition,
        "template_context_variables": v.template_context_variables,
    })
}

pub fn api_key_json(k: &ApiKey) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "key_prefix": k.key_prefix,
        "scopes": k.scopes,
        "is_active": k.active,
        "user_id": k.user_id,
        "created_at": offset_time(k.created_at),
        "last_used_at": k.last_used_at.map(offset_time),
    })
}

pub fn number_json(n: &PhoneNumber) -> Value {
    json!({
        "id": n.id,
        "address": n.address,
        "label": n.label,
        "is_default_caller_id": n.is_default_caller_id,
        "is_active": n.is_active,
        "created_at": offset_time(n.created_at),
    })
}

pub fn config_json(c: &TelephonyConfig, numbers: &[PhoneNumber]) -> Value {
    let set: Map<String, Value> = c
        .credential_fields
        .iter()
        .map(|f| (f.clone(), Value::Bool(true)))
        .collect();
    json!({
        "id": c.id,
        "name": c.name,
        "provider": c.provider,
        "credentials_set": set,
        "is_default_outbound": c.is_default_outbound,
        "calls_per_second": c.calls_per_second,
        "max_concurrent_calls": c.max_concurrent_calls,
        "is_active": c.active,
        "created_at": offset_time(c.created_at),
        "phone_numbers": numbers.iter().map(number_json).collect::<Vec<_>>(),
    })
}

pub fn settings_json(o: &Organization) -> Value {
    json!({
        "organization_id": o.id,
        "name": o.name,
        "max_concurrent_calls": o.settings.max_concurrent_calls,
        "max_queued_calls": o.settings.max_queued_calls,
        "on_capacity": o.settings.on_capacity,
        "quota_seconds_remaining": o.quota_seconds_remaining,
    })
}

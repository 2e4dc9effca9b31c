//! Accepting a call request (SPEC §2, §3, §6.3 initiate-call): every check of §2.3 in order,
//! context assembly (§2.4, §5), configuration and caller-ID resolution (§2.3 #16–19, §7.2),
//! quota and capacity, then one durable write. Routes only translate HTTP to and from this.

use crate::app::AppState;
use crate::cache::{CachedAgent, PreparedVersion};
use crate::http::problem::{ApiError, ApiResult, FieldError};
use callgate_domain::E164;
use callgate_domain::context::{InitialContext, check_metadata};
use callgate_domain::lifecycle::RunStatus;
use callgate_domain::phone::PhoneError;
use callgate_domain::template::{RenderScope, missing_names, render, unresolved_names};
use callgate_domain::variables::apply_declarations;
use callgate_store::*;
use callgate_telephony::readiness;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use uuid::Uuid;

/// How the request names its agent.
#[derive(Debug, Clone)]
pub enum AgentRef {
    TriggerPath(String),
    WorkflowUuid(String),
    /// `agent_id` of the outbound API: an integer id or a UUID.
    AgentId(Value),
    /// `workflow_id` of Dograh's initiate-call.
    WorkflowId(i64),
}

/// Which API's error vocabulary to speak (SPEC §3 uses its own codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Dograh,
    Outbound,
}

impl Flavor {
    /// The body member holding the caller's context.
    pub fn context_field(self) -> &'static str {
        match self {
            Flavor::Dograh => "initial_context",
            Flavor::Outbound => "variables",
        }
    }
}

/// The caller's context member of a trigger body (`initial_context`, or `variables`).
#[derive(Debug)]
pub enum ContextMember {
    Absent,
    /// An object kept as the text sent, not parsed into values (`InitialContext::from_text`).
    Text(InitialContext),
    /// Any other value, parsed: `null`, something that is not an object (refused later), or an
    /// object whose text could not be kept as it is, then with that text when it was found.
    Parsed(Value, Option<Box<str>>),
}

pub struct TriggerRequest {
    pub env: Environment,
    pub agent: AgentRef,
    pub flavor: Flavor,
    pub key: Arc<ApiKey>,
    /// The body's members but the context.
    pub body: Map<String, Value>,
    /// The body's context member.
    pub context: ContextMember,
    pub dry_run: bool,
}

/// The parsed, validated body.
struct CallSpec {
    phone: E164,
    context: InitialContext,
    config_id: Option<i64>,
    from_number_id: Option<i64>,
    from_number: Option<E164>,
    first_message: Option<String>,
    extra_prompt: Option<String>,
    metadata: Option<Value>,
    external_id: Option<String>,
}

/// Everything resolved before anything is written.
pub struct Prepared {
    pub run: NewRun,
    pub rendered_prompts: Vec<(String, String)>,
    /// The limits a dial of this run must respect, for claiming it as it is written.
    pub limits: ClaimLimits,
}

/// Check 20's `detail`, also the error of a run claimed after the quota ran out (SPEC §9).
pub const QUOTA_EXHAUSTED: &str = "Quota exhausted: no call minutes left";

/// Extension fields the SPEC names that this build does not implement yet; refusing them is
/// safer than ignoring them (ignoring `scheduled_at` would dial at once).
const UNSUPPORTED: &[&str] = &[
    "scheduled_at",
    "not_after",
    "calling_window",
    "retry",
    "callback_url",
    "machine_detection",
    "max_duration_seconds",
    "ring_timeout_seconds",
];

fn opt_str(body: &Map<String, Value>, field: &str) -> ApiResult<Option<String>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid_field(
            &format!("/{field}"),
            format!("{field} must be a string"),
        )),
    }
}

fn opt_int(body: &Map<String, Value>, field: &str) -> ApiResult<Option<i64>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
        Some(_) => Err(ApiError::invalid_field(
            &format!("/{field}"),
            format!("{field} must be an integer or null"),
        )),
    }
}

/// The context member as the run's context; absent or `null` is an empty object.
fn context_of(member: ContextMember, field: &str) -> ApiResult<InitialContext> {
    match member {
        ContextMember::Absent | ContextMember::Parsed(Value::Null, _) => {
            Ok(InitialContext::default())
        }
        ContextMember::Text(context) => Ok(context),
        ContextMember::Parsed(Value::Object(m), Some(text)) => Ok(InitialContext::as_sent(m, text)),
        ContextMember::Parsed(Value::Object(m), None) => Ok(InitialContext::new(m)),
        ContextMember::Parsed(..) => Err(ApiError::invalid_field(
            &format!("/{field}"),
            format!("{field} must be a JSON object"),
        )),
    }
}

fn phone_error(flavor: Flavor, field: &str, e: PhoneError) -> ApiError {
    let _ = e;
    let (code, detail) = match flavor {
        Flavor::Dograh => (
            "invalid_phone_number",
            "Invalid phone number format".to_owned(),
        ),
        Flavor::Outbound => ("invalid_phone", format!("{field} must be in E.164 format")),
    };
    ApiError::unprocessable(code, detail.clone()).with_errors(vec![FieldError::new(
        &format!("/{field}"),
        code,
        detail,
    )])
}

/// Checks 3–5 (and the body rules of §2.1, §3).
fn parse_body(
    flavor: Flavor,
    body: &mut Map<String, Value>,
    context: ContextMember,
) -> ApiResult<CallSpec> {
    let phone_field = match flavor {
        Flavor::Dograh => "phone_number",
        Flavor::Outbound => "to_number",
    };
    let ctx_field = flavor.context_field();
    // Check 3: every present field has the right type.
    let phone_raw = opt_str(body, phone_field)?;
    let context = context_of(context, ctx_field)?;
    context
        .check_initial_context()
        .map_err(|e| ApiError::invalid_field(&format!("/{ctx_field}"), e.message_for(ctx_field)))?;
    let config_id = opt_int(body, "telephony_configuration_id")?;
    let from_number_id = opt_int(body, "from_phone_number_id")?;
    let first_message = opt_str(body, "first_message")?;
    let extra_prompt = match flavor {
        Flavor::Outbound => opt_str(body, "context")?,
        Flavor::Dograh => None,
    };
    let from_raw = match flavor {
        Flavor::Outbound => opt_str(body, "from_number")?,
        Flavor::Dograh => None,
    };
    let metadata = match body.get_mut("metadata") {
        None | Some(Value::Null) => None,
        Some(v) => {
            check_metadata(v)
                .map_err(|e| ApiError::invalid_field("/metadata", e.message_for("metadata")))?;
            Some(v.take())
        }
    };
    let external_id = opt_str(body, "external_id")?;
    if external_id
        .as_ref()
        .is_some_and(|e| e.chars().count() > 128)
    {
        return Err(ApiError::invalid_field(
            "/external_id",
            "external_id must be at most 128 characters",
        ));
    }
    if let Some(field) = UNSUPPORTED.iter().find(|f| body.contains_key(**f)) {
        return Err(ApiError::unprocessable(
            "unsupported_field",
            format!("{field} is not supported by this callgate version yet"),
        )
        .with_errors(vec![FieldError::new(
            &format!("/{field}"),
            "unsupported_field",
            format!("{field} is not supported yet"),
        )]));
    }
    // Dograh's greeting override inside the context is honoured like `first_message`.
    let first_message = first_message.or_else(|| {
        let greeting = context.get("greeting_override")?;
        let o = greeting.as_object()?;
        (o.get("type")?.as_str()? == "text")
            .then(|| o.get("text")?.as_str().map(str::to_owned))
            .flatten()
    });
    // Check 4 and 5.
    let Some(phone_raw) = phone_raw else {
        let (code, detail) = match flavor {
            Flavor::Dograh => ("missing_phone_number", "phone_number is required"),
            Flavor::Outbound => ("invalid_phone", "to_number is required"),
        };
        return Err(
            ApiError::unprocessable(code, detail).with_errors(vec![FieldError::new(
                &format!("/{phone_field}"),
                "required",
                detail,
            )]),
        );
    };
    let phone = E164::parse(&phone_raw).map_err(|e| phone_error(flavor, phone_field, e))?;
    let from_number = from_raw
        .map(|f| E164::parse(&f).map_err(|e| phone_error(flavor, "from_number", e)))
        .transpose()?;
    Ok(CallSpec {
        phone,
        context,
        config_id,
        from_number_id,
        from_number,
        first_message,
        extra_prompt,
        metadata,
        external_id,
    })
}

fn not_found_outbound() -> ApiError {
    ApiError::not_found("not_found", "Agent not found or inactive")
}

/// Checks 6–13: which agent and which version run.
async fn resolve_agent(
    state: &AppState,
    req: &TriggerRequest,
) -> ApiResult<(Arc<CachedAgent>, Arc<PreparedVersion>)> {
    let org = req.key.org_id;
    let scope_check = |agent: &CachedAgent| -> ApiResult<()> {
        if !req.key.scopes.allows_agent(agent.agent.id) || !req.key.scopes.allows_env(req.env) {
            return Err(ApiError::forbidden(
                "forbidden_scope",
                "API key does not have access to this agent",
            ));
        }
        Ok(())
    };
    match &req.agent {
        AgentRef::TriggerPath(path) => {
            let owner = state.catalog.trigger(path).await?.ok_or_else(|| {
                ApiError::not_found("trigger_not_found", "Agent trigger not found")
            })?;
            // An archived agent's path is unknown (check 6) before it is another
            // organisation's (check 7).
            let agent = state.catalog.agent(owner.org_id, owner.agent_id).await?;
            if agent.agent.status == AgentStatus::Archived {
                return Err(ApiError::not_found(
                    "trigger_not_found",
                    "Agent trigger not found",
                ));
            }
            if owner.org_id != org {
                return Err(ApiError::forbidden("forbidden", "Access denied"));
            }
            scope_check(&agent)?;
            let version = agent.executed(req.env).cloned();
            let node = version
                .as_ref()
                .and_then(|v| v.triggers.iter().find(|t| t.path.as_str() == path))
                .map(|n| n.enabled);
            if node == Some(false) {
                return Err(ApiError::not_found(
                    "trigger_inactive",
                    "Agent trigger is not active",
                ));
            }
            let Some(version) = version else {
                return Err(ApiError::not_found(
                    "not_published",
                    "Workflow has no published definition",
                ));
            };
            if node.is_none() {
                return Err(ApiError::not_found(
                    "trigger_not_in_agent",
                    "Trigger not found in the selected Agent",
                ));
            }
            Ok((agent, version))
        }
        AgentRef::WorkflowUuid(raw) => {
            let not_found = || ApiError::not_found("workflow_not_found", "Workflow not found");
            let uuid = Uuid::parse_str(raw).map_err(|_| not_found())?;
            let agent = state
                .catalog
                .agent_by_uuid(uuid)
                .await?
                .ok_or_else(not_found)?;
            if agent.agent.org_id != org {
                return Err(ApiError::forbidden("forbidden", "Access denied"));
            }
            scope_check(&agent)?;
            if agent.agent.status == AgentStatus::Archived {
                return Err(ApiError::not_found(
                    "workflow_inactive",
                    "Workflow is not active",
                ));
            }
            let version = agent.executed(req.env).cloned().ok_or_else(|| {
                ApiError::not_found("not_published", "Workflow has no published definition")
            })?;
            Ok((agent, version))
        }
        AgentRef::WorkflowId(id) => {
            let agent = state.catalog.agent(org, *id).await.map_err(|e| match e {
                StoreError::NotFound => {
                    ApiError::not_found("workflow_not_found", "Workflow not found")
                }
                other => other.into(),
            })?;
            scope_check(&agent)?;
            if agent.agent.status == AgentStatus::Archived {
                return Err(ApiError::not_found(
                    "workflow_inactive",
                    "Workflow is not active",
                ));
            }
            let version = agent.executed(req.env).cloned().ok_or_else(|| {
                ApiError::not_found("not_published", "Workflow has no published definition")
            })?;
            Ok((agent, version))
        }
        AgentRef::AgentId(v) => {
            let agent = match v {
                Value::Number(n) => match n.as_i64() {
                    Some(id) => match state.catalog.agent(org, id).await {
                        Ok(a) => Some(a),
                        Err(StoreError::NotFound) => None,
                        Err(e) => return Err(e.into()),
                    },
                    None => None,
                },
                Value::String(s) => match (s.parse::<i64>(), Uuid::parse_str(s)) {
                    (Ok(id), _) => match state.catalog.agent(org, id).await {
                        Ok(a) => Some(a),
                        Err(StoreError::NotFound) => None,
                        Err(e) => return Err(e.into()),
                    },
                    (_, Ok(uuid)) => state
                        .catalog
                        .agent_by_uuid(uuid)
                        .await?
                        .filter(|a| a.agent.org_id == org),
                    _ => None,
                },
                _ => None,
            };
            let agent = agent.ok_or_else(not_found_outbound)?;
            scope_check(&agent)?;
            if agent.agent.status == AgentStatus::Archived {
                return Err(not_found_outbound());
            }
            let version = agent.published.clone().ok_or_else(not_found_outbound)?;
            Ok((agent, version))
        }
    }
}

/// Checks 16–19 and SPEC §7.2: the configuration and caller ID that place the call.
fn resolve_config<'c>(
    configs: &'c [ConfigWithNumbers],
    spec: &CallSpec,
) -> ApiResult<(&'c ConfigWithNumbers, Option<String>)> {
    let not_ready = |c: &ConfigWithNumbers, reason: String| {
        ApiError::bad_request(
            "telephony_not_ready",
            format!(
                "'{}' is not ready for outbound calls. {reason}",
                c.config.name
            ),
        )
    };
    let active = || configs.iter().filter(|c| c.config.active);
    let cfg = if let Some(from) = &spec.from_number {
        // The outbound API names a caller ID; its configuration places the call.
        active()
            .find(|c| {
                c.numbers
                    .iter()
                    .any(|n| n.is_active && n.address == from.as_str())
            })
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_phone",
                    "from_number is not an active phone number of this organization",
                )
            })?
    } else if let Some(id) = spec.config_id {
        let cfg = active().find(|c| c.config.id == id).ok_or_else(|| {
            ApiError::not_found(
                "telephony_configuration_not_found",
                "Telephony configuration not found",
            )
        })?;
        readiness::check(cfg).map_err(|r| not_ready(cfg, r))?;
        cfg
    } else {
        // The default outbound configurations first, then the others, each in creation order.
        let mut ordered = active()
            .filter(|c| c.config.is_default_outbound)
            .chain(active().filter(|c| !c.config.is_default_outbound));
        let Some(first) = ordered.next() else {
            return Err(ApiError::bad_request(
                "telephony_not_configured",
                "Telephony provider not configured for this organization",
            ));
        };
        match std::iter::once(first)
            .chain(ordered)
            .find(|c| readiness::check(c).is_ok())
        {
            Some(c) => c,
            None => {
                let reason = readiness::check(first).err().unwrap_or_default();
                return Err(not_ready(first, reason));
            }
        }
    };
    let caller = if let Some(from) = &spec.from_number {
        Some(from.as_str().to_owned())
    } else if let Some(id) = spec.from_number_id {
        let n = cfg
            .numbers
            .iter()
            .find(|n| n.id == id && n.is_active)
            .ok_or_else(|| {
                ApiError::bad_request("from_phone_number_not_found", "from_phone_number_not_found")
            })?;
        Some(n.address.clone())
    } else {
        cfg.numbers
            .iter()
            .find(|n| n.is_active && n.is_default_caller_id)
            .or_else(|| cfg.numbers.iter().find(|n| n.is_active))
            .map(|n| n.address.clone())
    };
    Ok((cfg, caller))
}

/// Runs checks 1–21 (auth already done) and builds the run; writes nothing.
pub async fn prepare(state: &AppState, mut req: TriggerRequest) -> ApiResult<Prepared> {
    let mut body = std::mem::take(&mut req.body);
    let member = std::mem::replace(&mut req.context, ContextMember::Absent);
    let mut spec = parse_body(req.flavor, &mut body, member)?;
    drop(body);
    let req = &req;
    let (agent, version) = resolve_agent(state, req).await?;
    // Check 14: the execution owner must exist and be active.
    let owner_ok = match agent.agent.owner_user_id {
        Some(uid) => match state.catalog.user(agent.agent.org_id, uid).await {
            Ok(u) => u.active,
            Err(StoreError::NotFound) => false,
            Err(e) => return Err(e.into()),
        },
        None => false,
    };
    if !owner_ok {
        return Err(ApiError::conflict(
            "no_execution_owner",
            "Workflow has no execution owner",
        ));
    }
    // Context: the caller's values, editor defaults on test routes (caller wins), then the
    // declared variables' defaults and types (check 15).
    let mut context = std::mem::take(&mut spec.context);
    if req.env == Environment::Test
        && let Some(defaults) = &version.version.template_context_variables
    {
        for (k, v) in defaults {
            // Only a default that is used changes the context (and drops its sent text).
            if !context.map().contains_key(k) {
                context.map_mut().insert(k.clone(), v.clone());
            }
        }
    }
    if !version.declarations.is_empty()
        && let Err(names) = apply_declarations(&version.declarations, context.map_mut())
    {
        let errors = names
            .iter()
            .map(|n| {
                FieldError::new(
                    &format!("/initial_context/{n}"),
                    "invalid_variable",
                    format!("{n} is missing or has the wrong type"),
                )
            })
            .collect();
        return Err(ApiError::unprocessable(
            "invalid_variables",
            format!("Missing or invalid variables: {}", names.join(", ")),
        )
        .with_errors(errors));
    }
    let configs = state.catalog.configs(req.key.org_id).await?;
    let (cfg, caller) = resolve_config(&configs, &spec)?;
    // Check 20: quota.
    let org = state.catalog.org(req.key.org_id).await?;
    if org.quota_seconds_remaining.is_some_and(|q| q <= 0) {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYMENT_REQUIRED,
            "quota_exhausted",
            QUOTA_EXHAUSTED,
        ));
    }
    // Check 21: capacity.
    let (queued, live) = state.capacity.org_usage(org.id);
    // Under `reject`, a call that could not start dialling at once is over capacity.
    let over_live = live + queued >= i64::from(org.settings.max_concurrent_calls);
    if queued >= i64::from(org.settings.max_queued_calls)
        || (org.settings.on_capacity == OnCapacity::Reject && over_live)
    {
        let mut e = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "concurrency_limit_reached",
            "Concurrent call limit reached",
        );
        e.retry_after = Some(5);
        return Err(e);
    }

    // Stores keep microseconds; the answer built from this run must match what a later read
    // (a GET, an idempotent replay) returns, so the clock's nanoseconds are dropped here.
    let now = state.clock.now();
    let now = jiff::Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now);
    let id = if req.dry_run {
        0
    } else {
        state.store.allocate_run_id().await?
    };
    let call_id = Uuid::now_v7();
    let (ident, ident_type) = match &req.agent {
        AgentRef::TriggerPath(p) => (p.clone(), "trigger_path"),
        _ => (agent.agent.uuid.to_string(), "workflow_uuid"),
    };
    let system = SystemContext::from(SystemFields {
        direction: Some(json!("outbound")),
        trigger_mode: Some(json!(req.env.as_str())),
        called_number: Some(json!(spec.phone.as_str())),
        caller_number: Some(json!(caller)),
        telephony_configuration_id: Some(json!(cfg.config.id)),
        provider: Some(json!(cfg.config.provider)),
        agent_identifier: Some(Value::String(ident)),
        agent_identifier_type: Some(json!(ident_type)),
        workflow_uuid: Some(json!(agent.agent.uuid.to_string())),
        agent_uuid: match &req.agent {
            AgentRef::TriggerPath(p) => Some(json!(p)),
            _ => None,
        },
        api_key_id: Some(json!(req.key.id)),
        // No run exists in a dry run: these render empty rather than being reported as
        // unresolved variables the caller should have sent (SPEC §2.1 dry run, §5.3).
        workflow_run_id: Some(if req.dry_run { Value::Null } else { json!(id) }),
        call_id: Some(if req.dry_run {
            Value::Null
        } else {
            json!(call_id.to_string())
        }),
        extra: Map::new(),
    });

    // Templates see the caller's values with system values laid over them.
    let scope = RenderScope {
        vars: &context,
        overlay: Some(&system),
        now,
    };
    let mut unresolved: Vec<String> = Vec::new();
    let mut note = |names: Vec<String>| {
        for n in names {
            if !unresolved.contains(&n) {
                unresolved.push(n);
            }
        }
    };
    let greeting_src = spec
        .first_message
        .as_deref()
        .or(version.greeting.as_deref());
    let greeting = greeting_src.map(|g| {
        let r = render(g, &scope);
        note(r.unresolved);
        r.text
    });
    let mut rendered_prompts = Vec::new();
    if req.dry_run {
        for (node, prompt) in version.definition.prompts() {
            let r = render(prompt, &scope);
            note(r.unresolved);
            rendered_prompts.push((node, r.text));
        }
        if let Some(extra) = &spec.extra_prompt {
            let r = render(extra, &scope);
            note(r.unresolved);
            rendered_prompts.push(("context".into(), r.text));
        }
    } else {
        // Only the dry run shows the rendered prompts; a run needs their unresolved names,
        // from the tag names collected when the version was loaded.
        missing_names(&version.prompt_tags, &scope, &mut unresolved);
        if let Some(extra) = &spec.extra_prompt {
            unresolved_names(extra, &scope, &mut unresolved);
        }
    }

    let limits = ClaimLimits {
        org_max_live: org.settings.max_concurrent_calls,
        config_max_live: cfg.config.max_concurrent_calls,
        calls_per_second: cfg.config.calls_per_second,
        max_batch: 1,
    };
    let run = NewRun {
        id,
        call_id,
        org_id: org.id,
        agent_id: agent.agent.id,
        workflow_uuid: agent.agent.uuid,
        version_id: version.version.id,
        version_number: version.version.version_number,
        environment: req.env,
        phone_number: spec.phone.as_str().to_owned(),
        from_number: caller,
        config_id: cfg.config.id,
        provider: cfg.config.provider.clone(),
        status: RunStatus::Queued,
        created_at: now,
        scheduled_for: now,
        initial_context: context,
        system_context: system,
        metadata: spec.metadata,
        external_id: spec.external_id,
        unresolved_variables: unresolved,
        greeting,
        max_attempts: 1,
        api_key_id: Some(req.key.id),
    };
    Ok(Prepared {
        run,
        rendered_prompts,
        limits,
    })
}

/// The `?dry_run=true` answer (SPEC §2.1).
pub fn dry_run_body(p: &Prepared) -> Value {
    let r = &p.run;
    json!({
        "status": "validated",
        "agent_id": r.agent_id,
        "workflow_uuid": r.workflow_uuid.to_string(),
        "agent_version": r.version_number,
        "trigger_mode": r.environment.as_str(),
        "phone_number": r.phone_number,
        "telephony_configuration_id": r.config_id,
        "provider": r.provider,
        "from_number": r.from_number,
        "rendered_greeting": r.greeting,
        "rendered_prompts": p.rendered_prompts.iter()
            .map(|(node, text)| json!({"node_id": node, "text": text}))
            .collect::<Vec<_>>(),
        "unresolved_variables": r.unresolved_variables,
        "scheduled_for": r.scheduled_for.to_string(),
    })
}

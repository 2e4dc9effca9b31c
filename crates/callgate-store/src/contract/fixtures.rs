//! Builders the contract checks share: times with nanoseconds, a tenant, an agent, a
//! configuration and runs in a chosen status.

use crate::*;
use callgate_domain::lifecycle::{CallSignal, Outcome, RunStatus};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// `secs` seconds after a fixed instant that has sub-microsecond digits.
pub fn t(secs: i64) -> Timestamp {
    at_ms(secs * 1000)
}

/// `ms` milliseconds after the same fixed instant.
pub fn at_ms(ms: i64) -> Timestamp {
    Timestamp::new(1_800_000_000, 123_456_789)
        .unwrap()
        .checked_add(SignedDuration::from_millis(ms))
        .unwrap()
}

/// A timestamp as every backend stores it: whole microseconds.
pub fn stored(ts: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(ts.as_microsecond()).unwrap()
}

/// An organisation with one user.
pub struct Tenant {
    pub org: Organization,
    pub user: User,
}

pub async fn tenant(store: &dyn Store, name: &str) -> Tenant {
    let org = store.create_org(name, t(0)).await.unwrap();
    let user = store
        .create_user(org.id, &format!("owner@{name}.test"), Some("Owner"), t(0))
        .await
        .unwrap();
    Tenant { org, user }
}

/// A definition whose keys are deliberately not in sorted order, so a backend that reorders
/// object keys is caught.
pub fn definition(label: &str) -> Value {
    json!({"nodes": [{"id": "start", "type": "startCall", "data": {"zeta": 1, "alpha": label}}],
           "edges": []})
}

pub async fn agent(store: &dyn Store, tn: &Tenant, name: &str, paths: &[&str]) -> AgentBundle {
    store
        .create_agent(
            NewAgent {
                org_id: tn.org.id,
                name: name.into(),
                owner_user_id: tn.user.id,
                definition: definition(name),
                trigger_paths: paths.iter().map(|p| p.to_string()).collect(),
            },
            t(1),
        )
        .await
        .unwrap()
}

pub fn new_config(org: OrgId, name: &str, default: bool) -> NewTelephonyConfig {
    NewTelephonyConfig {
        org_id: org,
        name: name.into(),
        provider: "simulator".into(),
        credentials_sealed: vec![0, 1, 2, 255, 0],
        credential_fields: vec!["token".into(), "account".into()],
        is_default_outbound: default,
        calls_per_second: 2.5,
        max_concurrent_calls: Some(7),
    }
}

pub async fn config(store: &dyn Store, org: OrgId, name: &str) -> TelephonyConfig {
    store
        .create_config(new_config(org, name, true), t(2))
        .await
        .unwrap()
}

/// Everything a run of `agent` on `config` needs, with a fresh id.
pub async fn new_run(
    store: &dyn Store,
    agent: &AgentBundle,
    config: &TelephonyConfig,
    status: RunStatus,
    created: Timestamp,
) -> NewRun {
    let version = agent.published.as_ref().unwrap();
    let mut initial_context = Map::new();
    initial_context.insert("zeta".into(), json!("last"));
    initial_context.insert("alpha".into(), json!({"b": 2, "a": [1, 2.5, null]}));
    // As a trigger hands it over: with the caller's own text, spaces and escapes included,
    // which the stores keep instead of serialising the object again.
    let sent = r#"{ "zeta": "l\u0061st", "alpha": {"b": 2, "a": [1, 2.5, null]} }"#;
    let initial_context = InitialContext::as_sent(initial_context, sent.into());
    NewRun {
        id: store.allocate_run_id().await.unwrap(),
        call_id: Uuid::new_v4(),
        org_id: agent.agent.org_id,
        agent_id: agent.agent.id,
        workflow_uuid: agent.agent.uuid,
        version_id: version.id,
        version_number: version.version_number,
        environment: Environment::Production,
        phone_number: "+14155550100".into(),
        from_number: Some("+14155550199".into()),
        config_id: config.id,
        provider: config.provider.clone(),
        status,
        created_at: created,
        scheduled_for: created,
        initial_context,
        system_context: SystemContext::default(),
        metadata: None,
        external_id: None,
        unresolved_variables: vec![],
        greeting: Some("Hi".into()),
        max_attempts: 1,
        api_key_id: None,
    }
}

/// Enqueues a run in `status` created at `created` and returns it.
pub async fn run(
    store: &dyn Store,
    agent: &AgentBundle,
    config: &TelephonyConfig,
    status: RunStatus,
    created: Timestamp,
) -> Run {
    let new = new_run(store, agent, config, status, created).await;
    store.enqueue_run(new, None).await.unwrap()
}

/// A tenant with an agent and a default configuration, ready for runs.
pub struct World {
    pub tn: Tenant,
    pub agent: AgentBundle,
    pub config: TelephonyConfig,
}

pub async fn world(store: &dyn Store, name: &str) -> World {
    let tn = tenant(store, name).await;
    let agent = agent(store, &tn, &format!("{name} agent"), &[]).await;
    let config = config(store, tn.org.id, "sim").await;
    World { tn, agent, config }
}

pub fn signal_ended(outcome: Outcome, reason: &str) -> CallSignal {
    CallSignal::Ended {
        outcome,
        reason: reason.into(),
    }
}

/// Applies `signal` at `at`, expecting success.
pub async fn apply(
    store: &dyn Store,
    run: RunId,
    signal: CallSignal,
    at: Timestamp,
) -> AppliedUpdate {
    store
        .apply_update(run, RunUpdate::new(signal, at))
        .await
        .unwrap()
}

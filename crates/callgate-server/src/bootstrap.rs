//! First start (SPEC §12): on an empty database create an organisation, a user, an admin API
//! key (shown once), a simulator configuration as default outbound and a demo agent with a
//! trigger, then hand back what the binary prints as ready-to-paste `curl` commands.

use crate::crypto::Sealer;
use crate::http::keys::issue_api_key;
use callgate_domain::clock::Clock;
use callgate_domain::definition::Definition;
use callgate_store::{KeyScopes, NewAgent, NewTelephonyConfig, Store, StoreError, StoreResult};
use serde_json::json;

/// What a newcomer needs after the first start.
pub struct FirstStart {
    pub api_key: String,
    pub trigger_path: String,
    pub workflow_id: i64,
}

/// The demo agent's definition: a greeting that uses `{{customer_name}}`.
pub fn demo_definition() -> serde_json::Value {
    json!({
        "nodes": [
            {"id": "start", "type": "startCall", "position": {"x": 0, "y": 0}, "data": {
                "name": "Greeting",
                "greeting": "Hello {{customer_name | there}}, this is the callgate demo agent calling. Do you have a minute?",
                "prompt": "You are a friendly assistant confirming an appointment for {{customer_name | the customer}} on {{appointment_date | their booked date}}."
            }},
            {"id": "end", "type": "endCall", "position": {"x": 0, "y": 200}, "data": {
                "name": "Goodbye", "prompt": "Thank the caller and say goodbye."
            }},
            {"id": "trigger", "type": "trigger", "position": {"x": -200, "y": 0}, "data": {
                "name": "API Trigger", "enabled": true
            }}
        ],
        "edges": [
            {"id": "start-end", "source": "start", "target": "end", "data": {"label": "done", "condition": "The caller answered"}}
        ]
    })
}

/// Creates the demo tenant when the database is empty; `None` when it is not.
pub async fn first_start(
    store: &dyn Store,
    sealer: &Sealer,
    clock: &dyn Clock,
) -> StoreResult<Option<FirstStart>> {
    if !store.is_empty().await? {
        return Ok(None);
    }
    let now = clock.now();
    let org = store.create_org("Default organization", now).await?;
    let user = store
        .create_user(org.id, "admin@localhost", Some("Admin"), now)
        .await?;
    let scopes = KeyScopes {
        admin: true,
        ..KeyScopes::default()
    };
    let (_, raw) =
        issue_api_key(store, org.id, user.id, "bootstrap admin key", scopes, now).await?;
    store
        .create_config(
            NewTelephonyConfig {
                org_id: org.id,
                name: "Simulator".into(),
                provider: "simulator".into(),
                credentials_sealed: sealer.seal(b"{}"),
                credential_fields: Vec::new(),
                is_default_outbound: true,
                calls_per_second: 50.0,
                max_concurrent_calls: None,
            },
            now,
        )
        .await?;
    let definition = Definition::parse_for_save(demo_definition())
        .map_err(|e| StoreError::Internal(format!("demo definition is invalid: {e:?}")))?;
    let trigger_path = definition
        .triggers()
        .first()
        .map(|t| t.path.as_str().to_owned())
        .ok_or_else(|| StoreError::Internal("demo definition has no trigger".into()))?;
    let agent = store
        .create_agent(
            NewAgent {
                org_id: org.id,
                name: "Demo appointment reminder".into(),
                owner_user_id: user.id,
                definition: definition.into_json(),
                trigger_paths: vec![trigger_path.clone()],
            },
            now,
        )
        .await?;
    Ok(Some(FirstStart {
        api_key: raw,
        trigger_path,
        workflow_id: agent.agent.id,
    }))
}

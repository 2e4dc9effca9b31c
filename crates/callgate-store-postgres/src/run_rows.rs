//! Reading runs: their columns, the row → record mapping and their events.

use crate::db::{one_row, rows};
use crate::util::{get, get_u32, ts};
use callgate_domain::lifecycle::{Outcome, RunStatus};
use callgate_store::*;
use deadpool_postgres::GenericClient;
use serde_json::{Map, Value};
use std::collections::HashMap;
use tokio_postgres::Row;
use tokio_postgres::types::{Json, ToSql};

pub(crate) const RUN_COLS: &str = "id, call_id, org_id, agent_id, workflow_uuid, version_id, version_number, environment, phone_number, from_number, config_id, provider, provider_call_id, status, initial_status, outcome, ended_reason, answered_by, attempt, max_attempts, created_at, scheduled_for, dialed_at, answered_at, ended_at, duration_seconds, transcript, recording_url, extracted, initial_context, system_context, metadata, external_id, unresolved_variables, greeting, error";

/// A stored status; an unknown name reads as `ended`, as on SQLite.
pub(crate) fn status_of(s: &str) -> RunStatus {
    RunStatus::parse(s).unwrap_or(RunStatus::Ended)
}

fn env_of(s: &str) -> Environment {
    if s == "test" {
        Environment::Test
    } else {
        Environment::Production
    }
}

pub(crate) fn run_row(r: &Row) -> StoreResult<Run> {
    let env: String = get(r, 7)?;
    let status: String = get(r, 13)?;
    let initial: String = get(r, 14)?;
    let outcome: Option<String> = get(r, 15)?;
    let transcript: Option<Json<Vec<TranscriptEntry>>> = get(r, 26)?;
    let extracted: Option<Json<Value>> = get(r, 28)?;
    let Json(initial_context): Json<Map<String, Value>> = get(r, 29)?;
    let Json(system_context): Json<SystemContext> = get(r, 30)?;
    let metadata: Option<Json<Value>> = get(r, 31)?;
    let Json(unresolved_variables): Json<Vec<String>> = get(r, 33)?;
    Ok(Run {
        id: get(r, 0)?,
        call_id: get(r, 1)?,
        org_id: get(r, 2)?,
        agent_id: get(r, 3)?,
        workflow_uuid: get(r, 4)?,
        version_id: get(r, 5)?,
        version_number: get(r, 6)?,
        environment: env_of(&env),
        phone_number: get(r, 8)?,
        from_number: get(r, 9)?,
        config_id: get(r, 10)?,
        provider: get(r, 11)?,
        provider_call_id: get(r, 12)?,
        status: status_of(&status),
        initial_status: status_of(&initial),
        outcome: outcome.as_deref().and_then(Outcome::parse),
        ended_reason: get(r, 16)?,
        answered_by: get(r, 17)?,
        attempt: get_u32(r, 18)?,
        max_attempts: get_u32(r, 19)?,
        created_at: get(r, 20)?,
        scheduled_for: get(r, 21)?,
        dialed_at: get(r, 22)?,
        answered_at: get(r, 23)?,
        ended_at: get(r, 24)?,
        duration_seconds: get(r, 25)?,
        transcript: transcript.map(|Json(t)| t).unwrap_or_default(),
        recording_url: get(r, 27)?,
        extracted: extracted.map(|Json(v)| v),
        initial_context: InitialContext::new(initial_context),
        system_context,
        metadata: metadata.map(|Json(v)| v),
        external_id: get(r, 32)?,
        unresolved_variables,
        greeting: get(r, 34)?,
        error: get(r, 35)?,
        events: Vec::new(),
    })
}

fn event_row(r: &Row, offset: usize) -> StoreResult<RunEvent> {
    let status: String = get(r, offset)?;
    Ok(RunEvent {
        status: status_of(&status),
        at: get(r, offset + 1)?,
        attempt: get_u32(r, offset + 2)?,
        provider_status: get(r, offset + 3)?,
        detail: get(r, offset + 4)?,
    })
}

/// Fills in the events of `runs` with one query, oldest first per run.
pub(crate) async fn attach_events<C: GenericClient>(c: &C, runs: &mut [Run]) -> StoreResult<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let ids: Vec<RunId> = runs.iter().map(|r| r.id).collect();
    let mut by_run: HashMap<RunId, Vec<RunEvent>> = HashMap::new();
    for row in rows(
        c,
        "SELECT run_id, status, at, attempt, provider_status, detail FROM run_events
         WHERE run_id = ANY($1) ORDER BY run_id, seq",
        &[&ids],
    )
    .await?
    {
        let run_id: RunId = get(&row, 0)?;
        by_run.entry(run_id).or_default().push(event_row(&row, 1)?);
    }
    for run in runs {
        run.events = by_run.remove(&run.id).unwrap_or_default();
    }
    Ok(())
}

pub(crate) async fn load_run_where<C: GenericClient>(
    c: &C,
    clause: &str,
    p: &[&(dyn ToSql + Sync)],
) -> StoreResult<Run> {
    let sql = format!("SELECT {RUN_COLS} FROM runs WHERE {clause}");
    let mut run = [run_row(&one_row(c, &sql, p).await?)?];
    attach_events(c, &mut run).await?;
    let [run] = run;
    Ok(run)
}

/// The record `enqueue_run` answers with, built from what was written. Times are taken as
/// stored (whole microseconds), so it equals what `get_run` reads back.
pub(crate) fn new_run_into_record(new: NewRun) -> Run {
    let created_at = ts(new.created_at);
    Run {
        id: new.id,
        call_id: new.call_id,
        org_id: new.org_id,
        agent_id: new.agent_id,
        workflow_uuid: new.workflow_uuid,
        version_id: new.version_id,
        version_number: new.version_number,
        environment: new.environment,
        phone_number: new.phone_number,
        from_number: new.from_number,
        config_id: new.config_id,
        provider: new.provider,
        provider_call_id: None,
        status: new.status,
        initial_status: new.status,
        outcome: None,
        ended_reason: None,
        answered_by: None,
        attempt: 1,
        max_attempts: new.max_attempts,
        created_at,
        scheduled_for: ts(new.scheduled_for),
        dialed_at: None,
        answered_at: None,
        ended_at: None,
        duration_seconds: None,
        transcript: Vec::new(),
        recording_url: None,
        extracted: None,
        initial_context: new.initial_context,
        system_context: new.system_context,
        metadata: new.metadata,
        external_id: new.external_id,
        unresolved_variables: new.unresolved_variables,
        greeting: new.greeting,
        error: None,
        events: vec![RunEvent {
            status: new.status,
            at: created_at,
            attempt: 1,
            provider_status: None,
            detail: None,
        }],
    }
}

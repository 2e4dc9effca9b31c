//! Runs: the durable queue, lifecycle updates and history.

use crate::SqliteStore;
use crate::claims::LiveRun;
use crate::conn::WriteConn;
use crate::event_text::{EventText, parse_events};
use crate::util::{
    append_event, db_err, from_ts, is_unique_violation, json_text, opt_ts, parse_json,
    parse_opt_json, parse_uuid, ts,
};
use async_trait::async_trait;
use callgate_domain::json_text::value_text;
use callgate_domain::lifecycle::{CallSignal, Outcome, RunStatus, Transition, transition};
use callgate_store::*;
use jiff::Timestamp;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use std::sync::atomic::Ordering;
use uuid::Uuid;

const RUN_COLS: &str = "id, call_id, org_id, agent_id, workflow_uuid, version_id, version_number, environment, phone_number, from_number, config_id, provider, provider_call_id, status, initial_status, outcome, ended_reason, answered_by, attempt, max_attempts, created_at, scheduled_for, dialed_at, answered_at, ended_at, duration_seconds, transcript, recording_url, extracted, initial_context, system_context, metadata, external_id, unresolved_variables, greeting, error, events";
/// A run with its payload (migration 0007) and its results (migration 0009), each in a table
/// of its own so that the row every status change rewrites stays small.
const RUN_FROM: &str = "runs JOIN run_payloads ON run_payloads.run_id = runs.id
     LEFT JOIN run_results ON run_results.run_id = runs.id";

fn status_of(s: &str) -> RunStatus {
    RunStatus::parse(s).unwrap_or(RunStatus::Ended)
}

fn env_of(s: &str) -> Environment {
    if s == "test" {
        Environment::Test
    } else {
        Environment::Production
    }
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<Run> {
    let call_id: String = r.get(1)?;
    let wf: String = r.get(4)?;
    let env: String = r.get(7)?;
    let status: String = r.get(13)?;
    let initial: String = r.get(14)?;
    let outcome: Option<String> = r.get(15)?;
    let initial_context: String = r.get(29)?;
    let system_context: String = r.get(30)?;
    let unresolved: String = r.get(33)?;
    Ok(Run {
        id: r.get(0)?,
        call_id: parse_uuid(&call_id)?,
        org_id: r.get(2)?,
        agent_id: r.get(3)?,
        workflow_uuid: parse_uuid(&wf)?,
        version_id: r.get(5)?,
        version_number: r.get(6)?,
        environment: env_of(&env),
        phone_number: r.get(8)?,
        from_number: r.get(9)?,
        config_id: r.get(10)?,
        provider: r.get(11)?,
        provider_call_id: r.get(12)?,
        status: status_of(&status),
        initial_status: status_of(&initial),
        outcome: outcome.as_deref().and_then(Outcome::parse),
        ended_reason: r.get(16)?,
        answered_by: r.get(17)?,
        attempt: r.get(18)?,
        max_attempts: r.get(19)?,
        created_at: from_ts(r.get(20)?),
        scheduled_for: from_ts(r.get(21)?),
        dialed_at: opt_ts(r.get(22)?),
        answered_at: opt_ts(r.get(23)?),
        ended_at: opt_ts(r.get(24)?),
        duration_seconds: r.get(25)?,
        transcript: parse_opt_json(r.get(26)?)?.unwrap_or_default(),
        recording_url: r.get(27)?,
        extracted: parse_opt_json(r.get(28)?)?,
        initial_context: InitialContext::new(parse_json(&initial_context)?),
        system_context: parse_json(&system_context)?,
        metadata: parse_opt_json(r.get(31)?)?,
        external_id: r.get(32)?,
        unresolved_variables: parse_json(&unresolved)?,
        greeting: r.get(34)?,
        error: r.get(35)?,
        events: parse_events(&r.get::<_, String>(36)?)?,
    })
}

fn load_run_where(c: &Connection, clause: &str, p: impl rusqlite::Params) -> StoreResult<Run> {
    c.query_row(
        &format!("SELECT {RUN_COLS} FROM {RUN_FROM} WHERE {clause}"),
        p,
        run_row,
    )
    .map_err(db_err)
}

/// Billable seconds of a call: answered → ended, rounded up (SPEC §9).
fn billable_seconds(answered: Option<Timestamp>, ended: Timestamp) -> Option<i64> {
    let answered = answered?;
    let micros = ended.as_microsecond() - answered.as_microsecond();
    Some((micros.max(0) + 999_999) / 1_000_000)
}

/// The record `enqueue_run` answers with. Times are taken as stored (whole microseconds), so
/// it equals what `get_run` reads back (the store contract checks this).
fn new_run_into_record(id: RunId, new: NewRun) -> Run {
    let created_at = from_ts(ts(new.created_at));
    Run {
        id,
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
        scheduled_for: from_ts(ts(new.scheduled_for)),
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

/// Executes through the statement cache: these run thousands of times a second.
fn exec_cached(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

/// An update's results and history entry as stored, serialised before it reaches the writer
/// thread.
struct UpdateTexts {
    transcript: Option<String>,
    extracted: Option<String>,
    event: EventText,
}

impl UpdateTexts {
    fn of(u: &RunUpdate) -> StoreResult<Self> {
        Ok(Self {
            transcript: u.transcript.as_ref().map(json_text).transpose()?,
            extracted: u.extracted.as_ref().map(value_text),
            event: EventText::new(u.at, u.provider_status.as_deref(), u.detail.as_deref()),
        })
    }
}

/// What a lifecycle update needs of a run the writer does not keep (see `LiveRun`).
fn read_live_run(st: &WriteConn<'_>, id: RunId) -> StoreResult<LiveRun> {
    st.with_held(
        "SELECT org_id, config_id, status, attempt, answered_at,
                provider_call_id IS NOT NULL, dialed_at IS NOT NULL
         FROM runs WHERE id = ?1",
        |q| {
            q.query_row([id], |r| {
                Ok(LiveRun {
                    org_id: r.get(0)?,
                    config_id: r.get(1)?,
                    status: status_of(&r.get::<_, String>(2)?),
                    attempt: r.get(3)?,
                    answered_at: r.get(4)?,
                    has_provider_call_id: r.get(5)?,
                    dialed: r.get(6)?,
                })
            })
        },
    )
    .map_err(db_err)
}

/// One lifecycle update inside the current transaction.
fn apply_one(
    st: &WriteConn<'_>,
    claims: &crate::claims::Claims,
    deferred: &crate::deferred::Deferred,
    id: RunId,
    u: &RunUpdate,
    texts: UpdateTexts,
) -> StoreResult<AppliedUpdate> {
    let UpdateTexts {
        transcript,
        extracted,
        event,
    } = texts;
    let run = match claims.take_run(id) {
        Some(run) => run,
        None => read_live_run(st, id)?,
    };
    let LiveRun {
        org_id,
        config_id,
        status: before,
        attempt,
        answered_at,
        has_provider_call_id,
        dialed,
    } = run;
    // The provider's id is kept from its first mention; a status change writes it in the same
    // row update (every statement below sets it), so only ignored signals need their own.
    let new_provider_id = u
        .provider_call_id
        .as_ref()
        .filter(|_| !has_provider_call_id);
    // What the writer keeps of the run after this update, whatever its status becomes.
    let kept = LiveRun {
        has_provider_call_id: has_provider_call_id || new_provider_id.is_some(),
        ..run
    };
    let target = match transition(before, &u.signal) {
        Transition::Ignore => {
            if let Some(pid) = new_provider_id {
                st.execute_held(
                    "UPDATE runs SET provider_call_id = ?2 WHERE id = ?1",
                    params![id, pid],
                )
                .map_err(db_err)?;
            }
            claims.keep_run(id, kept);
            return Ok(AppliedUpdate {
                run_id: id,
                org_id,
                config_id,
                before,
                after: before,
                changed: false,
                outcome: None,
            });
        }
        Transition::To(t) => t,
    };
    let at = ts(u.at);
    let mut outcome = None;
    // The status change and its history entry are one row update. The entry is appended as
    // text (the history is a JSON array written only here): SQLite's json_insert would parse
    // and re-serialise the whole history on every change. Every live status has a
    // `dialed_at` (the live-run indexes rely on it, migration 0006), even when the provider's
    // first word about a call is that it rings.
    let event = event.text(target, attempt);
    match &u.signal {
        CallSignal::Dialing => {
            st.execute_held(
                concat!(
                    "UPDATE runs SET status = 'dialing', dialed_at = ?2,
                     provider_call_id = COALESCE(provider_call_id, ?4),
                     events = ",
                    append_event!("?3"),
                    " WHERE id = ?1"
                ),
                params![id, at, event, new_provider_id],
            )
            .map_err(db_err)?;
        }
        // A statement that names `dialed_at` rewrites both live-run index entries even when
        // the value stays, so it is only named while still unset (the usual run was dialled
        // by callgate and has it already).
        CallSignal::Ringing => {
            let ringing = concat!(
                "UPDATE runs SET status = 'ringing',
                 provider_call_id = COALESCE(provider_call_id, ?3),
                 events = ",
                append_event!("?2"),
                " WHERE id = ?1"
            );
            let first_word = concat!(
                "UPDATE runs SET status = 'ringing', dialed_at = ?4,
                 provider_call_id = COALESCE(provider_call_id, ?3),
                 events = ",
                append_event!("?2"),
                " WHERE id = ?1"
            );
            if dialed {
                st.execute_held(ringing, params![id, event, new_provider_id])
            } else {
                st.execute_held(first_word, params![id, event, new_provider_id, at])
            }
            .map_err(db_err)?;
        }
        CallSignal::Answered { answered_by } => {
            let sql = if dialed {
                concat!(
                    "UPDATE runs SET status = 'in_progress', answered_at = ?2,
                     answered_by = COALESCE(?3, answered_by),
                     provider_call_id = COALESCE(provider_call_id, ?5),
                     events = ",
                    append_event!("?4"),
                    " WHERE id = ?1"
                )
            } else {
                concat!(
                    "UPDATE runs SET status = 'in_progress', answered_at = ?2, dialed_at = ?2,
                     answered_by = COALESCE(?3, answered_by),
                     provider_call_id = COALESCE(provider_call_id, ?5),
                     events = ",
                    append_event!("?4"),
                    " WHERE id = ?1"
                )
            };
            st.execute_held(sql, params![id, at, answered_by, event, new_provider_id])
                .map_err(db_err)?;
        }
        CallSignal::Ended { outcome: o, reason } => {
            outcome = Some(*o);
            let billable = billable_seconds(opt_ts(answered_at), u.at);
            st.execute_held(
                concat!(
                    "UPDATE runs SET status = 'ended', outcome = ?2, ended_reason = ?3,
                     ended_at = ?4, duration_seconds = ?5, error = COALESCE(?6, error),
                     lease_owner = NULL, events = ",
                    append_event!("?7"),
                    ",
                     provider_call_id = COALESCE(provider_call_id, ?8)
                     WHERE id = ?1"
                ),
                params![
                    id,
                    o.as_str(),
                    reason,
                    at,
                    billable,
                    u.error,
                    event,
                    new_provider_id
                ],
            )
            .map_err(db_err)?;
            if transcript.is_some() || u.recording_url.is_some() || extracted.is_some() {
                // A run ends once; the upsert keeps what an earlier word about it left.
                st.execute_held(
                    "INSERT INTO run_results (run_id, transcript, recording_url, extracted)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (run_id) DO UPDATE SET
                         transcript = COALESCE(excluded.transcript, transcript),
                         recording_url = COALESCE(excluded.recording_url, recording_url),
                         extracted = COALESCE(excluded.extracted, extracted)",
                    params![id, transcript, u.recording_url, extracted],
                )
                .map_err(db_err)?;
            }
            if let Some(secs) = billable {
                deferred.charge_quota(org_id, secs);
            }
        }
    }
    if before.is_live() != target.is_live() {
        claims.live_changed(org_id, config_id, if target.is_live() { 1 } else { -1 });
    }
    // Every live status written above also set `dialed_at` if it was unset.
    claims.keep_run(
        id,
        LiveRun {
            status: target,
            answered_at: match u.signal {
                CallSignal::Answered { .. } => Some(at),
                _ => answered_at,
            },
            dialed: dialed || target.is_live(),
            ..kept
        },
    );
    Ok(AppliedUpdate {
        run_id: id,
        org_id,
        config_id,
        before,
        after: target,
        changed: true,
        outcome,
    })
}

impl SqliteStore {
    /// `enqueue_run`, and with `claim` the direct claim of `enqueue_or_claim`.
    async fn enqueue(
        &self,
        run: NewRun,
        idem: Option<IdempotencyClaim>,
        claim: Option<DirectClaim>,
    ) -> StoreResult<Run> {
        let initial_context = run.initial_context.text();
        let system_context = run.system_context.text();
        let metadata = run.metadata.as_ref().map(value_text);
        let unresolved = json_text(&run.unresolved_variables)?;
        let mut events = vec![RunEvent {
            status: run.status,
            at: crate::util::micros(run.created_at),
            attempt: 1,
            provider_status: None,
            detail: None,
        }];
        let first_event = EventText::new(events[0].at, None, None).text(run.status, 1);
        let call_id = run.call_id.to_string();
        let workflow_uuid = run.workflow_uuid.to_string();
        let claims = self.claims.clone();
        let deferred = self.deferred.clone();
        self.write_fast(move |c| {
            // The idempotency key first: its conflict is the one expected failure, and it
            // must come before any write (see `write_fast`).
            if let Some(k) = idem {
                c.prepare_cached(
                    "INSERT INTO idempotency_keys (api_key_id, route, key, body_hash, run_id,
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(db_err)?
                .execute(params![
                    k.api_key_id,
                    k.route,
                    k.key,
                    &k.body_hash[..],
                    run.id,
                    ts(run.created_at)
                ])
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Conflict("idempotency_key_reused")
                    } else {
                        db_err(e)
                    }
                })?;
            }
            // Only reads between the idempotency key and the run's insert: the claim decision
            // may fail, but before anything of the run is written (see `write_fast`).
            let dial_at = match &claim {
                Some(d)
                    if run.status == RunStatus::Queued && run.scheduled_for <= run.created_at =>
                {
                    crate::claims::direct_slot(
                        c,
                        &claims,
                        run.config_id,
                        run.org_id,
                        &d.limits,
                        run.created_at,
                    )?
                }
                _ => None,
            }
            .map(crate::util::micros);
            let events_text = match dial_at {
                Some(at) => {
                    let dialing = EventText::new(at, None, None).text(RunStatus::Dialing, 1);
                    format!("[{first_event},{dialing}]")
                }
                None => format!("[{first_event}]"),
            };
            if let Some(at) = dial_at {
                events.push(RunEvent {
                    status: RunStatus::Dialing,
                    at,
                    attempt: 1,
                    provider_status: None,
                    detail: None,
                });
            }
            let status = if dial_at.is_some() {
                RunStatus::Dialing
            } else {
                run.status
            };
            let lease = claim
                .as_ref()
                .filter(|_| dial_at.is_some())
                .map(|d| d.node.as_str());
            c.execute_held(
                "INSERT INTO runs (id, call_id, org_id, agent_id, workflow_uuid, version_id,
                 version_number, environment, phone_number, from_number, config_id, provider,
                 status, initial_status, max_attempts, created_at, scheduled_for,
                 external_id, api_key_id, events, dialed_at, lease_owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                 ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
                params![
                    run.id,
                    call_id,
                    run.org_id,
                    run.agent_id,
                    workflow_uuid,
                    run.version_id,
                    run.version_number,
                    run.environment.as_str(),
                    run.phone_number,
                    run.from_number,
                    run.config_id,
                    run.provider,
                    status.as_str(),
                    run.status.as_str(),
                    run.max_attempts,
                    ts(run.created_at),
                    ts(run.scheduled_for),
                    run.external_id,
                    run.api_key_id,
                    events_text,
                    dial_at.map(ts),
                    lease,
                ],
            )
            .map_err(db_err)?;
            c.execute_held(
                "INSERT INTO run_payloads (run_id, initial_context, system_context, metadata,
                 unresolved_variables, greeting) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    run.id,
                    initial_context,
                    system_context,
                    metadata,
                    unresolved,
                    run.greeting
                ],
            )
            .map_err(db_err)?;
            let id = run.id;
            deferred.count_agent_run(run.agent_id);
            claims.keep_run(
                id,
                LiveRun {
                    org_id: run.org_id,
                    config_id: run.config_id,
                    status,
                    attempt: 1,
                    answered_at: None,
                    has_provider_call_id: false,
                    dialed: dial_at.is_some(),
                },
            );
            let mut record = new_run_into_record(id, run);
            record.status = status;
            record.dialed_at = dial_at;
            record.events = events;
            Ok(record)
        })
        .await
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn enqueue_run(&self, run: NewRun, idem: Option<IdempotencyClaim>) -> StoreResult<Run> {
        self.enqueue(run, idem, None).await
    }

    async fn enqueue_or_claim(
        &self,
        run: NewRun,
        idem: Option<IdempotencyClaim>,
        claim: &DirectClaim,
    ) -> StoreResult<Run> {
        self.enqueue(run, idem, Some(claim.clone())).await
    }

    async fn find_idempotency(
        &self,
        api_key_id: ApiKeyId,
        route: &str,
        key: &str,
        not_before: Timestamp,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let (route, key) = (route.to_owned(), key.to_owned());
        self.read(move |c| {
            c.query_row(
                "SELECT body_hash, run_id, created_at, response_status, response_body
                 FROM idempotency_keys
                 WHERE api_key_id = ?1 AND route = ?2 AND key = ?3 AND created_at >= ?4",
                params![api_key_id, route, key, ts(not_before)],
                |r| {
                    let hash: Vec<u8> = r.get(0)?;
                    let mut body_hash = [0u8; 32];
                    if hash.len() == 32 {
                        body_hash.copy_from_slice(&hash);
                    }
                    let status: Option<u16> = r.get(3)?;
                    let body: Option<String> = r.get(4)?;
                    Ok(IdempotencyRecord {
                        body_hash,
                        run_id: r.get(1)?,
                        created_at: from_ts(r.get(2)?),
                        response: status
                            .zip(body)
                            .map(|(status, body)| StoredResponse { status, body }),
                    })
                },
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn save_idempotent_response(
        &self,
        api_key_id: ApiKeyId,
        route: &str,
        key: &str,
        response: StoredResponse,
    ) -> StoreResult<()> {
        let (route, key) = (route.to_owned(), key.to_owned());
        self.write(move |c| {
            exec_cached(
                c,
                "UPDATE idempotency_keys SET response_status = ?4, response_body = ?5
                 WHERE api_key_id = ?1 AND route = ?2 AND key = ?3",
                params![api_key_id, route, key, response.status, response.body],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn get_run(&self, org: OrgId, id: RunId) -> StoreResult<Run> {
        self.read(move |c| load_run_where(c, "id = ?1 AND org_id = ?2", params![id, org]))
            .await
    }

    async fn get_run_by_call_id(&self, org: OrgId, call_id: Uuid) -> StoreResult<Run> {
        self.read(move |c| {
            load_run_where(
                c,
                "call_id = ?1 AND org_id = ?2",
                params![call_id.to_string(), org],
            )
        })
        .await
    }

    async fn cancel_run(&self, org: OrgId, call_id: Uuid, at: Timestamp) -> StoreResult<Cancel> {
        let entry = EventText::new(at, None, Some(CANCELED_DETAIL));
        // In the writer, so between claims: a run is canceled or claimed, never both.
        self.write(move |c| {
            let (id, status, attempt): (RunId, String, u32) = c
                .prepare_cached(
                    "SELECT id, status, attempt FROM runs WHERE call_id = ?1 AND org_id = ?2",
                )
                .map_err(db_err)?
                .query_row(params![call_id.to_string(), org], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(db_err)?;
            let status = status_of(&status);
            if !matches!(status, RunStatus::Queued | RunStatus::Scheduled) {
                let run = load_run_where(c, "id = ?1", [id])?;
                return Ok(Cancel::NotCancelable(run));
            }
            // A run never dialled holds no live slot and no kept lifecycle state (`Claims`).
            exec_cached(
                c,
                concat!(
                    "UPDATE runs SET status = 'ended', outcome = 'canceled', ended_reason = ?2,
                     ended_at = ?3, lease_owner = NULL, events = ",
                    append_event!("?4"),
                    " WHERE id = ?1"
                ),
                params![
                    id,
                    CANCELED_REASON,
                    ts(at),
                    entry.text(RunStatus::Ended, attempt)
                ],
            )
            .map_err(db_err)?;
            Ok(Cancel::Canceled {
                run: load_run_where(c, "id = ?1", [id])?,
                was: status,
            })
        })
        .await
    }

    async fn list_runs(&self, org: OrgId, f: &RunFilter) -> StoreResult<Vec<Run>> {
        let f = f.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {RUN_COLS} FROM {RUN_FROM} WHERE org_id = ?");
            let mut args: Vec<SqlValue> = vec![SqlValue::Integer(org)];
            let mut add = |clause: &str, v: SqlValue| {
                sql.push_str(clause);
                args.push(v);
            };
            if let Some(s) = f.status {
                add(" AND status = ?", SqlValue::Text(s.as_str().into()));
            }
            if let Some(o) = f.outcome {
                add(" AND outcome = ?", SqlValue::Text(o.as_str().into()));
            }
            if let Some(a) = f.agent_id {
                add(" AND agent_id = ?", SqlValue::Integer(a));
            }
            if let Some(e) = &f.external_id {
                add(" AND external_id = ?", SqlValue::Text(e.clone()));
            }
            if let Some(p) = &f.phone_number {
                add(" AND phone_number = ?", SqlValue::Text(p.clone()));
            }
            if let Some(t) = f.created_after {
                add(" AND created_at >= ?", SqlValue::Integer(ts(t)));
            }
            if let Some(t) = f.created_before {
                add(" AND created_at < ?", SqlValue::Integer(ts(t)));
            }
            if let Some(b) = f.before_id {
                add(" AND id < ?", SqlValue::Integer(b));
            }
            sql.push_str(" ORDER BY id DESC LIMIT ?");
            args.push(SqlValue::Integer(i64::from(f.limit)));
            let mut st = c.prepare(&sql).map_err(db_err)?;
            st.query_map(params_from_iter(args), run_row)
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)
        })
        .await
    }

    async fn queue_counts(&self) -> StoreResult<Vec<QueueCount>> {
        self.read(|c| {
            let mut st = c
                .prepare(
                    // One index per part (migration 0006): the queue, the scheduled runs
                    // and the live runs.
                    // Grouped in the index's order (a configuration belongs to one
                    // organisation): grouping by both columns built a temporary b-tree of the
                    // whole queue every few seconds.
                    "SELECT org_id, config_id, 'queued', COUNT(*) FROM runs
                     WHERE status = 'queued' GROUP BY config_id
                     UNION ALL
                     SELECT org_id, config_id, 'scheduled', COUNT(*) FROM runs
                     WHERE status = 'scheduled' GROUP BY org_id, config_id
                     UNION ALL
                     SELECT org_id, config_id, status, COUNT(*) FROM runs
                     WHERE dialed_at IS NOT NULL AND ended_at IS NULL
                     GROUP BY org_id, config_id, status",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| {
                    let status: String = r.get(2)?;
                    Ok(QueueCount {
                        org_id: r.get(0)?,
                        config_id: r.get(1)?,
                        status: status_of(&status),
                        count: r.get(3)?,
                    })
                })
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn claim_runs(
        &self,
        config: ConfigId,
        limit: u32,
        node: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<ClaimedRun>> {
        let node = node.to_owned();
        let claims = self.claims.clone();
        self.write_fast(move |c| crate::claims::claim(c, &claims, config, limit, &node, now))
            .await
    }

    async fn claim_paced(
        &self,
        config: ConfigId,
        org: OrgId,
        limits: &ClaimLimits,
        node: &str,
        now: Timestamp,
    ) -> StoreResult<Claim> {
        let (node, limits) = (node.to_owned(), limits.clone());
        let claims = self.claims.clone();
        self.write_fast(move |c| {
            crate::claims::claim_paced(c, &claims, config, org, &limits, &node, now)
        })
        .await
    }

    async fn allocate_run_id(&self) -> StoreResult<RunId> {
        Ok(self.last_run_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    async fn apply_update(&self, id: RunId, u: RunUpdate) -> StoreResult<AppliedUpdate> {
        let claims = self.claims.clone();
        let deferred = self.deferred.clone();
        let texts = UpdateTexts::of(&u)?;
        self.write_fast(move |c| apply_one(c, &claims, &deferred, id, &u, texts))
            .await
    }

    async fn apply_updates(
        &self,
        updates: std::sync::Arc<[(RunId, RunUpdate)]>,
    ) -> StoreResult<Vec<StoreResult<AppliedUpdate>>> {
        let claims = self.claims.clone();
        let deferred = self.deferred.clone();
        // The writer thread is the one serial step of every call: what can be done before
        // it is done here.
        let texts: Vec<StoreResult<UpdateTexts>> =
            updates.iter().map(|(_, u)| UpdateTexts::of(u)).collect();
        self.write_fast(move |c| {
            Ok(updates
                .iter()
                .zip(texts)
                .map(|((id, u), texts)| apply_one(c, &claims, &deferred, *id, u, texts?))
                .collect())
        })
        .await
    }

    async fn live_runs(&self) -> StoreResult<Vec<(RunId, String)>> {
        self.read(|c| {
            let mut st = c
                .prepare(
                    "SELECT id, status FROM runs INDEXED BY runs_live_org
                     WHERE dialed_at IS NOT NULL AND ended_at IS NULL ORDER BY id",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn heartbeat(&self, node: &str, now: Timestamp) -> StoreResult<()> {
        let node = node.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO nodes (node_id, last_seen) VALUES (?1, ?2)
                 ON CONFLICT (node_id) DO UPDATE SET last_seen = excluded.last_seen",
            )
            .map_err(db_err)?
            .execute(params![node, ts(now)])
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn node_last_seen(&self, node: &str) -> StoreResult<Option<Timestamp>> {
        let node = node.to_owned();
        self.read(move |c| {
            let seen: Option<i64> = c
                .prepare_cached("SELECT last_seen FROM nodes WHERE node_id = ?1")
                .map_err(db_err)?
                .query_row([node], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            Ok(opt_ts(seen))
        })
        .await
    }

    async fn orphaned_runs(&self, stale_before: Timestamp) -> StoreResult<Vec<(RunId, String)>> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT r.id, r.status FROM runs r INDEXED BY runs_live_org
                     LEFT JOIN nodes n ON n.node_id = r.lease_owner
                     WHERE r.dialed_at IS NOT NULL AND r.ended_at IS NULL
                       AND (n.last_seen IS NULL OR n.last_seen < ?1)
                     ORDER BY r.id",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([ts(stale_before)], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn runs_leased_to(&self, node: &str) -> StoreResult<Vec<(RunId, String)>> {
        let node = node.to_owned();
        self.read(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, status FROM runs INDEXED BY runs_live_org
                     WHERE dialed_at IS NOT NULL AND ended_at IS NULL AND lease_owner = ?1
                     ORDER BY id",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map([node], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn purge_idempotency(&self, before: Timestamp) -> StoreResult<u64> {
        self.write(move |c| {
            let n = c
                .execute(
                    "DELETE FROM idempotency_keys WHERE created_at < ?1",
                    [ts(before)],
                )
                .map_err(db_err)?;
            Ok(n as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::SqliteStore;
    use callgate_store::contract::fixtures::*;

    /// A lifecycle update whose job is rolled back must not leave the state it wrote in the
    /// writer's memory (`LiveRun`): the next update of that run has to see the stored status.
    #[tokio::test]
    async fn an_update_rolled_back_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("callgate.db")).unwrap();
        let s: &dyn Store = &store;
        let w = world(s, "acme").await;
        let direct = DirectClaim {
            limits: ClaimLimits {
                org_max_live: 10,
                config_max_live: None,
                calls_per_second: 1000.0,
                max_batch: 1,
            },
            node: "node-a".into(),
        };
        let new = new_run(s, &w.agent, &w.config, RunStatus::Queued, t(10)).await;
        let run = store.enqueue_or_claim(new, None, &direct).await.unwrap();
        assert_eq!(run.status, RunStatus::Dialing);

        // The call is answered, then the job fails: its savepoint and transaction are undone.
        let (claims, deferred) = (store.claims.clone(), store.deferred.clone());
        let id = run.id;
        let failed = store
            .write(move |c| {
                let answered = RunUpdate::new(CallSignal::Answered { answered_by: None }, t(11));
                let texts = UpdateTexts::of(&answered)?;
                let applied = apply_one(c, &claims, &deferred, id, &answered, texts)?;
                assert_eq!(applied.after, RunStatus::InProgress);
                Err::<(), _>(StoreError::Internal("a later step failed".into()))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(
            store.get_run(w.tn.org.id, id).await.unwrap().status,
            RunStatus::Dialing
        );

        // Ringing moves a dialing run on; had the undone answer been remembered, the run
        // would count as in progress and the ringing would be ignored.
        let applied = apply(s, id, CallSignal::Ringing, t(12)).await;
        assert_eq!(
            (applied.before, applied.after),
            (RunStatus::Dialing, RunStatus::Ringing)
        );
        let stored = store.get_run(w.tn.org.id, id).await.unwrap();
        assert_eq!(stored.status, RunStatus::Ringing);
        assert_eq!(stored.answered_at, None);
    }
}

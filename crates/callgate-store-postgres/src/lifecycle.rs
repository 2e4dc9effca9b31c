//! Lifecycle updates: one provider or dispatcher signal applied to one run through the domain
//! state machine, with the run row locked so concurrent callbacks for a run (on any node) are
//! applied one after another, and the quota deducted in the same transaction.

use crate::db::{exec, rows};
use crate::run_rows::status_of;
use crate::util::{db_err, get, get_u32, json_text, ts};
use callgate_domain::lifecycle::{CallSignal, Outcome, RunStatus, Transition, transition};
use callgate_store::*;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use std::collections::HashMap;

/// Billable seconds of a call: answered → ended, rounded up (SPEC §9). Microseconds, as
/// stored, so a run's duration is the same whichever backend ended it.
fn billable_seconds(answered: Option<Timestamp>, ended: Timestamp) -> Option<i64> {
    let answered = answered?;
    let micros = ended.as_microsecond() - answered.as_microsecond();
    Some((micros.max(0) + 999_999) / 1_000_000)
}

/// Applies `updates` in order in one transaction: the runs are read and locked by one
/// statement, the state machine runs here, and every row change, history entry and quota
/// charge of the batch is written by one statement each. Per update this was five to seven
/// statements (savepoint, read, update, event, release), which is what a busy PostgreSQL
/// spent most of its time on. A batch the database refuses is applied again update by
/// update, each in a savepoint, so an update that fails still fails alone. A single update
/// (`apply_update`) is a batch of one.
pub async fn apply_many(
    c: &mut deadpool_postgres::Client,
    updates: std::sync::Arc<[(RunId, RunUpdate)]>,
) -> StoreResult<Vec<StoreResult<AppliedUpdate>>> {
    match apply_set(c, &updates).await {
        // A lost connection, a deadlock or a server going away: the caller retries the batch.
        Err(e @ StoreError::Unavailable(_)) => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "set-based lifecycle batch failed; applying one by one");
            apply_each(c, &updates).await
        }
        ok => ok,
    }
}

/// A run of the batch: its row as read, then as the batch's updates left it.
struct BatchRun {
    org_id: OrgId,
    config_id: ConfigId,
    status: RunStatus,
    attempt: u32,
    answered_at: Option<Timestamp>,
    provider_call_id: Option<String>,
    last_seq: i32,
    /// Whether the row must be written; only what changed is set below.
    dirty: bool,
    dialed_at: Option<Timestamp>,
    answered_by: Option<String>,
    end: Option<RunEnd>,
}

/// What an `Ended` signal writes.
struct RunEnd {
    outcome: Outcome,
    reason: String,
    at: Timestamp,
    duration: Option<i64>,
    transcript: Option<String>,
    recording_url: Option<String>,
    extracted: Option<String>,
    error: Option<String>,
}

/// Moves a run of the batch by one update through the state machine, without writing.
fn step(
    run: &mut BatchRun,
    id: RunId,
    u: &RunUpdate,
) -> StoreResult<(AppliedUpdate, Option<RunEvent>)> {
    let before = run.status;
    if let (None, Some(pid)) = (&run.provider_call_id, &u.provider_call_id) {
        run.provider_call_id = Some(pid.clone());
        run.dirty = true;
    }
    let mut applied = AppliedUpdate {
        run_id: id,
        org_id: run.org_id,
        config_id: run.config_id,
        before,
        after: before,
        changed: false,
        outcome: None,
    };
    let Transition::To(target) = transition(before, &u.signal) else {
        return Ok((applied, None));
    };
    let at = ts(u.at);
    match &u.signal {
        CallSignal::Dialing => run.dialed_at = Some(at),
        CallSignal::Ringing => {}
        CallSignal::Answered { answered_by } => {
            run.answered_at = Some(at);
            if answered_by.is_some() {
                run.answered_by.clone_from(answered_by);
            }
        }
        CallSignal::Ended { outcome, reason } => {
            run.end = Some(RunEnd {
                outcome: *outcome,
                reason: reason.clone(),
                at,
                duration: billable_seconds(run.answered_at, u.at),
                transcript: u.transcript.as_ref().map(json_text).transpose()?,
                recording_url: u.recording_url.clone(),
                extracted: u.extracted.as_ref().map(json_text).transpose()?,
                error: u.error.clone(),
            });
            applied.outcome = Some(*outcome);
        }
    }
    run.status = target;
    run.dirty = true;
    run.last_seq += 1;
    applied.after = target;
    applied.changed = true;
    let event = RunEvent {
        status: target,
        at: u.at,
        attempt: run.attempt,
        provider_status: u.provider_status.clone(),
        detail: u.detail.clone(),
    };
    Ok((applied, Some(event)))
}

async fn apply_set(
    c: &mut deadpool_postgres::Client,
    updates: &[(RunId, RunUpdate)],
) -> StoreResult<Vec<StoreResult<AppliedUpdate>>> {
    let tx = c.transaction().await.map_err(db_err)?;
    let runs = lock_runs(&tx, updates).await?;
    lock_charged_orgs(&tx, updates).await?;
    let results = apply_locked(&tx, runs, updates).await?;
    count_live_changes(&tx, results.iter().flatten()).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(results)
}

/// Reads and locks the runs `updates` name, in id order: two nodes applying overlapping
/// batches then take their locks in the same order and cannot deadlock.
async fn lock_runs<C: GenericClient>(
    c: &C,
    updates: &[(RunId, RunUpdate)],
) -> StoreResult<HashMap<RunId, BatchRun>> {
    let mut ids: Vec<RunId> = updates.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let found = rows(
        c,
        "SELECT r.id, r.org_id, r.config_id, r.status, r.attempt, r.answered_at,
                r.provider_call_id,
                COALESCE((SELECT MAX(e.seq) FROM run_events e WHERE e.run_id = r.id), 0)
         FROM runs r WHERE r.id = ANY($1) ORDER BY r.id FOR UPDATE OF r",
        &[&ids],
    )
    .await?;
    let mut runs = HashMap::with_capacity(found.len());
    for row in &found {
        runs.insert(
            get(row, 0)?,
            BatchRun {
                org_id: get(row, 1)?,
                config_id: get(row, 2)?,
                status: status_of(&get::<String>(row, 3)?),
                attempt: get_u32(row, 4)?,
                answered_at: get(row, 5)?,
                provider_call_id: get(row, 6)?,
                last_seq: get(row, 7)?,
                dirty: false,
                dialed_at: None,
                answered_by: None,
                end: None,
            },
        );
    }
    Ok(runs)
}

/// Moves the locked `runs` through `updates` in order and writes what changed: the rows, the
/// history entries and the quota charges, one statement each.
async fn apply_locked<C: GenericClient>(
    c: &C,
    mut runs: HashMap<RunId, BatchRun>,
    updates: &[(RunId, RunUpdate)],
) -> StoreResult<Vec<StoreResult<AppliedUpdate>>> {
    let mut results = Vec::with_capacity(updates.len());
    let mut events = EventRows::default();
    for (id, u) in updates {
        let Some(run) = runs.get_mut(id) else {
            results.push(Err(StoreError::NotFound));
            continue;
        };
        let (applied, event) = step(run, *id, u)?;
        if let Some(ev) = event {
            events.push(*id, run.last_seq, &ev);
        }
        results.push(Ok(applied));
    }

    let mut rows_out = RunRows::default();
    let mut charges: std::collections::BTreeMap<OrgId, i64> = Default::default();
    for (id, run) in runs.iter().filter(|(_, r)| r.dirty) {
        rows_out.push(*id, run);
        if let Some(secs) = run.end.as_ref().and_then(|e| e.duration).filter(|s| *s > 0) {
            *charges.entry(run.org_id).or_default() += secs;
        }
    }
    if !rows_out.id.is_empty() {
        rows_out.write(c).await?;
    }
    if !events.run_id.is_empty() {
        events.write(c).await?;
    }
    if !charges.is_empty() {
        let (orgs, secs): (Vec<OrgId>, Vec<i64>) = charges.into_iter().unzip();
        exec(
            c,
            "UPDATE organizations o
             SET quota_seconds_remaining = o.quota_seconds_remaining - c.secs
             FROM unnest($1::bigint[], $2::bigint[]) AS c(org_id, secs)
             WHERE o.id = c.org_id AND o.quota_seconds_remaining IS NOT NULL",
            &[&orgs, &secs],
        )
        .await?;
    }
    Ok(results)
}

/// Ending runs charges their organisations' quotas. Taking those rows now, in id order, keeps
/// two batches that end runs of the same organisations in opposite orders from deadlocking on
/// them halfway. Organisations without a quota are not charged, and their rows are left
/// alone: claims lock them too. (One given a quota meanwhile is locked by its charge instead;
/// a deadlock that could cause is reported as `Unavailable` and the batch is retried.)
async fn lock_charged_orgs<C: GenericClient>(
    c: &C,
    updates: &[(RunId, RunUpdate)],
) -> StoreResult<()> {
    let ending: Vec<RunId> = updates
        .iter()
        .filter(|(_, u)| matches!(u.signal, CallSignal::Ended { .. }))
        .map(|(id, _)| *id)
        .collect();
    if !ending.is_empty() {
        rows(
            c,
            "SELECT id FROM organizations
             WHERE id IN (SELECT org_id FROM runs WHERE id = ANY($1))
               AND quota_seconds_remaining IS NOT NULL
             ORDER BY id FOR UPDATE",
            &[&ending],
        )
        .await?;
    }
    Ok(())
}

/// The changed rows of a batch as column arrays, for one `UPDATE … FROM unnest(…)`.
#[derive(Default)]
struct RunRows {
    id: Vec<RunId>,
    status: Vec<&'static str>,
    provider_call_id: Vec<Option<String>>,
    dialed_at: Vec<Option<Timestamp>>,
    answered_at: Vec<Option<Timestamp>>,
    answered_by: Vec<Option<String>>,
    ended: Vec<bool>,
    outcome: Vec<Option<&'static str>>,
    ended_reason: Vec<Option<String>>,
    ended_at: Vec<Option<Timestamp>>,
    duration: Vec<Option<i64>>,
    transcript: Vec<Option<String>>,
    recording_url: Vec<Option<String>>,
    extracted: Vec<Option<String>>,
    error: Vec<Option<String>>,
}

impl RunRows {
    fn push(&mut self, id: RunId, run: &BatchRun) {
        let end = run.end.as_ref();
        self.id.push(id);
        self.status.push(run.status.as_str());
        self.provider_call_id.push(run.provider_call_id.clone());
        self.dialed_at.push(run.dialed_at);
        self.answered_at.push(run.answered_at);
        self.answered_by.push(run.answered_by.clone());
        self.ended.push(end.is_some());
        self.outcome.push(end.map(|e| e.outcome.as_str()));
        self.ended_reason.push(end.map(|e| e.reason.clone()));
        self.ended_at.push(end.map(|e| e.at));
        self.duration.push(end.and_then(|e| e.duration));
        self.transcript.push(end.and_then(|e| e.transcript.clone()));
        self.recording_url
            .push(end.and_then(|e| e.recording_url.clone()));
        self.extracted.push(end.and_then(|e| e.extracted.clone()));
        self.error.push(end.and_then(|e| e.error.clone()));
    }

    /// Columns a signal did not set keep their value (`COALESCE`); an end sets its own
    /// columns outright (a run ends once, so they were unset).
    async fn write<C: GenericClient>(&self, c: &C) -> StoreResult<()> {
        exec(
            c,
            "UPDATE runs r SET
                status = u.status,
                provider_call_id = COALESCE(r.provider_call_id, u.provider_call_id),
                dialed_at = COALESCE(u.dialed_at, r.dialed_at),
                answered_at = COALESCE(u.answered_at, r.answered_at),
                answered_by = COALESCE(u.answered_by, r.answered_by),
                outcome = CASE WHEN u.ended THEN u.outcome ELSE r.outcome END,
                ended_reason = CASE WHEN u.ended THEN u.ended_reason ELSE r.ended_reason END,
                ended_at = CASE WHEN u.ended THEN u.ended_at ELSE r.ended_at END,
                duration_seconds = CASE WHEN u.ended THEN u.duration ELSE r.duration_seconds END,
                transcript = COALESCE(u.transcript::json, r.transcript),
                recording_url = COALESCE(u.recording_url, r.recording_url),
                extracted = COALESCE(u.extracted::json, r.extracted),
                error = COALESCE(u.error, r.error),
                lease_owner = CASE WHEN u.ended THEN NULL ELSE r.lease_owner END
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[],
                         $5::timestamptz[], $6::text[], $7::bool[], $8::text[], $9::text[],
                         $10::timestamptz[], $11::bigint[], $12::text[], $13::text[],
                         $14::text[], $15::text[])
                  AS u(id, status, provider_call_id, dialed_at, answered_at, answered_by, ended,
                       outcome, ended_reason, ended_at, duration, transcript, recording_url,
                       extracted, error)
             WHERE r.id = u.id",
            &[
                &self.id,
                &self.status,
                &self.provider_call_id,
                &self.dialed_at,
                &self.answered_at,
                &self.answered_by,
                &self.ended,
                &self.outcome,
                &self.ended_reason,
                &self.ended_at,
                &self.duration,
                &self.transcript,
                &self.recording_url,
                &self.extracted,
                &self.error,
            ],
        )
        .await
        .map(|_| ())
    }
}

/// The history entries of a batch as column arrays, for one `INSERT … SELECT FROM unnest(…)`.
#[derive(Default)]
struct EventRows {
    run_id: Vec<RunId>,
    seq: Vec<i32>,
    status: Vec<&'static str>,
    at: Vec<Timestamp>,
    attempt: Vec<i64>,
    provider_status: Vec<Option<String>>,
    detail: Vec<Option<String>>,
}

impl EventRows {
    fn push(&mut self, run: RunId, seq: i32, ev: &RunEvent) {
        self.run_id.push(run);
        self.seq.push(seq);
        self.status.push(ev.status.as_str());
        self.at.push(ts(ev.at));
        self.attempt.push(i64::from(ev.attempt));
        self.provider_status.push(ev.provider_status.clone());
        self.detail.push(ev.detail.clone());
    }

    async fn write<C: GenericClient>(&self, c: &C) -> StoreResult<()> {
        exec(
            c,
            "INSERT INTO run_events (run_id, seq, status, at, attempt, provider_status, detail)
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[],
                                  $5::bigint[], $6::text[], $7::text[])",
            &[
                &self.run_id,
                &self.seq,
                &self.status,
                &self.at,
                &self.attempt,
                &self.provider_status,
                &self.detail,
            ],
        )
        .await
        .map(|_| ())
    }
}

/// Applies `updates` in order in one transaction, each in a savepoint so one failing update
/// rolls back alone (as on SQLite) instead of aborting the batch.
async fn apply_each(
    c: &mut deadpool_postgres::Client,
    updates: &[(RunId, RunUpdate)],
) -> StoreResult<Vec<StoreResult<AppliedUpdate>>> {
    let mut tx = c.transaction().await.map_err(db_err)?;
    lock_runs(&tx, updates).await?;
    lock_charged_orgs(&tx, updates).await?;
    let mut results = Vec::with_capacity(updates.len());
    for one in updates.chunks(1) {
        let sp = tx.savepoint("apply_update").await.map_err(db_err)?;
        // Read again: an earlier update of the batch may have moved the same run.
        let applied = match lock_runs(&sp, one).await {
            Ok(runs) => apply_locked(&sp, runs, one).await,
            Err(e) => Err(e),
        };
        match applied.map(|mut r| r.pop().unwrap_or(Err(StoreError::NotFound))) {
            Ok(Ok(a)) => {
                sp.commit().await.map_err(db_err)?;
                results.push(Ok(a));
            }
            Ok(Err(e)) | Err(e) => {
                sp.rollback().await.map_err(db_err)?;
                results.push(Err(e));
            }
        }
    }
    count_live_changes(&tx, results.iter().flatten()).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(results)
}

/// Keeps `live_counts` (migration 0006) in step with lifecycle updates applied in the
/// caller's transaction: one change per organisation and configuration, in key order, so two
/// batches never take those rows in opposite orders.
pub(crate) async fn count_live_changes<'a, C: GenericClient>(
    c: &C,
    applied: impl Iterator<Item = &'a AppliedUpdate>,
) -> StoreResult<()> {
    let mut deltas: std::collections::BTreeMap<(OrgId, ConfigId), i64> = Default::default();
    for a in applied.filter(|a| a.changed) {
        let d = i64::from(a.after.is_live()) - i64::from(a.before.is_live());
        if d != 0 {
            *deltas.entry((a.org_id, a.config_id)).or_default() += d;
        }
    }
    for ((org, config), d) in deltas.into_iter().filter(|(_, d)| *d != 0) {
        exec(
            c,
            "INSERT INTO live_counts (org_id, config_id, live) VALUES ($1, $2, $3)
             ON CONFLICT (org_id, config_id) DO UPDATE SET live = live_counts.live + excluded.live",
            &[&org, &config, &d],
        )
        .await?;
    }
    Ok(())
}

//! Lifecycle updates: one provider or dispatcher signal applied to one run through the domain
//! state machine, with the run row locked so concurrent callbacks for a run (on any node) are
//! applied one after another, and the quota deducted in the same transaction.

use crate::db::{exec, opt_row, rows};
use crate::run_rows::status_of;
use crate::util::{db_err, get, get_u32, ts};
use callgate_domain::lifecycle::{CallSignal, Transition, transition};
use callgate_store::*;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use tokio_postgres::types::Json;

/// Billable seconds of a call: answered → ended, rounded up (SPEC §9). Microseconds, as
/// stored, so a run's duration is the same whichever backend ended it.
fn billable_seconds(answered: Option<Timestamp>, ended: Timestamp) -> Option<i64> {
    let answered = answered?;
    let micros = ended.as_microsecond() - answered.as_microsecond();
    Some((micros.max(0) + 999_999) / 1_000_000)
}

/// Appends an event to a run whose row the caller holds locked.
pub(crate) async fn insert_event<C: GenericClient>(
    c: &C,
    run: RunId,
    ev: &RunEvent,
) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO run_events (run_id, seq, status, at, attempt, provider_status, detail)
         VALUES ($1, COALESCE((SELECT MAX(seq) FROM run_events WHERE run_id = $1), 0) + 1,
                 $2, $3, $4, $5, $6)",
        &[
            &run,
            &ev.status.as_str(),
            &ts(ev.at),
            &i64::from(ev.attempt),
            &ev.provider_status,
            &ev.detail,
        ],
    )
    .await
    .map(|_| ())
}

/// One lifecycle update inside the caller's transaction.
pub async fn apply_one<C: GenericClient>(
    c: &C,
    id: RunId,
    u: &RunUpdate,
) -> StoreResult<AppliedUpdate> {
    let row = opt_row(
        c,
        "SELECT org_id, config_id, status, attempt, answered_at, provider_call_id
         FROM runs WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    let org_id: OrgId = get(&row, 0)?;
    let config_id: ConfigId = get(&row, 1)?;
    let status: String = get(&row, 2)?;
    let attempt = get_u32(&row, 3)?;
    let answered_at: Option<Timestamp> = get(&row, 4)?;
    let provider_call_id: Option<String> = get(&row, 5)?;
    let before = status_of(&status);
    // The first provider id a run hears of stays its id, even on an otherwise ignored signal.
    if let (None, Some(pid)) = (&provider_call_id, &u.provider_call_id) {
        exec(
            c,
            "UPDATE runs SET provider_call_id = $2 WHERE id = $1",
            &[&id, pid],
        )
        .await?;
    }
    let target = match transition(before, &u.signal) {
        Transition::Ignore => {
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
    match &u.signal {
        CallSignal::Dialing => {
            exec(
                c,
                "UPDATE runs SET status = 'dialing', dialed_at = $2 WHERE id = $1",
                &[&id, &at],
            )
            .await?;
        }
        CallSignal::Ringing => {
            exec(
                c,
                "UPDATE runs SET status = 'ringing' WHERE id = $1",
                &[&id],
            )
            .await?;
        }
        CallSignal::Answered { answered_by } => {
            exec(
                c,
                "UPDATE runs SET status = 'in_progress', answered_at = $2,
                 answered_by = COALESCE($3, answered_by) WHERE id = $1",
                &[&id, &at, answered_by],
            )
            .await?;
        }
        CallSignal::Ended { outcome: o, reason } => {
            outcome = Some(*o);
            let billable = billable_seconds(answered_at, u.at);
            exec(
                c,
                "UPDATE runs SET status = 'ended', outcome = $2, ended_reason = $3,
                 ended_at = $4, duration_seconds = $5,
                 transcript = COALESCE($6, transcript),
                 recording_url = COALESCE($7, recording_url),
                 extracted = COALESCE($8, extracted), error = COALESCE($9, error),
                 lease_owner = NULL
                 WHERE id = $1",
                &[
                    &id,
                    &o.as_str(),
                    reason,
                    &at,
                    &billable,
                    &u.transcript.as_ref().map(Json),
                    &u.recording_url,
                    &u.extracted.as_ref().map(Json),
                    &u.error,
                ],
            )
            .await?;
            if let Some(secs) = billable.filter(|s| *s > 0) {
                exec(
                    c,
                    "UPDATE organizations
                     SET quota_seconds_remaining = quota_seconds_remaining - $2
                     WHERE id = $1 AND quota_seconds_remaining IS NOT NULL",
                    &[&org_id, &secs],
                )
                .await?;
            }
        }
    }
    insert_event(
        c,
        id,
        &RunEvent {
            status: target,
            at: u.at,
            attempt,
            provider_status: u.provider_status.clone(),
            detail: u.detail.clone(),
        },
    )
    .await?;
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

/// Applies `updates` in order in one transaction, each in a savepoint so one failing update
/// rolls back alone (as on SQLite) instead of aborting the batch.
pub async fn apply_many(
    c: &mut deadpool_postgres::Client,
    updates: std::sync::Arc<[(RunId, RunUpdate)]>,
) -> StoreResult<Vec<StoreResult<AppliedUpdate>>> {
    let mut tx = c.transaction().await.map_err(db_err)?;
    // Lock every run of the batch up front, in id order: two nodes applying overlapping
    // batches then take their locks in the same order and cannot deadlock.
    let mut ids: Vec<RunId> = updates.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    rows(
        &tx,
        "SELECT id FROM runs WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )
    .await?;
    // Ending runs charges their organisations' quotas. Taking those rows now, in id order,
    // keeps two batches that end runs of the same organisations in opposite orders from
    // deadlocking on them halfway. Organisations without a quota are not charged, and their
    // rows are left alone: claims lock them too. (One given a quota meanwhile is locked by
    // its charge instead; a deadlock that could cause is reported as `Unavailable` and the
    // batch is retried.)
    let ending: Vec<RunId> = updates
        .iter()
        .filter(|(_, u)| matches!(u.signal, CallSignal::Ended { .. }))
        .map(|(id, _)| *id)
        .collect();
    if !ending.is_empty() {
        rows(
            &tx,
            "SELECT id FROM organizations
             WHERE id IN (SELECT org_id FROM runs WHERE id = ANY($1))
               AND quota_seconds_remaining IS NOT NULL
             ORDER BY id FOR UPDATE",
            &[&ending],
        )
        .await?;
    }
    let mut results = Vec::with_capacity(updates.len());
    for (id, u) in updates.iter() {
        let sp = tx.savepoint("apply_update").await.map_err(db_err)?;
        match apply_one(&sp, *id, u).await {
            Ok(applied) => {
                sp.commit().await.map_err(db_err)?;
                results.push(Ok(applied));
            }
            Err(e) => {
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

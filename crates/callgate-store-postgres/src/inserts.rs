//! New runs written together (group commit for triggers).
//!
//! A trigger's run is one statement (`runs::INSERT_RUN`), and the trigger is answered once it
//! has committed, which PostgreSQL makes durable with a WAL flush. Under load every pooled
//! connection then waited on that flush (`LWLock:WALWrite` on nearly every sampled session),
//! one commit per run. Here the runs that arrive while earlier batches are being written are
//! inserted by one statement, one commit and one flush for all of them; each caller is still
//! answered only after the commit that holds its run.

use crate::db::exec;
use crate::util::{json_text, ts};
use callgate_store::{NewRun, StoreError, StoreResult};
use deadpool_postgres::Pool;
use jiff::Timestamp;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

/// Most runs one statement inserts.
const MAX_BATCH: usize = 256;
/// Batches written at once. While they wait on the disk the next runs gather; more would
/// take pooled connections from claims and lifecycle updates and make the batches smaller.
const IN_FLIGHT: usize = 4;

/// Runs every column of the batch as an array, expanded with `unnest`; the run count goes to
/// the session's slot (migration 0005), one upsert per agent, in agent order so two batches
/// on sessions that share a slot take those rows in the same order.
const INSERT_RUNS: &str = "WITH new AS (
         SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bigint[], $4::bigint[],
             $5::uuid[], $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[],
             $11::bigint[], $12::text[], $13::text[], $14::bigint[], $15::timestamptz[],
             $16::timestamptz[], $17::text[], $18::text[], $19::text[], $20::text[],
             $21::text[], $22::text[], $23::bigint[])
         AS n(id, call_id, org_id, agent_id, workflow_uuid, version_id, version_number,
              environment, phone_number, from_number, config_id, provider, status,
              max_attempts, created_at, scheduled_for, initial_context, system_context,
              metadata, external_id, unresolved_variables, greeting, api_key_id)
     ), run AS (
         INSERT INTO runs (id, call_id, org_id, agent_id, workflow_uuid, version_id,
         version_number, environment, phone_number, from_number, config_id, provider,
         status, initial_status, max_attempts, created_at, scheduled_for,
         initial_context, system_context, metadata, external_id,
         unresolved_variables, greeting, api_key_id)
         SELECT id, call_id, org_id, agent_id, workflow_uuid, version_id, version_number,
                environment, phone_number, from_number, config_id, provider, status, status,
                max_attempts, created_at, scheduled_for, initial_context::json,
                system_context::json, metadata::json, external_id,
                unresolved_variables::json, greeting, api_key_id
         FROM new
         RETURNING id, status, created_at
     ), event AS (
         INSERT INTO run_events (run_id, seq, status, at, attempt)
         SELECT id, 1, status, created_at, 1 FROM run
     )
     INSERT INTO agent_run_counts (agent_id, slot, runs)
     SELECT agent_id, (pg_backend_pid() % 64)::smallint, COUNT(*) FROM new
     GROUP BY agent_id ORDER BY agent_id
     ON CONFLICT (agent_id, slot) DO UPDATE SET runs = agent_run_counts.runs + excluded.runs";

/// A new run as the statement's columns (JSON already encoded).
pub struct RunColumns {
    id: i64,
    call_id: Uuid,
    org_id: i64,
    agent_id: i64,
    workflow_uuid: Uuid,
    version_id: i64,
    version_number: i64,
    environment: &'static str,
    phone_number: String,
    from_number: Option<String>,
    config_id: i64,
    provider: String,
    status: &'static str,
    max_attempts: i64,
    created_at: Timestamp,
    scheduled_for: Timestamp,
    initial_context: std::sync::Arc<str>,
    system_context: String,
    metadata: Option<String>,
    external_id: Option<String>,
    unresolved_variables: String,
    greeting: Option<String>,
    api_key_id: Option<i64>,
}

impl RunColumns {
    /// The run's columns; the caller's context text moves into them (`run` keeps the object).
    pub fn of(run: &mut NewRun) -> StoreResult<Self> {
        Ok(Self {
            id: run.id,
            call_id: run.call_id,
            org_id: run.org_id,
            agent_id: run.agent_id,
            workflow_uuid: run.workflow_uuid,
            version_id: run.version_id,
            version_number: run.version_number,
            environment: run.environment.as_str(),
            phone_number: run.phone_number.clone(),
            from_number: run.from_number.clone(),
            config_id: run.config_id,
            provider: run.provider.clone(),
            status: run.status.as_str(),
            max_attempts: i64::from(run.max_attempts),
            created_at: ts(run.created_at),
            scheduled_for: ts(run.scheduled_for),
            initial_context: run.initial_context.text(),
            system_context: run.system_context.text(),
            metadata: run.metadata.as_ref().map(json_text).transpose()?,
            external_id: run.external_id.clone(),
            unresolved_variables: json_text(&run.unresolved_variables)?,
            greeting: run.greeting.clone(),
            api_key_id: run.api_key_id,
        })
    }
}

struct Pending {
    run: RunColumns,
    reply: oneshot::Sender<StoreResult<()>>,
}

/// Hands new runs to the batching task; it ends when every clone of this is dropped.
#[derive(Clone)]
pub struct RunInserter {
    tx: mpsc::UnboundedSender<Pending>,
}

impl RunInserter {
    pub fn start(pool: Pool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(insert_batches(pool, rx));
        Self { tx }
    }

    /// Inserts `run` with its first event and agent count; `Ok` once committed.
    pub async fn insert(&self, run: RunColumns) -> StoreResult<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { run, reply })
            .map_err(|_| StoreError::Unavailable("the run writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the run writer stopped".into()))?
    }
}

async fn insert_batches(pool: Pool, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // A free slot first: runs arriving while every slot is busy form the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            write_batch(&pool, batch).await;
            drop(slot);
        });
    }
}

async fn write_batch(pool: &Pool, batch: Vec<Pending>) {
    let written = match pool.get().await {
        Ok(c) => insert_all(&c, batch.iter().map(|p| &p.run)).await,
        Err(e) => Err(crate::util::pool_err(e)),
    };
    match written {
        Ok(()) => batch.into_iter().for_each(|p| {
            let _ = p.reply.send(Ok(()));
        }),
        // The database or the connection failed: so would each run alone.
        Err(e @ StoreError::Unavailable(_)) => {
            for p in batch {
                let _ = p.reply.send(Err(clone_err(&e)));
            }
        }
        // One run the database refused fails the whole statement: each run on its own, so
        // only that one fails.
        Err(e) if batch.len() == 1 => {
            if let Some(p) = batch.into_iter().next() {
                let _ = p.reply.send(Err(e));
            }
        }
        Err(_) => {
            for p in batch {
                let one = match pool.get().await {
                    Ok(c) => insert_all(&c, std::iter::once(&p.run)).await,
                    Err(e) => Err(crate::util::pool_err(e)),
                };
                let _ = p.reply.send(one);
            }
        }
    }
}

pub(crate) fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        other => StoreError::Internal(other.to_string()),
    }
}

/// One statement for the runs, each with its first event and agent count; atomic on its
/// own, so no BEGIN and COMMIT round trips outside a caller's transaction.
pub(crate) async fn insert_all<'a, C: deadpool_postgres::GenericClient>(
    c: &C,
    runs: impl Iterator<Item = &'a RunColumns>,
) -> StoreResult<()> {
    let mut cols = Columns::default();
    runs.for_each(|r| cols.push(r));
    exec(
        c,
        INSERT_RUNS,
        &[
            &cols.id,
            &cols.call_id,
            &cols.org_id,
            &cols.agent_id,
            &cols.workflow_uuid,
            &cols.version_id,
            &cols.version_number,
            &cols.environment,
            &cols.phone_number,
            &cols.from_number,
            &cols.config_id,
            &cols.provider,
            &cols.status,
            &cols.max_attempts,
            &cols.created_at,
            &cols.scheduled_for,
            &cols.initial_context,
            &cols.system_context,
            &cols.metadata,
            &cols.external_id,
            &cols.unresolved_variables,
            &cols.greeting,
            &cols.api_key_id,
        ],
    )
    .await
    .map(|_| ())
}

/// The batch column by column, borrowed from its runs.
#[derive(Default)]
struct Columns<'a> {
    id: Vec<i64>,
    call_id: Vec<Uuid>,
    org_id: Vec<i64>,
    agent_id: Vec<i64>,
    workflow_uuid: Vec<Uuid>,
    version_id: Vec<i64>,
    version_number: Vec<i64>,
    environment: Vec<&'static str>,
    phone_number: Vec<&'a str>,
    from_number: Vec<Option<&'a str>>,
    config_id: Vec<i64>,
    provider: Vec<&'a str>,
    status: Vec<&'static str>,
    max_attempts: Vec<i64>,
    created_at: Vec<Timestamp>,
    scheduled_for: Vec<Timestamp>,
    initial_context: Vec<&'a str>,
    system_context: Vec<&'a str>,
    metadata: Vec<Option<&'a str>>,
    external_id: Vec<Option<&'a str>>,
    unresolved_variables: Vec<&'a str>,
    greeting: Vec<Option<&'a str>>,
    api_key_id: Vec<Option<i64>>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, r: &'a RunColumns) {
        self.id.push(r.id);
        self.call_id.push(r.call_id);
        self.org_id.push(r.org_id);
        self.agent_id.push(r.agent_id);
        self.workflow_uuid.push(r.workflow_uuid);
        self.version_id.push(r.version_id);
        self.version_number.push(r.version_number);
        self.environment.push(r.environment);
        self.phone_number.push(&r.phone_number);
        self.from_number.push(r.from_number.as_deref());
        self.config_id.push(r.config_id);
        self.provider.push(&r.provider);
        self.status.push(r.status);
        self.max_attempts.push(r.max_attempts);
        self.created_at.push(r.created_at);
        self.scheduled_for.push(r.scheduled_for);
        self.initial_context.push(&*r.initial_context);
        self.system_context.push(&r.system_context);
        self.metadata.push(r.metadata.as_deref());
        self.external_id.push(r.external_id.as_deref());
        self.unresolved_variables.push(&r.unresolved_variables);
        self.greeting.push(r.greeting.as_deref());
        self.api_key_id.push(r.api_key_id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use callgate_domain::lifecycle::RunStatus;
    use callgate_store::contract::fixtures::{new_run, run, t, world};
    use callgate_store::{AgentStore, RunStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_the_database_refuses_fails_alone_in_its_batch() {
        let Some((db, store)) = crate::scratch_store().await else {
            return;
        };
        let w = world(&store, "Acme").await;
        let taken = run(&store, &w.agent, &w.config, RunStatus::Queued, t(0)).await;
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        for i in 1..=3 {
            let mut new = new_run(&store, &w.agent, &w.config, RunStatus::Queued, t(i)).await;
            if i == 2 {
                // The call id of a stored run: the unique constraint refuses it.
                new.call_id = taken.call_id;
            }
            let (reply, answer) = oneshot::channel();
            batch.push(Pending {
                run: RunColumns::of(&mut new).unwrap(),
                reply,
            });
            answers.push((new.id, answer));
        }
        write_batch(&store.pool, batch).await;
        let mut outcomes = Vec::new();
        for (id, answer) in answers {
            let written = answer.await.unwrap();
            let stored = store.get_run(w.tn.org.id, id).await;
            if written.is_ok() {
                assert_eq!(
                    stored.unwrap().events.len(),
                    1,
                    "run {id} and its first event"
                );
            } else {
                assert!(matches!(stored, Err(StoreError::NotFound)));
            }
            outcomes.push(written.map_err(|e| e.to_string()));
        }
        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        let refused = outcomes[1].as_ref().unwrap_err();
        assert!(refused.contains("runs_call_id_key"), "{refused}");
        let agent = store
            .get_agent(w.tn.org.id, w.agent.agent.id)
            .await
            .unwrap()
            .agent;
        assert_eq!(agent.total_runs, 3, "the first run and the two accepted");
        drop(store);
        db.drop_database().await.unwrap();
    }
}

//! Runs: writing them with their first event and idempotency record, reading them back, and
//! the queue and lifecycle entry points (implemented in `claims`, `lifecycle` and `nodes`).

use crate::PgStore;
use crate::db::{exec, exec_unique, opt_row, rows};
use crate::run_rows::{
    RUN_COLS, attach_events, load_run_where, new_run_into_record, run_row, status_of,
};
use crate::util::{db_err, get, hash32, ts};
use async_trait::async_trait;
use callgate_domain::lifecycle::RunStatus;
use callgate_store::*;
use jiff::Timestamp;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

#[async_trait]
impl RunStore for PgStore {
    async fn allocate_run_id(&self) -> StoreResult<RunId> {
        self.run_ids.next().await
    }

    async fn enqueue_run(
        &self,
        mut run: NewRun,
        idem: Option<IdempotencyClaim>,
    ) -> StoreResult<Run> {
        let columns = crate::inserts::RunColumns::of(&mut run)?;
        match &idem {
            // Written with the other runs that arrive meanwhile (`inserts`).
            None => {
                self.inserter.insert(columns).await?;
            }
            Some(k) => {
                let mut c = self.client().await?;
                let tx = c.transaction().await.map_err(db_err)?;
                crate::inserts::insert_all(&tx, std::iter::once(&columns)).await?;
                exec_unique(
                    &tx,
                    "INSERT INTO idempotency_keys (api_key_id, route, key, body_hash, run_id,
                     created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &k.api_key_id,
                        &k.route,
                        &k.key,
                        &&k.body_hash[..],
                        &run.id,
                        &ts(run.created_at),
                    ],
                    &[("idempotency_keys_pkey", "idempotency_key_reused")],
                )
                .await?;
                tx.commit().await.map_err(db_err)?;
            }
        }
        // Other nodes' dispatchers learn of the run now instead of at their next poll.
        if run.status == RunStatus::Queued {
            self.notifier.work_available(run.config_id, run.org_id);
        }
        Ok(new_run_into_record(run))
    }

    async fn find_idempotency(
        &self,
        api_key_id: ApiKeyId,
        route: &str,
        key: &str,
        not_before: Timestamp,
    ) -> StoreResult<Option<IdempotencyRecord>> {
        let c = self.client().await?;
        let row = opt_row(
            &c,
            "SELECT body_hash, run_id, created_at, response_status, response_body
             FROM idempotency_keys
             WHERE api_key_id = $1 AND route = $2 AND key = $3 AND created_at >= $4",
            &[&api_key_id, &route, &key, &ts(not_before)],
        )
        .await?;
        row.map(|r| {
            let hash: Vec<u8> = get(&r, 0)?;
            let status: Option<i32> = get(&r, 3)?;
            let body: Option<String> = get(&r, 4)?;
            Ok(IdempotencyRecord {
                body_hash: hash32(&hash),
                run_id: get(&r, 1)?,
                created_at: get(&r, 2)?,
                response: status.zip(body).map(|(status, body)| StoredResponse {
                    status: u16::try_from(status).unwrap_or(500),
                    body,
                }),
            })
        })
        .transpose()
    }

    async fn save_idempotent_response(
        &self,
        api_key_id: ApiKeyId,
        route: &str,
        key: &str,
        response: StoredResponse,
    ) -> StoreResult<()> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE idempotency_keys SET response_status = $4, response_body = $5
             WHERE api_key_id = $1 AND route = $2 AND key = $3",
            &[
                &api_key_id,
                &route,
                &key,
                &i32::from(response.status),
                &response.body,
            ],
        )
        .await?;
        Ok(())
    }

    async fn get_run(&self, org: OrgId, id: RunId) -> StoreResult<Run> {
        let c = self.client().await?;
        load_run_where(&c, "id = $1 AND org_id = $2", &[&id, &org]).await
    }

    async fn get_run_by_call_id(&self, org: OrgId, call_id: Uuid) -> StoreResult<Run> {
        let c = self.client().await?;
        load_run_where(&c, "call_id = $1 AND org_id = $2", &[&call_id, &org]).await
    }

    async fn cancel_run(&self, org: OrgId, call_id: Uuid, at: Timestamp) -> StoreResult<Cancel> {
        let c = self.client().await?;
        // One statement: its row lock orders it with the claims (which lock and re-check
        // `status = 'queued'`), so a run is canceled or claimed, never both.
        let canceled = opt_row(
            &c,
            "WITH old AS (
                 SELECT id, status FROM runs
                 WHERE call_id = $1 AND org_id = $2 AND status IN ('queued', 'scheduled')
                 FOR UPDATE
             ),
             c AS (
                 UPDATE runs r SET status = 'ended', outcome = 'canceled', ended_reason = $3,
                     ended_at = $4, lease_owner = NULL
                 FROM old WHERE r.id = old.id
                 RETURNING r.id, r.attempt, old.status AS was
             ),
             e AS (
                 INSERT INTO run_events (run_id, seq, status, at, attempt, provider_status, detail)
                 SELECT c.id,
                        COALESCE((SELECT MAX(x.seq) FROM run_events x WHERE x.run_id = c.id), 0) + 1,
                        'ended', $4, c.attempt, NULL, $5
                 FROM c
             )
             SELECT was FROM c",
            &[&call_id, &org, &CANCELED_REASON, &ts(at), &CANCELED_DETAIL],
        )
        .await?;
        let run = load_run_where(&c, "call_id = $1 AND org_id = $2", &[&call_id, &org]).await?;
        Ok(match canceled {
            Some(row) => Cancel::Canceled {
                run,
                was: status_of(&get::<String>(&row, 0)?),
            },
            None => Cancel::NotCancelable(run),
        })
    }

    async fn list_runs(&self, org: OrgId, f: &RunFilter) -> StoreResult<Vec<Run>> {
        let mut sql = format!("SELECT {RUN_COLS} FROM runs WHERE org_id = $1");
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(org)];
        let mut add = |clause: &str, v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            sql.push_str(&format!(" AND {clause} ${}", args.len()));
        };
        if let Some(s) = f.status {
            add("status =", Box::new(s.as_str()));
        }
        if let Some(o) = f.outcome {
            add("outcome =", Box::new(o.as_str()));
        }
        if let Some(a) = f.agent_id {
            add("agent_id =", Box::new(a));
        }
        if let Some(e) = &f.external_id {
            add("external_id =", Box::new(e.clone()));
        }
        if let Some(p) = &f.phone_number {
            add("phone_number =", Box::new(p.clone()));
        }
        if let Some(t) = f.created_after {
            add("created_at >=", Box::new(ts(t)));
        }
        if let Some(t) = f.created_before {
            add("created_at <", Box::new(ts(t)));
        }
        if let Some(b) = f.before_id {
            add("id <", Box::new(b));
        }
        args.push(Box::new(i64::from(f.limit)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let c = self.client().await?;
        let mut runs = rows(&c, &sql, &params)
            .await?
            .iter()
            .map(run_row)
            .collect::<StoreResult<Vec<_>>>()?;
        attach_events(&c, &mut runs).await?;
        Ok(runs)
    }

    async fn queue_counts(&self) -> StoreResult<Vec<QueueCount>> {
        let c = self.client().await?;
        rows(
            &c,
            "SELECT org_id, config_id, status, COUNT(*) FROM runs
             WHERE status IN ('scheduled', 'queued', 'dialing', 'ringing', 'in_progress')
             GROUP BY org_id, config_id, status ORDER BY org_id, config_id, status",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            let status: String = get(r, 2)?;
            Ok(QueueCount {
                org_id: get(r, 0)?,
                config_id: get(r, 1)?,
                status: status_of(&status),
                count: get(r, 3)?,
            })
        })
        .collect()
    }

    async fn claim_runs(
        &self,
        config: ConfigId,
        limit: u32,
        node: &str,
        now: Timestamp,
    ) -> StoreResult<Vec<ClaimedRun>> {
        let c = self.client().await?;
        crate::claims::claim(&c, config, limit, node, now, None).await
    }

    async fn claim_paced(
        &self,
        config: ConfigId,
        org: OrgId,
        limits: &ClaimLimits,
        node: &str,
        now: Timestamp,
    ) -> StoreResult<Claim> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let claim = crate::claims::claim_paced(&tx, config, org, limits, node, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(claim)
    }

    fn work_hints(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<WorkHint>> {
        Some(crate::notify::spawn_listener(self.config.clone()))
    }

    async fn apply_update(&self, id: RunId, u: RunUpdate) -> StoreResult<AppliedUpdate> {
        self.apply_updates(vec![(id, u)].into())
            .await?
            .pop()
            .unwrap_or(Err(StoreError::NotFound))
    }

    async fn apply_updates(
        &self,
        updates: std::sync::Arc<[(RunId, RunUpdate)]>,
    ) -> StoreResult<Vec<StoreResult<AppliedUpdate>>> {
        let mut c = self.client().await?;
        let results = crate::lifecycle::apply_many(&mut c, updates).await?;
        results
            .iter()
            .flatten()
            .for_each(|a| self.capacity_freed(a));
        Ok(results)
    }

    async fn live_runs(&self) -> StoreResult<Vec<(RunId, String)>> {
        let c = self.client().await?;
        crate::nodes::live_runs(&c).await
    }

    async fn heartbeat(&self, node: &str, now: Timestamp) -> StoreResult<()> {
        let c = self.client().await?;
        crate::nodes::heartbeat(&c, node, now).await
    }

    async fn node_last_seen(&self, node: &str) -> StoreResult<Option<Timestamp>> {
        let c = self.client().await?;
        crate::nodes::node_last_seen(&c, node).await
    }

    async fn orphaned_runs(&self, stale_before: Timestamp) -> StoreResult<Vec<(RunId, String)>> {
        let c = self.client().await?;
        crate::nodes::orphaned_runs(&c, stale_before).await
    }

    async fn runs_leased_to(&self, node: &str) -> StoreResult<Vec<(RunId, String)>> {
        let c = self.client().await?;
        crate::nodes::runs_leased_to(&c, node).await
    }

    async fn purge_idempotency(&self, before: Timestamp) -> StoreResult<u64> {
        let c = self.client().await?;
        exec(
            &c,
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            &[&ts(before)],
        )
        .await
    }
}

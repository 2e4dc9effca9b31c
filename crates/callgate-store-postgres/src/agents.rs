//! Agents, definition versions and the instance-wide trigger registry.

use crate::PgStore;
use crate::db::{exec, one_row, opt_row, rows};
use crate::util::{db_err, get, ts};
use async_trait::async_trait;
use callgate_store::*;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use serde_json::{Map, Value};
use tokio_postgres::Row;
use tokio_postgres::types::Json;
use uuid::Uuid;

/// `total_runs` is the base kept in the row plus the per-session slots triggers add to
/// (migration 0005).
const AGENT_COLS: &str = "id, org_id, uuid, name, status, owner_user_id,
     total_runs + COALESCE((SELECT SUM(c.runs) FROM agent_run_counts c
                            WHERE c.agent_id = agents.id), 0)::bigint,
     created_at";
const VERSION_COLS: &str = "id, agent_id, version_number, status, definition, template_context_variables, created_at, published_at";

fn agent_row(r: &Row) -> StoreResult<Agent> {
    let status: String = get(r, 4)?;
    Ok(Agent {
        id: get(r, 0)?,
        org_id: get(r, 1)?,
        uuid: get(r, 2)?,
        name: get(r, 3)?,
        status: if status == "archived" {
            AgentStatus::Archived
        } else {
            AgentStatus::Active
        },
        owner_user_id: get(r, 5)?,
        total_runs: get(r, 6)?,
        created_at: get(r, 7)?,
    })
}

fn version_row(r: &Row) -> StoreResult<AgentVersion> {
    let status: String = get(r, 3)?;
    let Json(definition) = get(r, 4)?;
    let tcv: Option<Json<Map<String, Value>>> = get(r, 5)?;
    Ok(AgentVersion {
        id: get(r, 0)?,
        agent_id: get(r, 1)?,
        version_number: get(r, 2)?,
        status: match status.as_str() {
            "draft" => VersionStatus::Draft,
            "published" => VersionStatus::Published,
            _ => VersionStatus::Archived,
        },
        definition,
        template_context_variables: tcv.map(|Json(m)| m),
        created_at: get(r, 6)?,
        published_at: get(r, 7)?,
    })
}

async fn bundle<C: GenericClient>(c: &C, agent: Agent) -> StoreResult<AgentBundle> {
    let sql = format!(
        "SELECT {VERSION_COLS} FROM agent_versions
         WHERE agent_id = $1 AND status IN ('draft', 'published')"
    );
    let mut published = None;
    let mut draft = None;
    for row in rows(c, &sql, &[&agent.id]).await? {
        let v = version_row(&row)?;
        match v.status {
            VersionStatus::Draft => draft = Some(v),
            VersionStatus::Published => published = Some(v),
            VersionStatus::Archived => {}
        }
    }
    Ok(AgentBundle {
        agent,
        published,
        draft,
    })
}

async fn load_agent<C: GenericClient>(c: &C, org: OrgId, id: AgentId) -> StoreResult<AgentBundle> {
    let sql = format!("SELECT {AGENT_COLS} FROM agents WHERE id = $1 AND org_id = $2");
    let agent = agent_row(&one_row(c, &sql, &[&id, &org]).await?)?;
    bundle(c, agent).await
}

/// Locks the agent row for the rest of the transaction, so concurrent edits of one agent
/// (two drafts started at once, a publish racing an edit) run one after another, as they do
/// behind SQLite's single writer.
async fn lock_agent<C: GenericClient>(c: &C, org: OrgId, id: AgentId) -> StoreResult<()> {
    one_row(
        c,
        "SELECT id FROM agents WHERE id = $1 AND org_id = $2 FOR UPDATE",
        &[&id, &org],
    )
    .await
    .map(|_| ())
}

/// Registers paths for `agent`; a path any other agent ever held is a conflict. Insert first,
/// then read the owner: a concurrent claim of the same path on another node makes the insert
/// wait for that transaction, and the read then sees its committed winner.
async fn claim_paths<C: GenericClient>(
    c: &C,
    agent: AgentId,
    org: OrgId,
    paths: &[String],
) -> StoreResult<()> {
    for path in paths {
        exec(
            c,
            "INSERT INTO trigger_paths (path, agent_id, org_id) VALUES ($1, $2, $3)
             ON CONFLICT (path) DO NOTHING",
            &[path, &agent, &org],
        )
        .await?;
        let row = one_row(
            c,
            "SELECT agent_id FROM trigger_paths WHERE path = $1",
            &[path],
        )
        .await?;
        let owner: AgentId = get(&row, 0)?;
        if owner != agent {
            return Err(StoreError::Conflict("trigger_path_taken"));
        }
    }
    Ok(())
}

async fn next_version_number<C: GenericClient>(c: &C, agent: AgentId) -> StoreResult<i64> {
    let row = one_row(
        c,
        "SELECT COALESCE(MAX(version_number), 0) + 1 FROM agent_versions WHERE agent_id = $1",
        &[&agent],
    )
    .await?;
    get(&row, 0)
}

/// The definition a draft starts from when nothing else is known.
fn empty_definition() -> Value {
    serde_json::json!({"nodes": [], "edges": []})
}

#[async_trait]
impl AgentStore for PgStore {
    async fn create_agent(&self, new: NewAgent, now: Timestamp) -> StoreResult<AgentBundle> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let now = ts(now);
        let row = one_row(
            &tx,
            "INSERT INTO agents (org_id, uuid, name, status, owner_user_id, created_at)
             VALUES ($1, $2, $3, 'active', $4, $5) RETURNING id",
            &[
                &new.org_id,
                &Uuid::new_v4(),
                &new.name,
                &new.owner_user_id,
                &now,
            ],
        )
        .await?;
        let agent_id: AgentId = get(&row, 0)?;
        exec(
            &tx,
            "INSERT INTO agent_versions (agent_id, version_number, status, definition,
             created_at, published_at) VALUES ($1, 1, 'published', $2, $3, $3)",
            &[&agent_id, &Json(&new.definition), &now],
        )
        .await?;
        claim_paths(&tx, agent_id, new.org_id, &new.trigger_paths).await?;
        let bundle = load_agent(&tx, new.org_id, agent_id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(bundle)
    }

    async fn get_agent(&self, org: OrgId, id: AgentId) -> StoreResult<AgentBundle> {
        let c = self.client().await?;
        load_agent(&c, org, id).await
    }

    async fn find_agent_by_uuid(&self, uuid: Uuid) -> StoreResult<Option<AgentBundle>> {
        let c = self.client().await?;
        let sql = format!("SELECT {AGENT_COLS} FROM agents WHERE uuid = $1");
        match opt_row(&c, &sql, &[&uuid]).await? {
            Some(row) => Ok(Some(bundle(&c, agent_row(&row)?).await?)),
            None => Ok(None),
        }
    }

    async fn list_agents(
        &self,
        org: OrgId,
        status: Option<AgentStatus>,
    ) -> StoreResult<Vec<Agent>> {
        let c = self.client().await?;
        let sql = format!(
            "SELECT {AGENT_COLS} FROM agents WHERE org_id = $1
             AND ($2::text IS NULL OR status = $2) ORDER BY id DESC"
        );
        let status = status.map(|s| s.as_str());
        rows(&c, &sql, &[&org, &status])
            .await?
            .iter()
            .map(agent_row)
            .collect()
    }

    async fn list_versions(&self, org: OrgId, id: AgentId) -> StoreResult<Vec<AgentVersion>> {
        let mut c = self.client().await?;
        // One snapshot for the existence check and the list.
        let tx = c
            .build_transaction()
            .read_only(true)
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .start()
            .await
            .map_err(db_err)?;
        load_agent(&tx, org, id).await?;
        let sql = format!(
            "SELECT {VERSION_COLS} FROM agent_versions WHERE agent_id = $1
             ORDER BY version_number DESC"
        );
        let versions = rows(&tx, &sql, &[&id])
            .await?
            .iter()
            .map(version_row)
            .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await.map_err(db_err)?;
        Ok(versions)
    }

    async fn save_draft(
        &self,
        org: OrgId,
        id: AgentId,
        edit: DraftEdit,
        now: Timestamp,
    ) -> StoreResult<AgentBundle> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        lock_agent(&tx, org, id).await?;
        let current = load_agent(&tx, org, id).await?;
        if let Some(name) = &edit.name {
            exec(
                &tx,
                "UPDATE agents SET name = $2 WHERE id = $1",
                &[&id, name],
            )
            .await?;
        }
        let definition = edit.definition.as_ref().map(Json);
        let tcv = edit.template_context_variables.as_ref().map(Json);
        if definition.is_some() || tcv.is_some() {
            match &current.draft {
                Some(draft) => {
                    exec(
                        &tx,
                        "UPDATE agent_versions SET
                           definition = COALESCE($2, definition),
                           template_context_variables = COALESCE($3, template_context_variables)
                         WHERE id = $1",
                        &[&draft.id, &definition, &tcv],
                    )
                    .await?;
                }
                None => {
                    let base = current.published.as_ref();
                    let empty = empty_definition();
                    let base_def = match (&edit.definition, base) {
                        (Some(d), _) => d,
                        (None, Some(p)) => &p.definition,
                        (None, None) => &empty,
                    };
                    let base_tcv = match (&edit.template_context_variables, base) {
                        (Some(t), _) => Some(t),
                        (None, Some(p)) => p.template_context_variables.as_ref(),
                        (None, None) => None,
                    };
                    let number = next_version_number(&tx, id).await?;
                    exec(
                        &tx,
                        "INSERT INTO agent_versions (agent_id, version_number, status,
                         definition, template_context_variables, created_at)
                         VALUES ($1, $2, 'draft', $3, $4, $5)",
                        &[&id, &number, &Json(base_def), &base_tcv.map(Json), &ts(now)],
                    )
                    .await?;
                }
            }
        }
        claim_paths(&tx, id, org, &edit.trigger_paths).await?;
        let bundle = load_agent(&tx, org, id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(bundle)
    }

    async fn publish(&self, org: OrgId, id: AgentId, now: Timestamp) -> StoreResult<AgentBundle> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        lock_agent(&tx, org, id).await?;
        let current = load_agent(&tx, org, id).await?;
        let Some(draft) = current.draft else {
            return Err(StoreError::Conflict("no_draft"));
        };
        exec(
            &tx,
            "UPDATE agent_versions SET status = 'archived'
             WHERE agent_id = $1 AND status = 'published'",
            &[&id],
        )
        .await?;
        exec(
            &tx,
            "UPDATE agent_versions SET status = 'published', published_at = $2 WHERE id = $1",
            &[&draft.id, &ts(now)],
        )
        .await?;
        let bundle = load_agent(&tx, org, id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(bundle)
    }

    async fn set_owner(&self, org: OrgId, id: AgentId, user: UserId) -> StoreResult<AgentBundle> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let exists = opt_row(
            &tx,
            "SELECT id FROM users WHERE id = $1 AND org_id = $2",
            &[&user, &org],
        )
        .await?;
        if exists.is_none() {
            return Err(StoreError::Conflict("user_not_found"));
        }
        let n = exec(
            &tx,
            "UPDATE agents SET owner_user_id = $3 WHERE id = $1 AND org_id = $2",
            &[&id, &org, &user],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        let bundle = load_agent(&tx, org, id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(bundle)
    }

    async fn archive_agent(&self, org: OrgId, id: AgentId) -> StoreResult<AgentBundle> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        let n = exec(
            &tx,
            "UPDATE agents SET status = 'archived' WHERE id = $1 AND org_id = $2",
            &[&id, &org],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        let bundle = load_agent(&tx, org, id).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(bundle)
    }

    async fn find_trigger(&self, path: &str) -> StoreResult<Option<TriggerOwner>> {
        let c = self.client().await?;
        let row = opt_row(
            &c,
            "SELECT path, agent_id, org_id FROM trigger_paths WHERE path = $1",
            &[&path],
        )
        .await?;
        row.map(|r| {
            Ok(TriggerOwner {
                path: get(&r, 0)?,
                agent_id: get(&r, 1)?,
                org_id: get(&r, 2)?,
            })
        })
        .transpose()
    }
}

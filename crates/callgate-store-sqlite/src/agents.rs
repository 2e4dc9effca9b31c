//! Agents, definition versions and the instance-wide trigger registry.

use crate::SqliteStore;
use crate::util::{db_err, from_ts, json_text, opt_ts, parse_json, parse_opt_json, parse_uuid, ts};
use async_trait::async_trait;
use callgate_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use uuid::Uuid;

const AGENT_COLS: &str = "id, org_id, uuid, name, status, owner_user_id, total_runs, created_at";
const VERSION_COLS: &str = "id, agent_id, version_number, status, definition, template_context_variables, created_at, published_at";

fn agent_row(r: &Row<'_>) -> rusqlite::Result<Agent> {
    let uuid: String = r.get(2)?;
    let status: String = r.get(4)?;
    Ok(Agent {
        id: r.get(0)?,
        org_id: r.get(1)?,
        uuid: parse_uuid(&uuid)?,
        name: r.get(3)?,
        status: if status == "archived" {
            AgentStatus::Archived
        } else {
            AgentStatus::Active
        },
        owner_user_id: r.get(5)?,
        total_runs: r.get(6)?,
        created_at: from_ts(r.get(7)?),
    })
}

fn version_row(r: &Row<'_>) -> rusqlite::Result<AgentVersion> {
    let status: String = r.get(3)?;
    let definition: String = r.get(4)?;
    Ok(AgentVersion {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        version_number: r.get(2)?,
        status: match status.as_str() {
            "draft" => VersionStatus::Draft,
            "published" => VersionStatus::Published,
            _ => VersionStatus::Archived,
        },
        definition: parse_json(&definition)?,
        template_context_variables: parse_opt_json(r.get(5)?)?,
        created_at: from_ts(r.get(6)?),
        published_at: opt_ts(r.get(7)?),
    })
}

fn bundle(c: &Connection, agent: Agent) -> StoreResult<AgentBundle> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {VERSION_COLS} FROM agent_versions
             WHERE agent_id = ?1 AND status IN ('draft', 'published')"
        ))
        .map_err(db_err)?;
    let mut published = None;
    let mut draft = None;
    for v in st.query_map([agent.id], version_row).map_err(db_err)? {
        let v = v.map_err(db_err)?;
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

fn load_agent(c: &Connection, org: OrgId, id: AgentId) -> StoreResult<AgentBundle> {
    let agent = c
        .query_row(
            &format!("SELECT {AGENT_COLS} FROM agents WHERE id = ?1 AND org_id = ?2"),
            params![id, org],
            agent_row,
        )
        .map_err(db_err)?;
    bundle(c, agent)
}

/// Registers paths for `agent`; a path any other agent ever held is a conflict.
/// An agent as a write job sees it: its run count with the runs its transaction created,
/// which are counted in the row only at the commit (`deferred`).
fn load_agent_in_writer(
    c: &Connection,
    deferred: &crate::deferred::Deferred,
    org: OrgId,
    id: AgentId,
) -> StoreResult<AgentBundle> {
    let mut bundle = load_agent(c, org, id)?;
    bundle.agent.total_runs += deferred.pending_agent_runs(id);
    Ok(bundle)
}

fn claim_paths(c: &Connection, agent: AgentId, org: OrgId, paths: &[String]) -> StoreResult<()> {
    for path in paths {
        c.execute(
            "INSERT OR IGNORE INTO trigger_paths (path, agent_id, org_id) VALUES (?1, ?2, ?3)",
            params![path, agent, org],
        )
        .map_err(db_err)?;
        let owner: AgentId = c
            .query_row(
                "SELECT agent_id FROM trigger_paths WHERE path = ?1",
                [path],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        if owner != agent {
            return Err(StoreError::Conflict("trigger_path_taken"));
        }
    }
    Ok(())
}

fn next_version_number(c: &Connection, agent: AgentId) -> StoreResult<i64> {
    c.query_row(
        "SELECT COALESCE(MAX(version_number), 0) + 1 FROM agent_versions WHERE agent_id = ?1",
        [agent],
        |r| r.get(0),
    )
    .map_err(db_err)
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn create_agent(&self, new: NewAgent, now: Timestamp) -> StoreResult<AgentBundle> {
        let definition = json_text(&new.definition)?;
        self.write(move |c| {
            let uuid = Uuid::new_v4().to_string();
            c.execute(
                "INSERT INTO agents (org_id, uuid, name, status, owner_user_id, created_at)
                 VALUES (?1, ?2, ?3, 'active', ?4, ?5)",
                params![new.org_id, uuid, new.name, new.owner_user_id, ts(now)],
            )
            .map_err(db_err)?;
            let agent_id = c.last_insert_rowid();
            c.execute(
                "INSERT INTO agent_versions (agent_id, version_number, status, definition,
                 created_at, published_at) VALUES (?1, 1, 'published', ?2, ?3, ?3)",
                params![agent_id, definition, ts(now)],
            )
            .map_err(db_err)?;
            claim_paths(c, agent_id, new.org_id, &new.trigger_paths)?;
            load_agent(c, new.org_id, agent_id)
        })
        .await
    }

    async fn get_agent(&self, org: OrgId, id: AgentId) -> StoreResult<AgentBundle> {
        self.read(move |c| load_agent(c, org, id)).await
    }

    async fn find_agent_by_uuid(&self, uuid: Uuid) -> StoreResult<Option<AgentBundle>> {
        self.read(move |c| {
            let agent = c
                .query_row(
                    &format!("SELECT {AGENT_COLS} FROM agents WHERE uuid = ?1"),
                    [uuid.to_string()],
                    agent_row,
                )
                .optional()
                .map_err(db_err)?;
            agent.map(|a| bundle(c, a)).transpose()
        })
        .await
    }

    async fn list_agents(
        &self,
        org: OrgId,
        status: Option<AgentStatus>,
    ) -> StoreResult<Vec<Agent>> {
        self.read(move |c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {AGENT_COLS} FROM agents WHERE org_id = ?1
                     AND (?2 IS NULL OR status = ?2) ORDER BY id DESC"
                ))
                .map_err(db_err)?;
            let rows = st
                .query_map(params![org, status.map(|s| s.as_str())], agent_row)
                .map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn list_versions(&self, org: OrgId, id: AgentId) -> StoreResult<Vec<AgentVersion>> {
        self.read(move |c| {
            load_agent(c, org, id)?;
            let mut st = c
                .prepare(&format!(
                    "SELECT {VERSION_COLS} FROM agent_versions WHERE agent_id = ?1
                     ORDER BY version_number DESC"
                ))
                .map_err(db_err)?;
            let rows = st.query_map([id], version_row).map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn save_draft(
        &self,
        org: OrgId,
        id: AgentId,
        edit: DraftEdit,
        now: Timestamp,
    ) -> StoreResult<AgentBundle> {
        let definition = edit.definition.as_ref().map(json_text).transpose()?;
        let tcv = edit
            .template_context_variables
            .as_ref()
            .map(json_text)
            .transpose()?;
        let deferred = self.deferred.clone();
        self.write(move |c| {
            let current = load_agent(c, org, id)?;
            if let Some(name) = &edit.name {
                c.execute(
                    "UPDATE agents SET name = ?2 WHERE id = ?1",
                    params![id, name],
                )
                .map_err(db_err)?;
            }
            if definition.is_some() || tcv.is_some() {
                match &current.draft {
                    Some(draft) => {
                        c.execute(
                            "UPDATE agent_versions SET
                               definition = COALESCE(?2, definition),
                               template_context_variables = COALESCE(?3, template_context_variables)
                             WHERE id = ?1",
                            params![draft.id, definition, tcv],
                        )
                        .map_err(db_err)?;
                    }
                    None => {
                        let base = current.published.as_ref();
                        let base_def = match (&definition, base) {
                            (Some(d), _) => d.clone(),
                            (None, Some(p)) => json_text(&p.definition)?,
                            (None, None) => "{\"nodes\":[],\"edges\":[]}".to_owned(),
                        };
                        let base_tcv = match (&tcv, base) {
                            (Some(t), _) => Some(t.clone()),
                            (None, Some(p)) => p
                                .template_context_variables
                                .as_ref()
                                .map(json_text)
                                .transpose()?,
                            (None, None) => None,
                        };
                        let number = next_version_number(c, id)?;
                        c.execute(
                            "INSERT INTO agent_versions (agent_id, version_number, status,
                             definition, template_context_variables, created_at)
                             VALUES (?1, ?2, 'draft', ?3, ?4, ?5)",
                            params![id, number, base_def, base_tcv, ts(now)],
                        )
                        .map_err(db_err)?;
                    }
                }
            }
            claim_paths(c, id, org, &edit.trigger_paths)?;
            load_agent_in_writer(c, &deferred, org, id)
        })
        .await
    }

    async fn publish(&self, org: OrgId, id: AgentId, now: Timestamp) -> StoreResult<AgentBundle> {
        let deferred = self.deferred.clone();
        self.write(move |c| {
            let current = load_agent(c, org, id)?;
            let Some(draft) = current.draft else {
                return Err(StoreError::Conflict("no_draft"));
            };
            c.execute(
                "UPDATE agent_versions SET status = 'archived'
                 WHERE agent_id = ?1 AND status = 'published'",
                [id],
            )
            .map_err(db_err)?;
            c.execute(
                "UPDATE agent_versions SET status = 'published', published_at = ?2 WHERE id = ?1",
                params![draft.id, ts(now)],
            )
            .map_err(db_err)?;
            load_agent_in_writer(c, &deferred, org, id)
        })
        .await
    }

    async fn set_owner(&self, org: OrgId, id: AgentId, user: UserId) -> StoreResult<AgentBundle> {
        let deferred = self.deferred.clone();
        self.write(move |c| {
            let exists: Option<i64> = c
                .query_row(
                    "SELECT id FROM users WHERE id = ?1 AND org_id = ?2",
                    params![user, org],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if exists.is_none() {
                return Err(StoreError::Conflict("user_not_found"));
            }
            let n = c
                .execute(
                    "UPDATE agents SET owner_user_id = ?3 WHERE id = ?1 AND org_id = ?2",
                    params![id, org, user],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            load_agent_in_writer(c, &deferred, org, id)
        })
        .await
    }

    async fn archive_agent(&self, org: OrgId, id: AgentId) -> StoreResult<AgentBundle> {
        let deferred = self.deferred.clone();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE agents SET status = 'archived' WHERE id = ?1 AND org_id = ?2",
                    params![id, org],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            load_agent_in_writer(c, &deferred, org, id)
        })
        .await
    }

    async fn find_trigger(&self, path: &str) -> StoreResult<Option<TriggerOwner>> {
        let path = path.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT path, agent_id, org_id FROM trigger_paths WHERE path = ?1",
                [&path],
                |r| {
                    Ok(TriggerOwner {
                        path: r.get(0)?,
                        agent_id: r.get(1)?,
                        org_id: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }
}

//! Organisations, users and API keys.

use crate::PgStore;
use crate::db::{exec, one_row, one_row_unique, opt_row, rows};
use crate::util::{db_err, get, get_u32, ts};
use async_trait::async_trait;
use callgate_store::*;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use std::collections::BTreeMap;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

const ORG_COLS: &str = "id, name, quota_seconds_remaining, max_concurrent_calls, max_queued_calls, on_capacity, created_at";
const USER_COLS: &str = "id, org_id, email, name, active, created_at";
const KEY_COLS: &str =
    "id, org_id, user_id, name, key_prefix, scopes, active, created_at, last_used_at";

fn org_row(r: &Row) -> StoreResult<Organization> {
    let on_capacity: String = get(r, 5)?;
    Ok(Organization {
        id: get(r, 0)?,
        name: get(r, 1)?,
        quota_seconds_remaining: get(r, 2)?,
        settings: OrgSettings {
            max_concurrent_calls: get_u32(r, 3)?,
            max_queued_calls: get_u32(r, 4)?,
            on_capacity: if on_capacity == "reject" {
                OnCapacity::Reject
            } else {
                OnCapacity::Queue
            },
        },
        created_at: get(r, 6)?,
    })
}

fn user_row(r: &Row) -> StoreResult<User> {
    Ok(User {
        id: get(r, 0)?,
        org_id: get(r, 1)?,
        email: get(r, 2)?,
        name: get(r, 3)?,
        active: get(r, 4)?,
        created_at: get(r, 5)?,
    })
}

fn key_row(r: &Row) -> StoreResult<ApiKey> {
    let Json(scopes) = get(r, 5)?;
    Ok(ApiKey {
        id: get(r, 0)?,
        org_id: get(r, 1)?,
        user_id: get(r, 2)?,
        name: get(r, 3)?,
        key_prefix: get(r, 4)?,
        scopes,
        active: get(r, 6)?,
        created_at: get(r, 7)?,
        last_used_at: get(r, 8)?,
    })
}

pub(crate) async fn load_org<C: GenericClient>(c: &C, id: OrgId) -> StoreResult<Organization> {
    let sql = format!("SELECT {ORG_COLS} FROM organizations WHERE id = $1");
    org_row(&one_row(c, &sql, &[&id]).await?)
}

async fn load_user<C: GenericClient>(c: &C, org: OrgId, id: UserId) -> StoreResult<User> {
    let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1 AND org_id = $2");
    user_row(&one_row(c, &sql, &[&id, &org]).await?)
}

fn on_capacity_str(o: OnCapacity) -> &'static str {
    match o {
        OnCapacity::Queue => "queue",
        OnCapacity::Reject => "reject",
    }
}

#[async_trait]
impl TenantStore for PgStore {
    async fn is_empty(&self) -> StoreResult<bool> {
        let c = self.client().await?;
        let row = opt_row(&c, "SELECT EXISTS (SELECT 1 FROM organizations)", &[]).await?;
        let exists: bool = match row {
            Some(r) => get(&r, 0)?,
            None => false,
        };
        Ok(!exists)
    }

    async fn create_org(&self, name: &str, now: Timestamp) -> StoreResult<Organization> {
        let c = self.client().await?;
        let sql = format!(
            "INSERT INTO organizations (name, created_at) VALUES ($1, $2) RETURNING {ORG_COLS}"
        );
        org_row(&one_row(&c, &sql, &[&name, &ts(now)]).await?)
    }

    async fn list_orgs(&self) -> StoreResult<Vec<Organization>> {
        let c = self.client().await?;
        let sql = format!("SELECT {ORG_COLS} FROM organizations ORDER BY id");
        rows(&c, &sql, &[]).await?.iter().map(org_row).collect()
    }

    async fn get_org(&self, id: OrgId) -> StoreResult<Organization> {
        let c = self.client().await?;
        load_org(&c, id).await
    }

    async fn update_org_settings(&self, id: OrgId, s: &OrgSettings) -> StoreResult<Organization> {
        let c = self.client().await?;
        let sql = format!(
            "UPDATE organizations SET max_concurrent_calls = $2, max_queued_calls = $3,
             on_capacity = $4 WHERE id = $1 RETURNING {ORG_COLS}"
        );
        let row = one_row(
            &c,
            &sql,
            &[
                &id,
                &i64::from(s.max_concurrent_calls),
                &i64::from(s.max_queued_calls),
                &on_capacity_str(s.on_capacity),
            ],
        )
        .await?;
        org_row(&row)
    }

    async fn set_quota(&self, id: OrgId, seconds: Option<i64>) -> StoreResult<Organization> {
        let c = self.client().await?;
        let sql = format!(
            "UPDATE organizations SET quota_seconds_remaining = $2 WHERE id = $1
             RETURNING {ORG_COLS}"
        );
        org_row(&one_row(&c, &sql, &[&id, &seconds]).await?)
    }

    async fn create_user(
        &self,
        org: OrgId,
        email: &str,
        name: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<User> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        load_org(&tx, org).await?;
        let sql = format!(
            "INSERT INTO users (org_id, email, name, created_at) VALUES ($1, $2, $3, $4)
             RETURNING {USER_COLS}"
        );
        let row = one_row_unique(
            &tx,
            &sql,
            &[&org, &email, &name, &ts(now)],
            &[("users_org_email_key", "email_taken")],
        )
        .await?;
        let user = user_row(&row)?;
        tx.commit().await.map_err(db_err)?;
        Ok(user)
    }

    async fn get_user(&self, org: OrgId, id: UserId) -> StoreResult<User> {
        let c = self.client().await?;
        load_user(&c, org, id).await
    }

    async fn set_user_active(&self, org: OrgId, id: UserId, active: bool) -> StoreResult<User> {
        let c = self.client().await?;
        let sql = format!(
            "UPDATE users SET active = $3 WHERE id = $1 AND org_id = $2 RETURNING {USER_COLS}"
        );
        user_row(&one_row(&c, &sql, &[&id, &org, &active]).await?)
    }

    async fn create_api_key(&self, key: NewApiKey, now: Timestamp) -> StoreResult<ApiKey> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        load_user(&tx, key.org_id, key.user_id).await?;
        let sql = format!(
            "INSERT INTO api_keys (org_id, user_id, name, key_prefix, key_hash, scopes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLS}"
        );
        let row = one_row(
            &tx,
            &sql,
            &[
                &key.org_id,
                &key.user_id,
                &key.name,
                &key.key_prefix,
                &&key.key_hash[..],
                &Json(&key.scopes),
                &ts(now),
            ],
        )
        .await?;
        let created = key_row(&row)?;
        tx.commit().await.map_err(db_err)?;
        Ok(created)
    }

    async fn find_api_key(&self, hash: &[u8; 32]) -> StoreResult<Option<ApiKey>> {
        let c = self.client().await?;
        let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE key_hash = $1");
        opt_row(&c, &sql, &[&&hash[..]])
            .await?
            .as_ref()
            .map(key_row)
            .transpose()
    }

    async fn list_api_keys(&self, org: OrgId) -> StoreResult<Vec<ApiKey>> {
        let c = self.client().await?;
        let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE org_id = $1 ORDER BY id");
        rows(&c, &sql, &[&org]).await?.iter().map(key_row).collect()
    }

    async fn set_api_key_active(
        &self,
        org: OrgId,
        id: ApiKeyId,
        active: bool,
    ) -> StoreResult<ApiKey> {
        let c = self.client().await?;
        let sql = format!(
            "UPDATE api_keys SET active = $3 WHERE id = $1 AND org_id = $2 RETURNING {KEY_COLS}"
        );
        key_row(&one_row(&c, &sql, &[&id, &org, &active]).await?)
    }

    async fn touch_api_keys(&self, used: Vec<(ApiKeyId, Timestamp)>) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        // Latest use per key, in id order: every node then locks rows in the same order, so
        // two nodes flushing overlapping batches cannot deadlock.
        let mut latest: BTreeMap<ApiKeyId, Timestamp> = BTreeMap::new();
        for (id, at) in used {
            let at = ts(at);
            latest
                .entry(id)
                .and_modify(|t| *t = (*t).max(at))
                .or_insert(at);
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        for (id, at) in latest {
            // `COALESCE(…, epoch)` mirrors SQLite's `MAX(COALESCE(last_used_at, 0), ?)`.
            exec(
                &tx,
                "UPDATE api_keys
                 SET last_used_at = GREATEST(COALESCE(last_used_at, 'epoch'::timestamptz), $2)
                 WHERE id = $1",
                &[&id, &at],
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }
}

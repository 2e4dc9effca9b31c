//! Organisations, users and API keys.

use crate::SqliteStore;
use crate::util::{db_err, from_ts, is_unique_violation, json_text, opt_ts, parse_json, ts};
use async_trait::async_trait;
use callgate_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

const ORG_COLS: &str = "id, name, quota_seconds_remaining, max_concurrent_calls, max_queued_calls, on_capacity, created_at";
const USER_COLS: &str = "id, org_id, email, name, active, created_at";
const KEY_COLS: &str =
    "id, org_id, user_id, name, key_prefix, scopes, active, created_at, last_used_at";

fn org_row(r: &Row<'_>) -> rusqlite::Result<Organization> {
    let on_capacity: String = r.get(5)?;
    Ok(Organization {
        id: r.get(0)?,
        name: r.get(1)?,
        quota_seconds_remaining: r.get(2)?,
        settings: OrgSettings {
            max_concurrent_calls: r.get(3)?,
            max_queued_calls: r.get(4)?,
            on_capacity: if on_capacity == "reject" {
                OnCapacity::Reject
            } else {
                OnCapacity::Queue
            },
        },
        created_at: from_ts(r.get(6)?),
    })
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        org_id: r.get(1)?,
        email: r.get(2)?,
        name: r.get(3)?,
        active: r.get(4)?,
        created_at: from_ts(r.get(5)?),
    })
}

fn key_row(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let scopes: String = r.get(5)?;
    Ok(ApiKey {
        id: r.get(0)?,
        org_id: r.get(1)?,
        user_id: r.get(2)?,
        name: r.get(3)?,
        key_prefix: r.get(4)?,
        scopes: parse_json(&scopes)?,
        active: r.get(6)?,
        created_at: from_ts(r.get(7)?),
        last_used_at: opt_ts(r.get(8)?),
    })
}

pub(crate) fn load_org(c: &Connection, id: OrgId) -> StoreResult<Organization> {
    c.prepare_cached(&format!(
        "SELECT {ORG_COLS} FROM organizations WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], org_row))
    .map_err(db_err)
}

/// An organisation as a write job sees it: less the quota charges its transaction still
/// holds back for the commit (`deferred`).
fn load_org_in_writer(
    c: &Connection,
    deferred: &crate::deferred::Deferred,
    id: OrgId,
) -> StoreResult<Organization> {
    let mut org = load_org(c, id)?;
    let pending = deferred.pending_charge(id);
    if let Some(q) = org.quota_seconds_remaining.as_mut() {
        *q -= pending;
    }
    Ok(org)
}

fn set_quota_in_writer(
    c: &Connection,
    deferred: &crate::deferred::Deferred,
    id: OrgId,
    seconds: Option<i64>,
) -> StoreResult<Organization> {
    // Calls that ended earlier in this transaction are charged only at its commit
    // (`deferred`), after this write; their seconds are added here so that the quota set is
    // what remains, as if they had been charged before it.
    let pending = deferred.pending_charge(id);
    let n = c
        .execute(
            "UPDATE organizations SET quota_seconds_remaining = ?2 + ?3 WHERE id = ?1",
            params![id, seconds, pending],
        )
        .map_err(db_err)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    load_org_in_writer(c, deferred, id)
}

fn load_user(c: &Connection, org: OrgId, id: UserId) -> StoreResult<User> {
    c.query_row(
        &format!("SELECT {USER_COLS} FROM users WHERE id = ?1 AND org_id = ?2"),
        params![id, org],
        user_row,
    )
    .map_err(db_err)
}

fn load_key(c: &Connection, id: ApiKeyId) -> StoreResult<ApiKey> {
    c.query_row(
        &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"),
        [id],
        key_row,
    )
    .map_err(db_err)
}

fn on_capacity_str(o: OnCapacity) -> &'static str {
    match o {
        OnCapacity::Queue => "queue",
        OnCapacity::Reject => "reject",
    }
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn is_empty(&self) -> StoreResult<bool> {
        // Readiness asks this: a store that refuses every write is not ready.
        self.writer.refusing()?;
        self.read(|c| {
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM organizations", [], |r| r.get(0))
                .map_err(db_err)?;
            Ok(n == 0)
        })
        .await
    }

    async fn create_org(&self, name: &str, now: Timestamp) -> StoreResult<Organization> {
        let name = name.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT INTO organizations (name, created_at) VALUES (?1, ?2)",
                params![name, ts(now)],
            )
            .map_err(db_err)?;
            load_org(c, c.last_insert_rowid())
        })
        .await
    }

    async fn list_orgs(&self) -> StoreResult<Vec<Organization>> {
        self.read(|c| {
            let mut st = c
                .prepare(&format!("SELECT {ORG_COLS} FROM organizations ORDER BY id"))
                .map_err(db_err)?;
            let rows = st.query_map([], org_row).map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn get_org(&self, id: OrgId) -> StoreResult<Organization> {
        self.read(move |c| load_org(c, id)).await
    }

    async fn update_org_settings(&self, id: OrgId, s: &OrgSettings) -> StoreResult<Organization> {
        let s = s.clone();
        let deferred = self.deferred.clone();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE organizations SET max_concurrent_calls = ?2, max_queued_calls = ?3,
                     on_capacity = ?4 WHERE id = ?1",
                    params![
                        id,
                        s.max_concurrent_calls,
                        s.max_queued_calls,
                        on_capacity_str(s.on_capacity)
                    ],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            load_org_in_writer(c, &deferred, id)
        })
        .await
    }

    async fn set_quota(&self, id: OrgId, seconds: Option<i64>) -> StoreResult<Organization> {
        let deferred = self.deferred.clone();
        self.write(move |c| set_quota_in_writer(c, &deferred, id, seconds))
            .await
    }

    async fn create_user(
        &self,
        org: OrgId,
        email: &str,
        name: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<User> {
        let email = email.to_owned();
        let name = name.map(str::to_owned);
        self.write(move |c| {
            load_org(c, org)?;
            c.execute(
                "INSERT INTO users (org_id, email, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![org, email, name, ts(now)],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("email_taken")
                } else {
                    db_err(e)
                }
            })?;
            load_user(c, org, c.last_insert_rowid())
        })
        .await
    }

    async fn get_user(&self, org: OrgId, id: UserId) -> StoreResult<User> {
        self.read(move |c| load_user(c, org, id)).await
    }

    async fn set_user_active(&self, org: OrgId, id: UserId, active: bool) -> StoreResult<User> {
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE users SET active = ?3 WHERE id = ?1 AND org_id = ?2",
                    params![id, org, active],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            load_user(c, org, id)
        })
        .await
    }

    async fn create_api_key(&self, key: NewApiKey, now: Timestamp) -> StoreResult<ApiKey> {
        let scopes = json_text(&key.scopes)?;
        self.write(move |c| {
            load_user(c, key.org_id, key.user_id)?;
            c.execute(
                "INSERT INTO api_keys (org_id, user_id, name, key_prefix, key_hash, scopes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    key.org_id,
                    key.user_id,
                    key.name,
                    key.key_prefix,
                    &key.key_hash[..],
                    scopes,
                    ts(now)
                ],
            )
            .map_err(db_err)?;
            load_key(c, c.last_insert_rowid())
        })
        .await
    }

    async fn find_api_key(&self, hash: &[u8; 32]) -> StoreResult<Option<ApiKey>> {
        let hash = *hash;
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE key_hash = ?1"),
                [&hash[..]],
                key_row,
            )
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn list_api_keys(&self, org: OrgId) -> StoreResult<Vec<ApiKey>> {
        self.read(move |c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {KEY_COLS} FROM api_keys WHERE org_id = ?1 ORDER BY id"
                ))
                .map_err(db_err)?;
            let rows = st.query_map([org], key_row).map_err(db_err)?;
            rows.collect::<Result<_, _>>().map_err(db_err)
        })
        .await
    }

    async fn set_api_key_active(
        &self,
        org: OrgId,
        id: ApiKeyId,
        active: bool,
    ) -> StoreResult<ApiKey> {
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE api_keys SET active = ?3 WHERE id = ?1 AND org_id = ?2",
                    params![id, org, active],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            load_key(c, id)
        })
        .await
    }

    async fn touch_api_keys(&self, used: Vec<(ApiKeyId, Timestamp)>) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut st = c
                .prepare_cached(
                    "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2)
                     WHERE id = ?1",
                )
                .map_err(db_err)?;
            for (id, at) in used {
                st.execute(params![id, ts(at)]).map_err(db_err)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Quota charges wait for the commit (`deferred`); a quota set in the same transaction
    /// must still come out as if every write had happened in its order.
    #[tokio::test]
    async fn a_quota_set_between_deferred_charges_keeps_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("callgate.db")).unwrap();
        let org = store
            .create_org("acme", Timestamp::UNIX_EPOCH)
            .await
            .unwrap()
            .id;
        let d = store.deferred.clone();
        // A call ends (30 s), the quota is set to 100, another call ends (12 s).
        let seen = store
            .write(move |c| {
                d.charge_quota(org, 30);
                let set = set_quota_in_writer(c, &d, org, Some(100))?;
                d.charge_quota(org, 12);
                let after = load_org_in_writer(c, &d, org)?;
                Ok((set.quota_seconds_remaining, after.quota_seconds_remaining))
            })
            .await
            .unwrap();
        assert_eq!(seen, (Some(100), Some(88)));
        assert_eq!(
            store.get_org(org).await.unwrap().quota_seconds_remaining,
            Some(88)
        );
        // No quota: charges leave it unset.
        let d = store.deferred.clone();
        store
            .write(move |c| {
                d.charge_quota(org, 5);
                set_quota_in_writer(c, &d, org, None)?;
                d.charge_quota(org, 7);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(
            store.get_org(org).await.unwrap().quota_seconds_remaining,
            None
        );
    }

    /// Readiness (`/readyz`) asks `is_empty`: after a failed flush of the WAL the store
    /// refuses every write, so it must not report ready.
    #[tokio::test]
    async fn a_store_whose_wal_flush_failed_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callgate.db");
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.is_empty().await.unwrap());
        let wal = dir.path().join("callgate.db-wal");
        // The WAL unlinked under SQLite: the writer's first flush cannot open it.
        let created = store
            .write(move |c| {
                let org = c
                    .execute(
                        "INSERT INTO organizations (name, created_at) VALUES ('acme', 0)",
                        [],
                    )
                    .map_err(db_err)?;
                std::fs::remove_file(&wal).map_err(|e| StoreError::Internal(e.to_string()))?;
                Ok(org)
            })
            .await;
        assert!(
            matches!(created, Err(StoreError::Unavailable(_))),
            "{created:?}"
        );
        let ready = store.is_empty().await;
        assert!(
            matches!(ready, Err(StoreError::Unavailable(_))),
            "{ready:?}"
        );
        let refused = store.create_org("other", Timestamp::UNIX_EPOCH).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
    }
}

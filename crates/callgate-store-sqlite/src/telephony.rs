//! Telephony configurations and their caller-ID numbers.

use crate::SqliteStore;
use crate::util::{db_err, from_ts, is_unique_violation, json_text, parse_json, ts};
use async_trait::async_trait;
use callgate_store::*;
use jiff::Timestamp;
use rusqlite::{Connection, Row, params};

const CONFIG_COLS: &str = "id, org_id, name, provider, credentials, credential_fields, is_default_outbound, calls_per_second, max_concurrent_calls, active, created_at";
const NUMBER_COLS: &str =
    "id, config_id, org_id, address, label, is_default_caller_id, is_active, created_at";

fn config_row(r: &Row<'_>) -> rusqlite::Result<TelephonyConfig> {
    let fields: String = r.get(5)?;
    Ok(TelephonyConfig {
        id: r.get(0)?,
        org_id: r.get(1)?,
        name: r.get(2)?,
        provider: r.get(3)?,
        credentials_sealed: r.get(4)?,
        credential_fields: parse_json(&fields)?,
        is_default_outbound: r.get(6)?,
        calls_per_second: r.get(7)?,
        max_concurrent_calls: r.get(8)?,
        active: r.get(9)?,
        created_at: from_ts(r.get(10)?),
    })
}

fn number_row(r: &Row<'_>) -> rusqlite::Result<PhoneNumber> {
    Ok(PhoneNumber {
        id: r.get(0)?,
        config_id: r.get(1)?,
        org_id: r.get(2)?,
        address: r.get(3)?,
        label: r.get(4)?,
        is_default_caller_id: r.get(5)?,
        is_active: r.get(6)?,
        created_at: from_ts(r.get(7)?),
    })
}

fn load_config(c: &Connection, org: OrgId, id: ConfigId) -> StoreResult<TelephonyConfig> {
    c.query_row(
        &format!(
            "SELECT {CONFIG_COLS} FROM telephony_configs
             WHERE id = ?1 AND org_id = ?2 AND deleted = 0"
        ),
        params![id, org],
        config_row,
    )
    .map_err(db_err)
}

fn load_numbers(c: &Connection, config: ConfigId) -> StoreResult<Vec<PhoneNumber>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {NUMBER_COLS} FROM phone_numbers WHERE config_id = ?1 ORDER BY id"
        ))
        .map_err(db_err)?;
    let rows = st.query_map([config], number_row).map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

fn load_number(c: &Connection, config: ConfigId, id: NumberId) -> StoreResult<PhoneNumber> {
    c.query_row(
        &format!("SELECT {NUMBER_COLS} FROM phone_numbers WHERE id = ?1 AND config_id = ?2"),
        params![id, config],
        number_row,
    )
    .map_err(db_err)
}

fn clear_default(c: &Connection, org: OrgId) -> StoreResult<()> {
    c.execute(
        "UPDATE telephony_configs SET is_default_outbound = 0 WHERE org_id = ?1",
        [org],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Only one default caller ID per configuration.
fn clear_default_caller_id(c: &Connection, config: ConfigId) -> StoreResult<()> {
    c.execute(
        "UPDATE phone_numbers SET is_default_caller_id = 0 WHERE config_id = ?1",
        [config],
    )
    .map_err(db_err)?;
    Ok(())
}

fn number_conflict(e: rusqlite::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict("phone_number_exists")
    } else {
        db_err(e)
    }
}

#[async_trait]
impl TelephonyStore for SqliteStore {
    async fn create_config(
        &self,
        new: NewTelephonyConfig,
        now: Timestamp,
    ) -> StoreResult<TelephonyConfig> {
        let fields = json_text(&new.credential_fields)?;
        self.write(move |c| {
            if new.is_default_outbound {
                clear_default(c, new.org_id)?;
            }
            c.execute(
                "INSERT INTO telephony_configs (org_id, name, provider, credentials,
                 credential_fields, is_default_outbound, calls_per_second, max_concurrent_calls,
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    new.org_id,
                    new.name,
                    new.provider,
                    new.credentials_sealed,
                    fields,
                    new.is_default_outbound,
                    new.calls_per_second,
                    new.max_concurrent_calls,
                    ts(now)
                ],
            )
            .map_err(db_err)?;
            load_config(c, new.org_id, c.last_insert_rowid())
        })
        .await
    }

    async fn list_configs(&self, org: OrgId) -> StoreResult<Vec<ConfigWithNumbers>> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {CONFIG_COLS} FROM telephony_configs
                     WHERE org_id = ?1 AND deleted = 0 ORDER BY id"
                ))
                .map_err(db_err)?;
            let configs: Vec<TelephonyConfig> = st
                .query_map([org], config_row)
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            configs
                .into_iter()
                .map(|config| {
                    let numbers = load_numbers(c, config.id)?;
                    Ok(ConfigWithNumbers { config, numbers })
                })
                .collect()
        })
        .await
    }

    async fn get_config(&self, org: OrgId, id: ConfigId) -> StoreResult<ConfigWithNumbers> {
        self.read(move |c| {
            let config = load_config(c, org, id)?;
            let numbers = load_numbers(c, id)?;
            Ok(ConfigWithNumbers { config, numbers })
        })
        .await
    }

    async fn get_config_any(&self, id: ConfigId) -> StoreResult<TelephonyConfig> {
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {CONFIG_COLS} FROM telephony_configs WHERE id = ?1"),
                [id],
                config_row,
            )
            .map_err(db_err)
        })
        .await
    }

    async fn update_config(
        &self,
        org: OrgId,
        id: ConfigId,
        u: TelephonyConfigUpdate,
    ) -> StoreResult<TelephonyConfig> {
        let fields = json_text(&u.credential_fields)?;
        self.write(move |c| {
            load_config(c, org, id)?;
            c.execute(
                "UPDATE telephony_configs SET name = ?2, credentials = ?3, credential_fields = ?4,
                 calls_per_second = ?5, max_concurrent_calls = ?6, active = ?7 WHERE id = ?1",
                params![
                    id,
                    u.name,
                    u.credentials_sealed,
                    fields,
                    u.calls_per_second,
                    u.max_concurrent_calls,
                    u.active
                ],
            )
            .map_err(db_err)?;
            load_config(c, org, id)
        })
        .await
    }

    async fn delete_config(&self, org: OrgId, id: ConfigId) -> StoreResult<()> {
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE telephony_configs SET deleted = 1, active = 0, is_default_outbound = 0
                     WHERE id = ?1 AND org_id = ?2 AND deleted = 0",
                    params![id, org],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }

    async fn set_default_outbound(&self, org: OrgId, id: ConfigId) -> StoreResult<TelephonyConfig> {
        self.write(move |c| {
            load_config(c, org, id)?;
            clear_default(c, org)?;
            c.execute(
                "UPDATE telephony_configs SET is_default_outbound = 1 WHERE id = ?1",
                [id],
            )
            .map_err(db_err)?;
            load_config(c, org, id)
        })
        .await
    }

    async fn add_number(
        &self,
        org: OrgId,
        config: ConfigId,
        f: PhoneNumberFields,
        now: Timestamp,
    ) -> StoreResult<PhoneNumber> {
        self.write(move |c| {
            load_config(c, org, config)?;
            if f.is_default_caller_id {
                clear_default_caller_id(c, config)?;
            }
            c.execute(
                "INSERT INTO phone_numbers (config_id, org_id, address, label,
                 is_default_caller_id, is_active, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    config,
                    org,
                    f.address,
                    f.label,
                    f.is_default_caller_id,
                    f.is_active,
                    ts(now)
                ],
            )
            .map_err(number_conflict)?;
            load_number(c, config, c.last_insert_rowid())
        })
        .await
    }

    async fn update_number(
        &self,
        org: OrgId,
        config: ConfigId,
        id: NumberId,
        f: PhoneNumberFields,
    ) -> StoreResult<PhoneNumber> {
        self.write(move |c| {
            load_config(c, org, config)?;
            load_number(c, config, id)?;
            if f.is_default_caller_id {
                clear_default_caller_id(c, config)?;
            }
            c.execute(
                "UPDATE phone_numbers SET address = ?2, label = ?3, is_default_caller_id = ?4,
                 is_active = ?5 WHERE id = ?1",
                params![id, f.address, f.label, f.is_default_caller_id, f.is_active],
            )
            .map_err(number_conflict)?;
            load_number(c, config, id)
        })
        .await
    }

    async fn delete_number(&self, org: OrgId, config: ConfigId, id: NumberId) -> StoreResult<()> {
        self.write(move |c| {
            load_config(c, org, config)?;
            let n = c
                .execute(
                    "DELETE FROM phone_numbers WHERE id = ?1 AND config_id = ?2",
                    params![id, config],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }
}

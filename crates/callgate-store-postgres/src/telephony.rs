//! Telephony configurations and their caller-ID numbers.

use crate::PgStore;
use crate::db::{exec, one_row, one_row_unique, rows};
use crate::util::{db_err, get, get_opt_u32, ts};
use async_trait::async_trait;
use callgate_store::*;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use tokio_postgres::Row;
use tokio_postgres::types::Json;

const CONFIG_COLS: &str = "id, org_id, name, provider, credentials, credential_fields, is_default_outbound, calls_per_second, max_concurrent_calls, active, created_at";
const NUMBER_COLS: &str =
    "id, config_id, org_id, address, label, is_default_caller_id, is_active, created_at";
const NUMBER_CONFLICT: &[(&str, &str)] =
    &[("phone_numbers_config_address_key", "phone_number_exists")];

fn config_row(r: &Row) -> StoreResult<TelephonyConfig> {
    let Json(credential_fields) = get(r, 5)?;
    Ok(TelephonyConfig {
        id: get(r, 0)?,
        org_id: get(r, 1)?,
        name: get(r, 2)?,
        provider: get(r, 3)?,
        credentials_sealed: get(r, 4)?,
        credential_fields,
        is_default_outbound: get(r, 6)?,
        calls_per_second: get(r, 7)?,
        max_concurrent_calls: get_opt_u32(r, 8)?,
        active: get(r, 9)?,
        created_at: get(r, 10)?,
    })
}

fn number_row(r: &Row) -> StoreResult<PhoneNumber> {
    Ok(PhoneNumber {
        id: get(r, 0)?,
        config_id: get(r, 1)?,
        org_id: get(r, 2)?,
        address: get(r, 3)?,
        label: get(r, 4)?,
        is_default_caller_id: get(r, 5)?,
        is_active: get(r, 6)?,
        created_at: get(r, 7)?,
    })
}

/// A live (not deleted) configuration of the organisation. With `lock`, its row stays locked
/// until commit, which serialises edits of its numbers' default caller ID across nodes.
async fn load_config<C: GenericClient>(
    c: &C,
    org: OrgId,
    id: ConfigId,
    lock: bool,
) -> StoreResult<TelephonyConfig> {
    let sql = format!(
        "SELECT {CONFIG_COLS} FROM telephony_configs
         WHERE id = $1 AND org_id = $2 AND NOT deleted{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    config_row(&one_row(c, &sql, &[&id, &org]).await?)
}

async fn load_numbers<C: GenericClient>(c: &C, config: ConfigId) -> StoreResult<Vec<PhoneNumber>> {
    let sql = format!("SELECT {NUMBER_COLS} FROM phone_numbers WHERE config_id = $1 ORDER BY id");
    rows(c, &sql, &[&config])
        .await?
        .iter()
        .map(number_row)
        .collect()
}

/// Locks the organisation row, so two nodes switching the default outbound configuration at
/// once cannot both leave theirs set: the second waits, then clears the first's.
async fn lock_org<C: GenericClient>(c: &C, org: OrgId) -> StoreResult<()> {
    // A missing organisation locks nothing; the insert or lookup after it reports that.
    exec(
        c,
        "SELECT id FROM organizations WHERE id = $1 FOR UPDATE",
        &[&org],
    )
    .await
    .map(|_| ())
}

async fn clear_default<C: GenericClient>(c: &C, org: OrgId) -> StoreResult<()> {
    exec(
        c,
        "UPDATE telephony_configs SET is_default_outbound = FALSE
         WHERE org_id = $1 AND is_default_outbound",
        &[&org],
    )
    .await
    .map(|_| ())
}

/// Only one default caller ID per configuration.
async fn clear_default_caller_id<C: GenericClient>(c: &C, config: ConfigId) -> StoreResult<()> {
    exec(
        c,
        "UPDATE phone_numbers SET is_default_caller_id = FALSE
         WHERE config_id = $1 AND is_default_caller_id",
        &[&config],
    )
    .await
    .map(|_| ())
}

#[async_trait]
impl TelephonyStore for PgStore {
    async fn create_config(
        &self,
        new: NewTelephonyConfig,
        now: Timestamp,
    ) -> StoreResult<TelephonyConfig> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        if new.is_default_outbound {
            lock_org(&tx, new.org_id).await?;
            clear_default(&tx, new.org_id).await?;
        }
        let sql = format!(
            "INSERT INTO telephony_configs (org_id, name, provider, credentials,
             credential_fields, is_default_outbound, calls_per_second, max_concurrent_calls,
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {CONFIG_COLS}"
        );
        let row = one_row(
            &tx,
            &sql,
            &[
                &new.org_id,
                &new.name,
                &new.provider,
                &new.credentials_sealed,
                &Json(&new.credential_fields),
                &new.is_default_outbound,
                &new.calls_per_second,
                &new.max_concurrent_calls.map(i64::from),
                &ts(now),
            ],
        )
        .await?;
        let config = config_row(&row)?;
        tx.commit().await.map_err(db_err)?;
        Ok(config)
    }

    async fn list_configs(&self, org: OrgId) -> StoreResult<Vec<ConfigWithNumbers>> {
        let c = self.client().await?;
        let sql = format!(
            "SELECT {CONFIG_COLS} FROM telephony_configs
             WHERE org_id = $1 AND NOT deleted ORDER BY id"
        );
        let configs = rows(&c, &sql, &[&org])
            .await?
            .iter()
            .map(config_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let mut out = Vec::with_capacity(configs.len());
        for config in configs {
            let numbers = load_numbers(&c, config.id).await?;
            out.push(ConfigWithNumbers { config, numbers });
        }
        Ok(out)
    }

    async fn get_config(&self, org: OrgId, id: ConfigId) -> StoreResult<ConfigWithNumbers> {
        let c = self.client().await?;
        let config = load_config(&c, org, id, false).await?;
        let numbers = load_numbers(&c, id).await?;
        Ok(ConfigWithNumbers { config, numbers })
    }

    async fn get_config_any(&self, id: ConfigId) -> StoreResult<TelephonyConfig> {
        let c = self.client().await?;
        let sql = format!("SELECT {CONFIG_COLS} FROM telephony_configs WHERE id = $1");
        config_row(&one_row(&c, &sql, &[&id]).await?)
    }

    async fn update_config(
        &self,
        org: OrgId,
        id: ConfigId,
        u: TelephonyConfigUpdate,
    ) -> StoreResult<TelephonyConfig> {
        let c = self.client().await?;
        let sql = format!(
            "UPDATE telephony_configs SET name = $3, credentials = $4, credential_fields = $5,
             calls_per_second = $6, max_concurrent_calls = $7, active = $8
             WHERE id = $1 AND org_id = $2 AND NOT deleted RETURNING {CONFIG_COLS}"
        );
        let row = one_row(
            &c,
            &sql,
            &[
                &id,
                &org,
                &u.name,
                &u.credentials_sealed,
                &Json(&u.credential_fields),
                &u.calls_per_second,
                &u.max_concurrent_calls.map(i64::from),
                &u.active,
            ],
        )
        .await?;
        config_row(&row)
    }

    async fn delete_config(&self, org: OrgId, id: ConfigId) -> StoreResult<()> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "UPDATE telephony_configs
             SET deleted = TRUE, active = FALSE, is_default_outbound = FALSE
             WHERE id = $1 AND org_id = $2 AND NOT deleted",
            &[&id, &org],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_default_outbound(&self, org: OrgId, id: ConfigId) -> StoreResult<TelephonyConfig> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        lock_org(&tx, org).await?;
        load_config(&tx, org, id, true).await?;
        clear_default(&tx, org).await?;
        let sql = format!(
            "UPDATE telephony_configs SET is_default_outbound = TRUE WHERE id = $1
             RETURNING {CONFIG_COLS}"
        );
        let config = config_row(&one_row(&tx, &sql, &[&id]).await?)?;
        tx.commit().await.map_err(db_err)?;
        Ok(config)
    }

    async fn add_number(
        &self,
        org: OrgId,
        config: ConfigId,
        f: PhoneNumberFields,
        now: Timestamp,
    ) -> StoreResult<PhoneNumber> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        load_config(&tx, org, config, true).await?;
        if f.is_default_caller_id {
            clear_default_caller_id(&tx, config).await?;
        }
        let sql = format!(
            "INSERT INTO phone_numbers (config_id, org_id, address, label, is_default_caller_id,
             is_active, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {NUMBER_COLS}"
        );
        let row = one_row_unique(
            &tx,
            &sql,
            &[
                &config,
                &org,
                &f.address,
                &f.label,
                &f.is_default_caller_id,
                &f.is_active,
                &ts(now),
            ],
            NUMBER_CONFLICT,
        )
        .await?;
        let number = number_row(&row)?;
        tx.commit().await.map_err(db_err)?;
        Ok(number)
    }

    async fn update_number(
        &self,
        org: OrgId,
        config: ConfigId,
        id: NumberId,
        f: PhoneNumberFields,
    ) -> StoreResult<PhoneNumber> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        load_config(&tx, org, config, true).await?;
        one_row(
            &tx,
            "SELECT id FROM phone_numbers WHERE id = $1 AND config_id = $2",
            &[&id, &config],
        )
        .await?;
        if f.is_default_caller_id {
            clear_default_caller_id(&tx, config).await?;
        }
        let sql = format!(
            "UPDATE phone_numbers SET address = $2, label = $3, is_default_caller_id = $4,
             is_active = $5 WHERE id = $1 RETURNING {NUMBER_COLS}"
        );
        let row = one_row_unique(
            &tx,
            &sql,
            &[
                &id,
                &f.address,
                &f.label,
                &f.is_default_caller_id,
                &f.is_active,
            ],
            NUMBER_CONFLICT,
        )
        .await?;
        let number = number_row(&row)?;
        tx.commit().await.map_err(db_err)?;
        Ok(number)
    }

    async fn delete_number(&self, org: OrgId, config: ConfigId, id: NumberId) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        load_config(&tx, org, config, true).await?;
        let n = exec(
            &tx,
            "DELETE FROM phone_numbers WHERE id = $1 AND config_id = $2",
            &[&id, &config],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }
}

//! The clustered store: PostgreSQL through a `deadpool-postgres` connection pool.
//!
//! Every trait method is one transaction on one pooled connection. Work that several nodes
//! share is made safe by the database itself: the queue is claimed with
//! `FOR UPDATE SKIP LOCKED`, lifecycle updates lock their run row, trigger paths are claimed
//! with `INSERT … ON CONFLICT DO NOTHING`, and unique violations are mapped by constraint name.
//! Observable behaviour matches the SQLite backend; the shared contract suite
//! (`callgate_store::contract`) checks both.
#![forbid(unsafe_code)]

mod agents;
mod claims;
mod db;
mod ids;
mod inserts;
mod lifecycle;
mod nodes;
mod notify;
mod run_rows;
mod runs;
mod schema;
pub mod scratch;
mod telephony;
mod tenants;
mod util;

use callgate_domain::lifecycle::RunStatus;
use callgate_store::{AppliedUpdate, StoreError, StoreResult};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

/// How the store uses its server.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Most connections kept open at once.
    pub pool_size: usize,
    /// How long a request waits for a connection, opening one (unless the URL sets
    /// `connect_timeout`) or waiting for a free one, before it fails as `Unavailable` (503).
    /// While the server is down, this bounds how long a request hangs.
    pub timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            timeout: Duration::from_secs(10),
        }
    }
}

/// PostgreSQL implementation of `callgate_store::Store`.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Connection settings, kept for the notification listener's own connection.
    config: tokio_postgres::Config,
    /// Work hints to the other nodes, sent after the commits they announce.
    notifier: notify::Notifier,
    /// New runs written in shared batches, one commit each.
    inserter: inserts::RunInserter,
    /// Run ids for the triggers waiting at once, one `nextval` round trip each batch.
    run_ids: ids::RunIds,
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`), applies pending
    /// migrations and keeps up to `pool_size` connections. An unreachable server, a missing
    /// database or refused credentials are `Unavailable` with the target in the message.
    pub async fn connect(url: &str, pool_size: usize) -> StoreResult<Self> {
        Self::connect_with(
            url,
            &PgOptions {
                pool_size,
                ..PgOptions::default()
            },
        )
        .await
    }

    /// `connect` with every option spelled out.
    pub async fn connect_with(url: &str, options: &PgOptions) -> StoreResult<Self> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.timeout);
        }
        let connect_timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(options.timeout);
        let target = describe(&config);
        let unreachable = |e: tokio_postgres::Error| {
            let cause = match util::db_err(e) {
                StoreError::Unavailable(m) | StoreError::Internal(m) => m,
                other => other.to_string(),
            };
            StoreError::Unavailable(format!("cannot connect to PostgreSQL at {target}: {cause}"))
        };
        // Migrate on a connection of its own, outside the pool: its advisory lock is released
        // when the connection closes, whatever happens. The driver's `connect_timeout` covers
        // only the TCP connect; a server that accepts and never answers needs the outer bound.
        let (mut client, connection) = tokio::time::timeout(connect_timeout, config.connect(NoTls))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "cannot connect to PostgreSQL at {target}: no answer within \
                         {connect_timeout:?}"
                ))
            })?
            .map_err(unreachable)?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "migration connection ended");
            }
        });
        let migrated = schema::migrate(&mut client).await;
        drop(client);
        // The driver task ends once the client is gone; a join error only means it panicked.
        let _ = driver.await;
        migrated?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // A connection the server closed reports itself closed; no probe query needed.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(options.timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot build the connection pool: {e}")))?;
        let notifier = notify::Notifier::start(pool.clone());
        let inserter = inserts::RunInserter::start(pool.clone());
        let run_ids = ids::RunIds::start(pool.clone());
        Ok(Self {
            pool,
            config,
            notifier,
            inserter,
            run_ids,
        })
    }

    /// A committed lifecycle update that ended a live run freed a slot of its organisation and
    /// configuration: the other nodes' queued runs may have been waiting for it.
    fn capacity_freed(&self, a: &AppliedUpdate) {
        if a.changed && a.after == RunStatus::Ended && a.before.is_live() {
            self.notifier.work_available(a.config_id, a.org_id);
        }
    }

    /// A pooled connection; none to be had is `Unavailable`.
    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(util::pool_err)
    }
}

/// `host:port/database` for messages, never the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// For this crate's own tests: a store on a fresh scratch database, or `None` (and a line
/// saying the test was skipped) when `CALLGATE_TEST_POSTGRES_URL` names no server.
#[cfg(test)]
async fn scratch_store() -> Option<(scratch::ScratchDatabase, PgStore)> {
    let Some(admin) = std::env::var("CALLGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("SKIPPED: set CALLGATE_TEST_POSTGRES_URL to run the PostgreSQL tests");
        return None;
    };
    let db = scratch::ScratchDatabase::create(&admin)
        .await
        .expect("scratch database");
    let store = PgStore::connect(db.url(), 4).await.expect("connect");
    Some((db, store))
}

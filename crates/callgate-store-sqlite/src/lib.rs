//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go to a single writer thread that runs the jobs waiting for it in one transaction,
//! commits it and flushes the WAL (group commit): a job that may fail after writing runs
//! inside its own savepoint, so it rolls back alone, and every caller is answered only after
//! the shared `COMMIT` is on disk (see `conn::writer_loop`). Reads run on a small pool of
//! connections on the blocking thread pool.
#![forbid(unsafe_code)]

mod agents;
mod claims;
mod conn;
mod deferred;
mod event_text;
mod runs;
mod schema;
mod telephony;
mod tenants;
mod util;

use callgate_store::{StoreError, StoreResult};
use conn::{Readers, Writer};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

/// SQLite implementation of `callgate_store::Store`.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Writer>,
    readers: Arc<Readers>,
    /// Last run id handed out. One process owns an SQLite file, so a counter seeded from the
    /// table is enough.
    last_run_id: Arc<AtomicI64>,
    claims: Arc<claims::Claims>,
    deferred: Arc<deferred::Deferred>,
}

/// What the writer tells the state kept beside the database (`conn::TxnHooks`).
struct Beside {
    claims: Arc<claims::Claims>,
    deferred: Arc<deferred::Deferred>,
}

impl conn::TxnHooks for Beside {
    fn job_kept(&self) {
        self.deferred.job_kept();
    }

    fn rolled_back(&self, whole: bool) {
        self.claims.forget();
        self.deferred.rolled_back(whole);
    }

    fn before_commit(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        self.deferred.write(conn)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut conn = conn::open(path)?;
        schema::migrate(&mut conn)?;
        let last: i64 = conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM runs", [], |r| r.get(0))
            .map_err(util::db_err)?;
        let claims = Arc::new(claims::Claims::default());
        let deferred = Arc::new(deferred::Deferred::default());
        let beside = Beside {
            claims: claims.clone(),
            deferred: deferred.clone(),
        };
        let writer = Writer::start(conn, path.to_path_buf(), Box::new(beside))?;
        let readers = Readers::new(path.to_path_buf());
        Ok(Self {
            writer: Arc::new(writer),
            readers: Arc::new(readers),
            last_run_id: Arc::new(AtomicI64::new(last)),
            claims,
            deferred,
        })
    }

    /// Runs `f` in the next group-commit transaction, inside its own savepoint.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&conn::WriteConn<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.writer.submit(true, f).await
    }

    /// Like `write`, without a savepoint, for hot jobs that only fail before their first write
    /// (the writer checks, and rolls the whole batch back if one breaks that promise).
    async fn write_fast<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&conn::WriteConn<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.writer.submit(false, f).await
    }

    /// Runs `f` on a pooled read connection.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> StoreResult<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.with(f))
            .await
            .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }
}

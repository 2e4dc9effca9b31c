//! The embedded store: one SQLite file in WAL mode.
//!
//! Writes go to a single writer thread that commits whatever has arrived as one transaction
//! (group commit): each job runs inside its own savepoint, so a failing job rolls back alone,
//! and every caller is answered only after the shared `COMMIT` (with `synchronous=FULL`) is on
//! disk. Reads run on a small pool of connections on the blocking thread pool.
#![forbid(unsafe_code)]

mod agents;
mod conn;
mod runs;
mod schema;
mod telephony;
mod tenants;
mod util;

use callgate_store::{StoreError, StoreResult};
use conn::{Readers, Writer};
use std::path::Path;
use std::sync::Arc;

/// SQLite implementation of `callgate_store::Store`.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Writer>,
    readers: Arc<Readers>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let mut conn = conn::open(path)?;
        schema::migrate(&mut conn)?;
        let writer = Writer::start(conn)?;
        let readers = Readers::new(path.to_path_buf());
        Ok(Self {
            writer: Arc::new(writer),
            readers: Arc::new(readers),
        })
    }

    /// Runs `f` in the next group-commit transaction.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.submit(f).await
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

//! Connections: the group-commit writer thread and the read pool.

use callgate_store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Most jobs folded into one transaction; bounds the latency a large burst adds to its head.
const MAX_BATCH: usize = 1024;
/// Read connections kept open between uses.
const MAX_IDLE_READERS: usize = 8;

pub fn open(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -16000;",
    )
    .map_err(crate::util::db_err)?;
    Ok(conn)
}

/// A write job: runs inside the batch transaction, answers after the commit.
trait Job: Send {
    /// Runs the work; returns false when it failed (its savepoint is then rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Whether the job needs a savepoint of its own: jobs that can fail after writing do.
    /// Savepoints are not free (SQLite copies every page a savepoint touches into a
    /// sub-journal), so the hot jobs are written to fail only before their first write.
    fn savepoint(&self) -> bool;
    /// Delivers the result, or `err` when the shared commit failed.
    fn finish(self: Box<Self>, err: Option<StoreError>);
}

struct TypedJob<T, F> {
    savepoint: bool,
    work: Option<F>,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T: Send, F: FnOnce(&Connection) -> StoreResult<T> + Send> Job for TypedJob<T, F> {
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn savepoint(&self) -> bool {
        self.savepoint
    }

    fn finish(self: Box<Self>, err: Option<StoreError>) {
        let result = match (err, self.result) {
            // A failed job's own error wins over a commit error: it wrote nothing anyway.
            (_, Some(Err(e))) => Err(e),
            (Some(e), _) => Err(e),
            (None, Some(r)) => r,
            (None, None) => Err(StoreError::Internal("write job did not run".into())),
        };
        // The caller may have gone away (request cancelled); the write stands regardless.
        let _ = self.reply.send(result);
    }
}

pub struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    pub fn start(conn: Connection, path: PathBuf) -> StoreResult<Self> {
        // Checkpoints copy WAL pages back into the database file; done on the commit path they
        // stall every writer behind one unlucky commit, so a helper thread does them instead.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(crate::util::db_err)?;
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&path))
            .map_err(|e| StoreError::Internal(format!("cannot start checkpoint thread: {e}")))?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Internal(format!("cannot start writer thread: {e}")))?;
        Ok(Self { tx })
    }

    pub async fn submit<T, F>(&self, savepoint: bool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = TypedJob {
            savepoint,
            work: Some(f),
            result: None,
            reply,
        };
        self.tx
            .send(Box::new(job))
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?
    }
}

/// Passive checkpoints never block the writer; they copy what no reader still needs.
fn checkpoint_loop(path: &Path) {
    let Ok(conn) = open(path) else {
        tracing::error!("checkpoint thread cannot open the database; the WAL will grow");
        return;
    };
    let _ = conn.execute_batch("PRAGMA cache_size = -500;");
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let err = run_batch(&conn, &mut batch).err();
        for job in batch.drain(..) {
            job.finish(err.as_ref().map(clone_err));
        }
    }
}

fn clone_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Conflict(c) => StoreError::Conflict(c),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Internal(m) => StoreError::Internal(m.clone()),
    }
}

/// Runs a prepared (cached) statement that takes no parameters and returns no rows.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run_batch(conn: &Connection, batch: &mut [Box<dyn Job>]) -> StoreResult<()> {
    exec(conn, "BEGIN IMMEDIATE").map_err(crate::util::db_err)?;
    let abort = |e: rusqlite::Error| {
        let _ = conn.execute_batch("ROLLBACK");
        crate::util::db_err(e)
    };
    // One job alone needs no savepoint: if it fails the whole transaction is rolled back.
    let single = batch.len() == 1;
    for job in batch.iter_mut() {
        if !single && !job.savepoint() {
            let before = conn.total_changes();
            if !job.run(conn) && conn.total_changes() != before {
                // Promised to fail only before writing, yet wrote: nothing of this batch may
                // be committed half-done, so every job in it fails and its caller retries.
                let _ = conn.execute_batch("ROLLBACK");
                return Err(StoreError::Unavailable(
                    "a write failed part-way; its transaction was rolled back".into(),
                ));
            }
            continue;
        }
        if single {
            if !job.run(conn) {
                exec(conn, "ROLLBACK").map_err(crate::util::db_err)?;
                return Ok(());
            }
            continue;
        }
        exec(conn, "SAVEPOINT job").map_err(abort)?;
        if job.run(conn) {
            exec(conn, "RELEASE job").map_err(abort)?;
        } else {
            exec(conn, "ROLLBACK TO job").map_err(abort)?;
            exec(conn, "RELEASE job").map_err(abort)?;
        }
    }
    exec(conn, "COMMIT").map_err(abort)?;
    Ok(())
}

pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = open(&self.path)?;
                // Every connection has its own page cache; readers keep a small one so memory
                // stays bounded however many are open (the writer's is the large one).
                c.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -2000;")
                    .map_err(crate::util::db_err)?;
                c
            }
        };
        let result = f(&conn);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }
}

//! Connections: the group-commit writer thread and the read pool.

use callgate_store::{StoreError, StoreResult};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
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
    // The writer alone runs a few dozen distinct statements; with rusqlite's default of 16
    // cached, the least recent were parsed again on every batch.
    conn.set_prepared_statement_cache_capacity(64);
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
    /// `on_rollback` runs on the writer thread whenever work was rolled back (a failed batch
    /// or a job's savepoint), for state kept beside the database (see `claims::Claims`).
    pub fn start(
        conn: Connection,
        path: PathBuf,
        on_rollback: Box<dyn Fn() + Send>,
    ) -> StoreResult<Self> {
        // Checkpoints copy WAL pages back into the database file; done on the commit path they
        // stall every writer behind one unlucky commit, so a helper thread does them instead.
        // The writer's commits do not wait for the disk: the syncer thread flushes the WAL
        // after them and only then answers (see `sync_loop`). Its statement journals stay in
        // memory (temp_store) instead of temporary files.
        conn.execute_batch(
            "PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA synchronous = NORMAL;
             PRAGMA temp_store = MEMORY;",
        )
        .map_err(crate::util::db_err)?;
        let wal = Arc::new(WalProgress::default());
        let checkpointer = wal.clone();
        let ckpt_path = path.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&ckpt_path, &checkpointer))
            .map_err(|e| StoreError::Internal(format!("cannot start checkpoint thread: {e}")))?;
        let (synced_tx, synced_rx) = mpsc::channel::<Committed>();
        let mut wal_path = path.into_os_string();
        wal_path.push("-wal");
        std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || sync_loop(PathBuf::from(wal_path), synced_rx))
            .map_err(|e| StoreError::Internal(format!("cannot start sync thread: {e}")))?;
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, &wal, &synced_tx, on_rollback.as_ref()))
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

/// WAL frames above which the log should start over from its beginning (~8 MiB).
const RESTART_FRAMES: i64 = 2048;
/// How far the background checkpoint may trail for the writer to finish the job itself.
const CATCH_UP_FRAMES: i64 = 512;

/// What the background checkpoint last saw, for the writer's decision to finish one.
#[derive(Default)]
struct WalProgress {
    /// Frames in the WAL.
    frames: AtomicI64,
    /// Of those, frames not yet copied into the database file.
    behind: AtomicI64,
}

/// Runs a checkpoint; answers (frames in the WAL, frames copied), or None when another
/// checkpoint was running.
fn checkpoint(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    let (busy, frames, copied): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok((busy == 0).then_some((frames, copied)))
}

/// Passive checkpoints never block the writer; they copy what no reader still needs.
///
/// Under a steady write load they never catch up completely (frames keep arriving while one
/// runs), and SQLite starts the log over only once every frame is copied; a log that never
/// restarts grows without end and every commit writes into fresh, uncached file pages. So this
/// thread copies the bulk often, and the writer copies the last few frames between two batches
/// (see `writer_loop`), after which the next commit starts the log over.
fn checkpoint_loop(path: &Path, wal: &WalProgress) {
    let Ok(conn) = open(path) else {
        tracing::error!("checkpoint thread cannot open the database; the WAL will grow");
        return;
    };
    let _ = conn.execute_batch("PRAGMA cache_size = -500;");
    loop {
        match checkpoint(&conn) {
            Ok(Some((frames, copied))) => {
                wal.frames.store(frames, Ordering::Relaxed);
                wal.behind.store(frames - copied, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
        let busy = wal.frames.load(Ordering::Relaxed) >= RESTART_FRAMES;
        std::thread::sleep(std::time::Duration::from_millis(if busy {
            20
        } else {
            500
        }));
    }
}

/// A committed batch waiting for its WAL frames to reach the disk.
struct Committed {
    jobs: Vec<Box<dyn Job>>,
    /// Whether the transaction changed anything (else there is nothing to flush).
    wrote: bool,
}

fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Box<dyn Job>>,
    wal: &WalProgress,
    synced: &mpsc::Sender<Committed>,
    on_rollback: &dyn Fn(),
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let before = conn.total_changes();
        match run_batch(&conn, &mut batch, on_rollback) {
            Ok(()) => {
                let jobs = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
                let wrote = conn.total_changes() != before;
                if let Err(mpsc::SendError(c)) = synced.send(Committed { jobs, wrote }) {
                    // The sync thread is gone: nobody can vouch for durability any more.
                    fail_all(c.jobs, "the WAL sync thread stopped");
                }
            }
            Err(e) => {
                on_rollback();
                for job in batch.drain(..) {
                    job.finish(Some(clone_err(&e)));
                }
            }
        }
        if wal.frames.load(Ordering::Relaxed) >= RESTART_FRAMES
            && wal.behind.load(Ordering::Relaxed) <= CATCH_UP_FRAMES
        {
            // Only the few frames since the background pass are left to copy.
            match checkpoint(&conn) {
                Ok(Some((frames, copied))) if frames == copied => {
                    wal.frames.store(0, Ordering::Relaxed);
                    wal.behind.store(0, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            }
        }
    }
}

fn fail_all(jobs: Vec<Box<dyn Job>>, why: &str) {
    for job in jobs {
        job.finish(Some(StoreError::Unavailable(why.into())));
    }
}

/// Makes committed batches durable, then answers their callers.
///
/// The writer commits with `synchronous=NORMAL`: SQLite writes the WAL frames but does not wait
/// for the disk. This thread then flushes the WAL file (`fdatasync`, which covers every frame
/// written before it) and only then delivers the results, so no caller hears of a write before
/// it would survive a power cut, as with `synchronous=FULL`; but the writer goes on with the
/// next batch while the disk works, and one flush covers every batch committed meanwhile.
/// Everything that acts outside the database (a dial, an answer to a trigger) waits for such an
/// answer; only reads may see a commit up to one flush early.
fn sync_loop(wal_path: PathBuf, rx: mpsc::Receiver<Committed>) {
    let mut file: Option<std::fs::File> = None;
    let mut pending: Vec<Committed> = Vec::new();
    while let Ok(first) = rx.recv() {
        pending.push(first);
        while let Ok(more) = rx.try_recv() {
            pending.push(more);
        }
        let result = if pending.iter().any(|c| c.wrote) {
            sync_wal(&wal_path, &mut file)
        } else {
            Ok(())
        };
        for c in pending.drain(..) {
            match &result {
                Ok(()) => c.jobs.into_iter().for_each(|j| j.finish(None)),
                Err(e) => {
                    tracing::error!(error = %e, "flushing the WAL failed; writes are not confirmed");
                    fail_all(c.jobs, "the database file could not be flushed to disk");
                }
            }
        }
    }
}

/// `fdatasync` of the WAL file. A transaction that wrote has created the file, and SQLite keeps
/// it (same inode: a restart rewrites it from the top, a size limit truncates it) for as long as
/// the writer's connection is open.
fn sync_wal(path: &Path, file: &mut Option<std::fs::File>) -> std::io::Result<()> {
    if file.is_none() {
        *file = Some(std::fs::File::open(path)?);
    }
    match file {
        Some(f) => f.sync_data(),
        None => Ok(()),
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

/// Runs the batch in one transaction. A failed job may have changed state kept beside the
/// database before failing, so every failure calls `on_rollback`.
fn run_batch(
    conn: &Connection,
    batch: &mut [Box<dyn Job>],
    on_rollback: &dyn Fn(),
) -> StoreResult<()> {
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
            if !job.run(conn) {
                on_rollback();
                if conn.total_changes() != before {
                    // Promised to fail only before writing, yet wrote: nothing of this batch
                    // may be committed half-done, so every job in it fails and its caller
                    // retries.
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(StoreError::Unavailable(
                        "a write failed part-way; its transaction was rolled back".into(),
                    ));
                }
            }
            continue;
        }
        if single {
            if !job.run(conn) {
                on_rollback();
                exec(conn, "ROLLBACK").map_err(crate::util::db_err)?;
                return Ok(());
            }
            continue;
        }
        exec(conn, "SAVEPOINT job").map_err(abort)?;
        if job.run(conn) {
            exec(conn, "RELEASE job").map_err(abort)?;
        } else {
            on_rollback();
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

//! Connections: the group-commit writer thread and the read pool.

use callgate_store::{StoreError, StoreResult};
use rusqlite::{Connection, Params, Statement};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::sync::oneshot;

/// Most jobs folded into one transaction; bounds the latency a large burst adds to its head.
const MAX_BATCH: usize = 1024;
/// Read connections kept open between uses (each opened anew costs more than a small read).
const MAX_IDLE_READERS: usize = 16;

pub fn open(path: &Path) -> StoreResult<Connection> {
    // The VFS that writes a commit's WAL frames in one call (only the writer's connection
    // writes any; the others read through it unchanged).
    let vfs = callgate_sqlite_vfs::register().map_err(|rc| {
        StoreError::Internal(format!("cannot register the SQLite WAL VFS (code {rc})"))
    })?;
    let conn = Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), vfs)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
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

/// The writer's connection as write jobs see it: the connection itself, and the statements
/// of the hot jobs, prepared once for the writer's whole life. `prepare_cached` hashes and
/// copies the whole SQL text on every use and hashes it again when the statement goes back.
pub struct WriteConn<'c> {
    conn: &'c Connection,
    held: RefCell<Vec<(&'static str, Statement<'c>)>>,
}

impl<'c> WriteConn<'c> {
    fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            held: RefCell::new(Vec::new()),
        }
    }

    /// Runs `f` on the held statement of `sql`, preparing it on first use.
    pub fn with_held<T>(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut Statement<'c>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut held = self.held.borrow_mut();
        let i = match held.iter().position(|(s, _)| *s == sql) {
            Some(i) => i,
            None => {
                held.push((sql, self.conn.prepare(sql)?));
                held.len() - 1
            }
        };
        f(&mut held[i].1)
    }

    /// Executes `sql` through its held statement.
    pub fn execute_held(&self, sql: &'static str, params: impl Params) -> rusqlite::Result<usize> {
        self.with_held(sql, |st| st.execute(params))
    }
}

impl std::ops::Deref for WriteConn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// State the store keeps beside the database that write jobs change (`claims::Claims`,
/// `deferred::Deferred`): told by the writer how each job and transaction ended.
pub trait TxnHooks: Send {
    /// The job that just ran succeeded; its writes stand for as long as the transaction.
    fn job_kept(&self);
    /// Work was rolled back: the job that just ran (its savepoint, or a job that failed before
    /// writing), and with `whole` the whole open transaction.
    fn rolled_back(&self, whole: bool);
    /// Runs inside the transaction just before its `COMMIT`; an error rolls it back whole.
    fn before_commit(&self, conn: &Connection) -> rusqlite::Result<()>;
}

/// A write job: runs inside the batch transaction, answers after the commit.
trait Job: Send {
    /// Runs the work; returns false when it failed (its savepoint is then rolled back).
    fn run(&mut self, conn: &WriteConn<'_>) -> bool;
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

impl<T: Send, F: FnOnce(&WriteConn<'_>) -> StoreResult<T> + Send> Job for TypedJob<T, F> {
    fn run(&mut self, conn: &WriteConn<'_>) -> bool {
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

/// The writer thread's one sender: when the store drops it, the thread still receives every
/// job sent before, commits them, and then stops.
pub struct Writer {
    tx: mpsc::Sender<Box<dyn Job>>,
    /// Set for good once a flush of the WAL has failed (see `writer_loop`).
    failed: Arc<AtomicBool>,
}

/// Why every write is refused after a failed flush of the WAL.
const WRITES_STOPPED: &str = "the database could not be flushed to disk earlier; no write is accepted until callgate restarts";

impl Writer {
    /// `beside` hears, on the writer thread, how each job and transaction ended, for state
    /// kept beside the database (see `TxnHooks`).
    pub fn start(conn: Connection, path: PathBuf, beside: Box<dyn TxnHooks>) -> StoreResult<Self> {
        Self::start_threads(conn, path, beside, true)
    }

    /// `start`; without `background_checkpoints`, the writer alone copies the WAL back, once it
    /// reaches `FORCE_FRAMES` (what a background thread that never gets the CPU leaves it).
    fn start_threads(
        conn: Connection,
        path: PathBuf,
        beside: Box<dyn TxnHooks>,
        background_checkpoints: bool,
    ) -> StoreResult<Self> {
        // Checkpoints copy WAL pages back into the database file; done on the commit path they
        // stall every writer behind one unlucky commit, so a helper thread does them instead.
        // The writer flushes the WAL itself after each commit and only then answers (see
        // `writer_loop`), so SQLite's own commit need not sync. Its statement journals stay in
        // memory (temp_store) instead of temporary files. Its page cache is kept to ~1 000
        // pages: a b-tree split can renumber pages through the lock-byte page's number, and the
        // next commit then walks the whole cache to drop pages past the end of the file (a
        // few hundred hot pages serve the writes; 4 000 cost ~100 µs per commit).
        conn.execute_batch(
            "PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA synchronous = NORMAL;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -4000;",
        )
        .map_err(crate::util::db_err)?;
        // After the pragma: `wal_autocheckpoint` installs (or, at 0, removes) a WAL hook too.
        conn.wal_hook(Some(note_wal_frames));
        let wal = Arc::new(WalProgress::default());
        if background_checkpoints {
            let checkpointer = wal.clone();
            let ckpt_path = path.clone();
            std::thread::Builder::new()
                .name("sqlite-checkpoint".into())
                .spawn(move || checkpoint_loop(&ckpt_path, &checkpointer))
                .map_err(|e| {
                    StoreError::Internal(format!("cannot start checkpoint thread: {e}"))
                })?;
        }
        let (tx, rx) = mpsc::channel::<Box<dyn Job>>();
        let mut wal_path = path.into_os_string();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, &wal, &wal_path, beside.as_ref(), &flag))
            .map_err(|e| StoreError::Internal(format!("cannot start writer thread: {e}")))?;
        Ok(Self { tx, failed })
    }

    /// Whether a flush of the WAL has failed: from then on every write is refused.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// The error every write gets once a flush of the WAL has failed.
    pub fn refusing(&self) -> StoreResult<()> {
        if self.failed() {
            return Err(StoreError::Unavailable(WRITES_STOPPED.into()));
        }
        Ok(())
    }

    pub async fn submit<T, F>(&self, savepoint: bool, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteConn<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job = TypedJob {
            savepoint,
            work: Some(f),
            result: None,
            reply,
        };
        self.refusing()?;
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
/// Pause between background checkpoint passes while the WAL grows, and while it does not.
const BUSY_PASS: std::time::Duration = std::time::Duration::from_millis(50);
const IDLE_PASS: std::time::Duration = std::time::Duration::from_millis(500);

/// WAL frames at which the writer copies everything itself, however far the background
/// checkpoint trails (~32 MiB, half the `journal_size_limit`). Under a normal load the
/// background passes keep the log near `RESTART_FRAMES`; this bounds it when they cannot keep
/// up: starved of CPU, or outrun by the writes. Copying that much stalls the writer for tens of
/// milliseconds, so it is a last resort.
const FORCE_FRAMES: i64 = 4 * RESTART_FRAMES;

thread_local! {
    /// Frames in the WAL after the last commit on this thread (set by `note_wal_frames`, which
    /// SQLite calls on the committing thread: the writer's).
    static WAL_FRAMES: Cell<i64> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: SQLite reports the log's length after each commit.
fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(i64::from(frames));
    Ok(())
}

/// What the background checkpoint last saw, for the writer's decision to finish one.
#[derive(Default)]
struct WalProgress {
    /// Frames in the WAL.
    frames: AtomicI64,
    /// Of those, frames not yet copied into the database file.
    behind: AtomicI64,
    /// Held while a checkpoint runs, so that a writer that must finish one waits for the
    /// background pass instead of finding SQLite's checkpoint lock taken.
    checkpointing: Mutex<()>,
    /// The background thread, and whether it is in its long idle pause: writes that start
    /// after a quiet spell wake it, or up to `IDLE_PASS` of them (~6 000 frames at full
    /// speed) would pile up before its first pass.
    thread: OnceLock<std::thread::Thread>,
    idle: AtomicBool,
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
/// (see `finish_checkpoint`), after which the next commit starts the log over.
// Out of line so that profiles name the thread's work (scripts/instructions.sh).
#[inline(never)]
fn checkpoint_loop(path: &Path, wal: &WalProgress) {
    let Ok(conn) = open(path) else {
        tracing::error!("checkpoint thread cannot open the database; the WAL will grow");
        return;
    };
    let _ = conn.execute_batch("PRAGMA cache_size = -500;");
    // SQLite flushes the database file only after a checkpoint that reaches the end of the
    // log, which under load is the writer's short catch-up: that flush then carried every page
    // this thread had copied since the last one (~30 ms with the writer, and every caller,
    // waiting). Flushing after each pass here leaves the writer only its own few pages.
    let db_file = std::fs::File::open(path).ok();
    let _ = wal.thread.set(std::thread::current());
    let mut copied_before = 0;
    loop {
        let mut copied_some = false;
        let pass = {
            let _running = wal
                .checkpointing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            checkpoint(&conn)
        };
        match pass {
            Ok(Some((frames, copied))) => {
                if copied != copied_before {
                    copied_some = true;
                    if let Some(Err(e)) = db_file.as_ref().map(std::fs::File::sync_data) {
                        tracing::warn!(error = %e, "flushing the database file failed");
                    }
                }
                // Published only now that the copies are on disk: the writer's catch-up starts
                // on this news, and begun during the flush above its own two syncs queued
                // behind it (12–16 ms with every caller waiting, twice a second at 1 500
                // triggers/s).
                wal.frames.store(frames, Ordering::Relaxed);
                wal.behind.store(frames - copied, Ordering::Relaxed);
                copied_before = copied;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
        let frames = wal.frames.load(Ordering::Relaxed);
        // While writes arrive, passes come often so that each copies and flushes a little: a
        // pass after a long sleep flushed megabytes at once, and the WAL flushes that answer
        // callers waited behind it on the disk.
        if copied_some || frames >= RESTART_FRAMES {
            std::thread::sleep(BUSY_PASS);
        } else {
            wal.idle.store(true, Ordering::Relaxed);
            std::thread::park_timeout(IDLE_PASS);
            wal.idle.store(false, Ordering::Relaxed);
        }
    }
}

/// The writer's open transaction: the jobs that ran in it, answered after its commit.
struct OpenTxn {
    jobs: Vec<Box<dyn Job>>,
    changes_at_begin: u64,
}

/// Runs the jobs that have arrived inside one transaction, commits it, flushes the WAL and
/// only then answers them; the jobs that arrived meanwhile make the next transaction.
///
/// No caller hears of a write before an `fdatasync` of the WAL that follows its commit. The
/// writer flushes itself: with the flush on a thread of its own, the writer ran the next jobs
/// while the disk worked, but every commit then cost two wake-ups (the flush thread's, and
/// the writer's when the flush was done), and on a VM a wake-up waits tens of microseconds
/// for a CPU; measured against that design, triggers/s rose 5–7 % at 64 connections
/// (docs/benchmarks.md, "Twentieth round"). The commits still group: what arrives during a
/// flush is committed together after it, and each commit writes every page it dirtied into
/// the WAL once however many jobs share it. A transaction holds at most `MAX_BATCH` jobs,
/// which bounds how much work one flush covers.
///
/// A flush that fails stops the writer for good (`failed` is set; every later job is refused
/// unrun), as PostgreSQL stops at a failed `fsync`. The kernel reports a lost write-back once
/// and then marks the pages clean, so a later flush of the same file can succeed over a hole
/// in the log; SQLite's recovery stops at the first frame that did not reach the disk, and
/// every write confirmed after it would be lost at the next start. The jobs of the failed
/// commit are answered with an error that says their outcome is unknown: the commit may or
/// may not have reached the disk.
// Out of line so that profiles name the thread's work (scripts/instructions.sh).
#[inline(never)]
fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<Box<dyn Job>>,
    wal: &WalProgress,
    wal_path: &Path,
    beside: &dyn TxnHooks,
    failed: &AtomicBool,
) {
    let held = WriteConn::new(&conn);
    let mut wal_file: Option<std::fs::File> = None;
    let mut open: Option<OpenTxn> = None;
    let mut incoming: Vec<Box<dyn Job>> = Vec::new();
    // `recv` hands out every job already sent before it reports the store gone.
    while let Ok(first) = rx.recv() {
        incoming.push(first);
        while incoming.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => incoming.push(job),
                Err(_) => break,
            }
        }
        for job in incoming.drain(..) {
            run_job(&held, &mut open, job, beside);
        }
        let Some(txn) = open.take() else { continue };
        let committed = beside
            .before_commit(&conn)
            .and_then(|()| exec(&conn, "COMMIT"));
        match committed {
            Ok(()) => {
                let wrote = conn.total_changes() != txn.changes_at_begin;
                let flushed = if wrote {
                    flush_wal(wal_path, &mut wal_file)
                } else {
                    Ok(())
                };
                match flushed {
                    Ok(()) => txn.jobs.into_iter().for_each(|j| j.finish(None)),
                    Err(e) => {
                        tracing::error!(
                            error = %e,
                            "flushing the WAL failed; this commit is unconfirmed and every later \
                             write is refused until callgate restarts"
                        );
                        failed.store(true, Ordering::Release);
                        fail_all(
                            txn.jobs,
                            "the database could not be flushed to disk; this write may or may \
                             not have been kept",
                        );
                        break;
                    }
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                beside.rolled_back(true);
                let e = crate::util::db_err(e);
                for job in txn.jobs {
                    job.finish(Some(clone_err(&e)));
                }
            }
        }
        finish_checkpoint(&conn, wal);
    }
    // Only a failed flush ends the loop with the store still open.
    for job in rx.iter() {
        job.finish(Some(StoreError::Unavailable(WRITES_STOPPED.into())));
    }
}

/// After a commit: wakes an idle background checkpoint once the log is long enough to copy;
/// copies the WAL's last frames when the background checkpoint has done the bulk (the next
/// commit then starts the log over), or all of them when the log has reached `FORCE_FRAMES`
/// anyway. The writer waits for that copy, and every caller with it, but otherwise a
/// background pass that ends more than `CATCH_UP_FRAMES` behind each time lets the log grow
/// without bound.
fn finish_checkpoint(conn: &Connection, wal: &WalProgress) {
    let frames = WAL_FRAMES.get();
    if frames >= RESTART_FRAMES
        && wal.idle.load(Ordering::Relaxed)
        && let Some(t) = wal.thread.get()
    {
        t.unpark();
    }
    let forced = frames >= FORCE_FRAMES;
    let caught_up = wal.frames.load(Ordering::Relaxed) >= RESTART_FRAMES
        && wal.behind.load(Ordering::Relaxed) <= CATCH_UP_FRAMES;
    if !forced && !caught_up {
        return;
    }
    // Not forced, a running background pass is left to finish (it would answer busy).
    let _running = if forced {
        wal.checkpointing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    } else {
        match wal.checkpointing.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        }
    };
    match checkpoint(conn) {
        Ok(Some((frames, copied))) if frames == copied => {
            wal.frames.store(0, Ordering::Relaxed);
            wal.behind.store(0, Ordering::Relaxed);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}

/// Runs one job in the open transaction, beginning one if none is open. A job that fails is
/// answered at once (it wrote nothing that stays); a failure that cannot be undone alone rolls
/// the whole transaction back and fails every job in it, whose callers retry. `beside` hears
/// of every outcome: a failed job may have changed state kept beside the database.
fn run_job(
    conn: &WriteConn<'_>,
    open: &mut Option<OpenTxn>,
    mut job: Box<dyn Job>,
    beside: &dyn TxnHooks,
) {
    let txn = match open {
        Some(t) => t,
        None => {
            if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
                job.finish(Some(crate::util::db_err(e)));
                return;
            }
            open.insert(OpenTxn {
                jobs: Vec::new(),
                changes_at_begin: conn.total_changes(),
            })
        }
    };
    // The first job needs no savepoint: if it fails, the whole transaction is its own.
    if txn.jobs.is_empty() {
        if job.run(conn) {
            beside.job_kept();
            txn.jobs.push(job);
        } else {
            beside.rolled_back(true);
            let _ = exec(conn, "ROLLBACK");
            *open = None;
            job.finish(None);
        }
        return;
    }
    let fatal = if job.savepoint() {
        run_in_savepoint(conn, &mut job, beside)
    } else {
        let before = conn.total_changes();
        if job.run(conn) {
            Ok(true)
        } else {
            beside.rolled_back(false);
            if conn.total_changes() == before {
                Ok(false)
            } else {
                // Promised to fail only before writing, yet wrote: nothing of this
                // transaction may be committed half-done.
                Err(StoreError::Unavailable(
                    "a write failed part-way; its transaction was rolled back".into(),
                ))
            }
        }
    };
    match fatal {
        Ok(true) => {
            beside.job_kept();
            txn.jobs.push(job);
        }
        Ok(false) => job.finish(None),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            beside.rolled_back(true);
            if let Some(t) = open.take() {
                for j in t.jobs {
                    j.finish(Some(clone_err(&e)));
                }
            }
            job.finish(Some(e));
        }
    }
}

/// Runs a job that may fail after writing inside its own savepoint; `Ok(ran)`, or the error
/// that leaves the transaction unusable.
fn run_in_savepoint(
    conn: &WriteConn<'_>,
    job: &mut Box<dyn Job>,
    beside: &dyn TxnHooks,
) -> StoreResult<bool> {
    let sql = |s: &str| exec(conn, s).map_err(crate::util::db_err);
    sql("SAVEPOINT job")?;
    if job.run(conn) {
        sql("RELEASE job")?;
        Ok(true)
    } else {
        beside.rolled_back(false);
        sql("ROLLBACK TO job")?;
        sql("RELEASE job")?;
        Ok(false)
    }
}

fn fail_all(jobs: Vec<Box<dyn Job>>, why: &str) {
    for job in jobs {
        job.finish(Some(StoreError::Unavailable(why.into())));
    }
}

/// `fdatasync` of the WAL file. A transaction that wrote has created the file, and SQLite keeps
/// it (same inode: a restart rewrites it from the top, a size limit truncates it) for as long as
/// the writer's connection is open.
fn flush_wal(path: &Path, file: &mut Option<std::fs::File>) -> std::io::Result<()> {
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
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    struct Db {
        _dir: tempfile::TempDir,
        path: PathBuf,
        writer: Arc<Writer>,
        rollbacks: Arc<AtomicUsize>,
    }

    /// Counts rollbacks; before each commit, writes the keys in `at_commit` (a key already
    /// there makes the commit fail).
    struct Hooks {
        rollbacks: Arc<AtomicUsize>,
        at_commit: Arc<Mutex<Vec<String>>>,
    }

    impl TxnHooks for Hooks {
        fn job_kept(&self) {}

        fn rolled_back(&self, _whole: bool) {
            self.rollbacks.fetch_add(1, Ordering::SeqCst);
        }

        fn before_commit(&self, conn: &Connection) -> rusqlite::Result<()> {
            let keys = std::mem::take(&mut *self.at_commit.lock().expect("lock"));
            for k in keys {
                conn.execute("INSERT INTO t (k) VALUES (?1)", [k])?;
            }
            Ok(())
        }
    }

    fn db() -> Db {
        db_writing_at_commit(Arc::default())
    }

    fn db_writing_at_commit(at_commit: Arc<Mutex<Vec<String>>>) -> Db {
        db_with(at_commit, true)
    }

    fn db_with(at_commit: Arc<Mutex<Vec<String>>>, background_checkpoints: bool) -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let conn = open(&path).expect("open");
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
            .expect("schema");
        let rollbacks = Arc::new(AtomicUsize::new(0));
        let hooks = Hooks {
            rollbacks: rollbacks.clone(),
            at_commit,
        };
        let writer =
            Writer::start_threads(conn, path.clone(), Box::new(hooks), background_checkpoints)
                .expect("writer");
        Db {
            _dir: dir,
            path,
            writer: Arc::new(writer),
            rollbacks,
        }
    }

    /// Keys committed, read through a separate connection as the API would.
    fn keys(path: &Path) -> Vec<String> {
        let c = open(path).expect("open");
        let mut s = c.prepare("SELECT k FROM t ORDER BY k").expect("prepare");
        s.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    fn insert(k: &str) -> impl FnOnce(&WriteConn<'_>) -> StoreResult<()> + Send + 'static {
        let k = k.to_owned();
        move |c| {
            c.execute("INSERT INTO t (k) VALUES (?1)", [k])
                .map(|_| ())
                .map_err(crate::util::db_err)
        }
    }

    /// Inserts, then fails: a job that breaks the "fail only before writing" promise, or one
    /// that legitimately fails after writing inside its savepoint.
    fn insert_then_fail(
        k: &str,
    ) -> impl FnOnce(&WriteConn<'_>) -> StoreResult<()> + Send + 'static {
        let ins = insert(k);
        move |c| {
            ins(c)?;
            Err(StoreError::Conflict("test"))
        }
    }

    /// Occupies the writer thread until the returned future resolves and a little longer, so
    /// that jobs sent in between wait in its queue and run together in the next transaction.
    async fn occupy(writer: &Arc<Writer>) -> tokio::task::JoinHandle<StoreResult<()>> {
        let (started, running) = oneshot::channel();
        let w = writer.clone();
        let task = tokio::spawn(async move {
            w.submit(false, move |_c: &WriteConn<'_>| {
                let _ = started.send(());
                std::thread::sleep(Duration::from_millis(100));
                Ok(())
            })
            .await
        });
        running.await.expect("the holding job started");
        task
    }

    /// Rewrites the same 20 rows with 16 KiB each, 20 writes at a time, until `at_least` bytes
    /// are written and at least two background passes could have run (the first comes at once,
    /// the next after IDLE_PASS), however fast the disk; bounded in rounds however slow.
    /// Answers the bytes written and the WAL file's size then: its high-water mark, since a
    /// restart rewrites the file from the top and keeps its size (a file past
    /// `journal_size_limit` is cut back to that).
    async fn steady_load(d: &Db, at_least: u64) -> (u64, u64) {
        let started = std::time::Instant::now();
        let mut written = 0_u64;
        let mut round = 0_u8;
        while (written < at_least || started.elapsed() < 3 * IDLE_PASS)
            && written < 400 * 1024 * 1024
        {
            round = round.wrapping_add(1);
            let blob = vec![round; 16 * 1024];
            let jobs: Vec<_> = (0..20)
                .map(|i| {
                    let w = d.writer.clone();
                    let blob = blob.clone();
                    tokio::spawn(async move {
                        w.submit(false, move |c: &WriteConn<'_>| {
                            c.execute(
                                "INSERT INTO t (k, v) VALUES (?1, ?2)
                                 ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                                (format!("k{i:02}"), &blob),
                            )
                            .map(|_| ())
                            .map_err(crate::util::db_err)
                        })
                        .await
                    })
                })
                .collect();
            for j in jobs {
                j.await.expect("task").expect("write");
            }
            written += 20 * blob.len() as u64;
        }
        let wal = std::fs::metadata(format!("{}-wal", d.path.display()))
            .expect("wal")
            .len();
        assert_eq!(keys(&d.path).len(), 20);
        (written, wal)
    }

    const PAGE: u64 = 4096;
    /// What the WAL file may reach: the forced copy's size, and one commit of `steady_load`
    /// (< 512 frames) on top.
    const WAL_BOUND: u64 = (FORCE_FRAMES as u64 + 512) * PAGE;

    /// Under a steady write load (no pause in which a background pass could copy everything)
    /// the background passes copy the bulk and the writer the rest, so the log starts over
    /// instead of growing; however far the passes trail (a busy machine), the writer copies
    /// everything once the log reaches FORCE_FRAMES. Twice the bound or more written here,
    /// without a restart the WAL file would hold all of it.
    #[tokio::test]
    async fn the_wal_starts_over_under_a_steady_write_load() {
        let d = db();
        let bound = WAL_BOUND;
        let (written, wal) = steady_load(&d, 2 * bound).await;
        assert!(
            wal < bound,
            "WAL {wal} bytes after {written} written (bound {bound})"
        );
    }

    /// A background checkpoint that never runs (a thread starved of CPU at its worst): the
    /// writer alone bounds the log.
    #[tokio::test]
    async fn the_writer_bounds_the_wal_when_no_background_pass_runs() {
        let d = db_with(Arc::default(), false);
        let bound = WAL_BOUND;
        let (written, wal) = steady_load(&d, 2 * bound).await;
        assert!(
            wal < bound,
            "WAL {wal} bytes after {written} written (bound {bound})"
        );
        assert!(
            wal >= FORCE_FRAMES as u64 * PAGE,
            "the log reached {wal} bytes only"
        );
    }

    #[tokio::test]
    async fn every_answered_write_is_committed() {
        let d = db();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let w = d.writer.clone();
                tokio::spawn(async move { w.submit(false, insert(&format!("k{i:03}"))).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("write");
        }
        assert_eq!(keys(&d.path).len(), 200);
        assert_eq!(d.rollbacks.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_job_in_a_savepoint_leaves_the_others() {
        let d = db();
        let held = occupy(&d.writer).await;
        let (a, b, c) = tokio::join!(
            d.writer.submit(false, insert("a")),
            d.writer.submit(true, insert_then_fail("b")),
            d.writer.submit(true, insert("c")),
        );
        held.await.expect("task").expect("held");
        a.expect("a");
        assert!(matches!(b, Err(StoreError::Conflict(_))), "{b:?}");
        c.expect("c");
        assert_eq!(keys(&d.path), ["a", "c"]);
        assert!(d.rollbacks.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn a_fast_job_that_wrote_before_failing_fails_its_whole_transaction() {
        let d = db();
        let held = occupy(&d.writer).await;
        let (a, b, c) = tokio::join!(
            d.writer.submit(false, insert("a")),
            d.writer.submit(false, insert_then_fail("b")),
            d.writer.submit(false, insert("c")),
        );
        held.await.expect("task").expect("held");
        // `a` ran first in the transaction that `b` spoilt; `c` came after the rollback.
        assert!(matches!(a, Err(StoreError::Unavailable(_))), "{a:?}");
        // The job that broke its promise answers with its own error.
        assert!(matches!(b, Err(StoreError::Conflict(_))), "{b:?}");
        c.expect("c starts a new transaction");
        assert_eq!(keys(&d.path), ["c"]);
        // The writer goes on.
        d.writer.submit(false, insert("d")).await.expect("d");
        assert_eq!(keys(&d.path), ["c", "d"]);
    }

    #[tokio::test]
    async fn writes_made_before_the_commit_commit_with_its_jobs_or_fail_them() {
        let at_commit: Arc<Mutex<Vec<String>>> = Arc::default();
        let d = db_writing_at_commit(at_commit.clone());
        at_commit.lock().expect("lock").push("sum".into());
        d.writer.submit(false, insert("a")).await.expect("a");
        assert_eq!(keys(&d.path), ["a", "sum"]);
        // A job whose transaction's write before the commit fails (a key already there): it
        // fails, so does every other job of that transaction, and none of it is committed.
        let held = occupy(&d.writer).await;
        let spoil = at_commit.clone();
        let (b, c) = tokio::join!(
            d.writer.submit(false, move |conn: &WriteConn<'_>| {
                spoil.lock().expect("lock").push("a".into());
                insert("b")(conn)
            }),
            d.writer.submit(true, insert("c")),
        );
        held.await.expect("task").expect("held");
        assert!(matches!(b, Err(StoreError::Internal(_))), "{b:?}");
        let committed = keys(&d.path);
        assert!(!committed.contains(&"b".to_owned()), "{committed:?}");
        assert_eq!(committed.contains(&"c".to_owned()), c.is_ok(), "{c:?}");
        assert!(d.rollbacks.load(Ordering::SeqCst) >= 1);
        // The writer goes on.
        d.writer.submit(false, insert("d")).await.expect("d");
        assert!(keys(&d.path).contains(&"d".to_owned()));
    }

    #[tokio::test]
    async fn a_failed_first_job_rolls_back_alone() {
        let d = db();
        let r = d.writer.submit(false, insert_then_fail("a")).await;
        assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
        d.writer.submit(false, insert("b")).await.expect("b");
        assert_eq!(keys(&d.path), ["b"]);
        assert_eq!(d.rollbacks.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_commit_and_stops_every_later_write() {
        let d = db();
        // The WAL file unlinked under SQLite (which writes on through its open handle): the
        // writer's first flush cannot open the file, as a failing disk would fail the flush.
        let mut wal = d.path.clone().into_os_string();
        wal.push("-wal");
        let first = d
            .writer
            .submit(false, move |c: &WriteConn<'_>| {
                insert("a")(c)?;
                std::fs::remove_file(&wal).map_err(|e| StoreError::Internal(e.to_string()))
            })
            .await;
        match first {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("may or may not"), "{m}"),
            other => panic!("the unflushed commit was confirmed: {other:?}"),
        }
        assert!(d.writer.failed());
        // Every later write is refused without running, through a job already in the queue
        // or a new one.
        let ran = Arc::new(AtomicBool::new(false));
        let (reply, rx) = oneshot::channel();
        let marker = ran.clone();
        let queued = TypedJob {
            savepoint: false,
            work: Some(move |c: &WriteConn<'_>| {
                marker.store(true, Ordering::SeqCst);
                insert("b")(c)
            }),
            result: None,
            reply,
        };
        d.writer.tx.send(Box::new(queued)).expect("send");
        let later = rx.await.expect("answered");
        assert!(
            matches!(&later, Err(StoreError::Unavailable(m)) if m.contains("restarts")),
            "{later:?}"
        );
        let again = d.writer.submit(true, insert("c")).await;
        assert!(
            matches!(again, Err(StoreError::Unavailable(_))),
            "{again:?}"
        );
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn jobs_sent_before_the_writer_is_dropped_are_committed() {
        let d = db();
        let pending: Vec<_> = (0..50)
            .map(|i| {
                let (reply, rx) = oneshot::channel();
                let job = TypedJob {
                    savepoint: false,
                    work: Some(insert(&format!("k{i:02}"))),
                    result: None,
                    reply,
                };
                d.writer.tx.send(Box::new(job)).expect("send");
                rx
            })
            .collect();
        let Db {
            _dir, path, writer, ..
        } = d;
        drop(writer);
        for rx in pending {
            rx.await.expect("answered").expect("committed");
        }
        assert_eq!(keys(&path).len(), 50);
    }
}

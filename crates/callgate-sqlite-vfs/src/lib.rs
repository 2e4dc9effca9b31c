//! An SQLite VFS that wraps the platform's default one and changes one thing: the frames a
//! transaction appends to its write-ahead log reach the file in one `pwrite` per commit
//! instead of two per frame.
//!
//! SQLite writes each WAL frame as two calls, its 24-byte header and then its page, and a
//! 4 KiB page after a 24-byte header spans two pages of the kernel's page cache. Under
//! callgate's trigger load a commit holds ~40 frames: ~80 system calls that together were a
//! third of the SQLite writer thread's time (docs/benchmarks.md, "Eighteenth round"), on the
//! one thread every trigger passes through.
//!
//! What changes and what does not:
//! - Only a WAL file's appends are held, in the connection's own buffer, and only until the
//!   page of a commit frame (a frame whose header carries the database size) has been
//!   appended: that write sends the whole buffer to the file before SQLite goes on to publish
//!   the commit in the shared WAL index. So when another connection can see a commit, its
//!   frames are in the file, as before, and a commit's write error fails that commit.
//! - Every other call first sends what is held: reads (the writer may read back a page it
//!   spilled), syncs (a sync covers every frame written before it), size queries, truncation,
//!   file controls and close. A write anywhere but the log's end (the log's header, a page
//!   rewritten in place, checksums rewritten) goes straight through, after what is held.
//! - Durability is untouched: nothing is answered before an `fdatasync` of the WAL, which
//!   runs after the commit's frames are written (callgate's writer thread, or SQLite's own sync
//!   with `synchronous = FULL`).
//! - Database, journal and temporary files are the default VFS's own, opened in place.

use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

/// The name connections open the VFS by (`Connection::open_with_flags_and_vfs`).
pub const NAME: &CStr = c"callgate-wal";

/// Size of a WAL frame's header (SQLite's file format, "WAL Frame Format").
const FRAME_HEADER: usize = 24;

/// Most bytes held before they are written anyway: bounds the buffer of a large transaction.
const MAX_HELD: usize = 1 << 20;

/// Most bytes per write call: the default unix VFS writes at most 128 KiB - 1 per call (it
/// masks the length with 0x1ffff) and reports a longer write as a full disk.
const MAX_WRITE: usize = 120 << 10;

/// Registers the VFS with SQLite once per process (it is not made the default); answers
/// SQLite's error code if the default VFS is missing or registration failed.
pub fn register() -> Result<&'static CStr, c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    let done = REGISTERED.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe (SQLite is built
        // serialised or multi-thread; both take the master mutex). The VFS struct is leaked,
        // so it outlives every connection, as SQLite requires of a registered VFS.
        unsafe {
            let real = ffi::sqlite3_vfs_find(ptr::null());
            if real.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let mut vfs = *real;
            vfs.szOsFile = c_int::try_from(INNER_OFFSET)
                .ok()
                .and_then(|o| o.checked_add((*real).szOsFile))
                .ok_or(ffi::SQLITE_ERROR)?;
            vfs.pNext = ptr::null_mut();
            vfs.zName = NAME.as_ptr();
            vfs.pAppData = real.cast::<c_void>();
            vfs.xOpen = Some(x_open);
            let vfs = Box::leak(Box::new(vfs));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(()),
                rc => Err(rc),
            }
        }
    });
    done.map(|()| NAME)
}

/// A WAL file as SQLite sees it: the methods below, then the default VFS's file at
/// `INNER_OFFSET` in the same allocation (SQLite allocates `szOsFile` bytes per file).
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    log: Log,
}

/// Where the default VFS's file starts: after `WalFile`, 16-byte aligned like SQLite's own
/// allocations.
const INNER_OFFSET: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

/// A WAL file's held appends.
struct Log {
    inner: *mut ffi::sqlite3_file,
    /// Appends not yet written; they end at `end`.
    held: Vec<u8>,
    /// Where the last write ended, i.e. the log's end while SQLite appends; -1 when unknown.
    end: i64,
    /// The last write was the header of a commit frame, so the next append is its page.
    commit_next: bool,
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes our registered VFS (pAppData is the default VFS, set in
    // `register`) and `file` points at `szOsFile` writable bytes, which is room for a
    // `WalFile` followed by the default VFS's file at INNER_OFFSET.
    unsafe {
        let real = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let Some(open) = (*real).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not a WAL file: the default VFS's file, in place.
            return open(real, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        // SQLite calls xClose when pMethods is set, even after a failed open: keep it unset
        // until the file is ours.
        (*wal).base.pMethods = ptr::null();
        let inner = file
            .cast::<u8>()
            .add(INNER_OFFSET)
            .cast::<ffi::sqlite3_file>();
        (*inner).pMethods = ptr::null();
        let rc = open(real, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if let Some(close) = methods(inner).and_then(|m| m.xClose) {
                close(inner);
            }
            return rc;
        }
        ptr::write(
            ptr::addr_of_mut!((*wal).log),
            Log {
                inner,
                held: Vec::new(),
                end: -1,
                commit_next: false,
            },
        );
        (*wal).base.pMethods = &WAL_METHODS;
        ffi::SQLITE_OK
    }
}

/// The io methods of an open file, if it has them.
///
/// # Safety
/// `file` points at a file SQLite or the default VFS opened.
unsafe fn methods<'a>(file: *mut ffi::sqlite3_file) -> Option<&'a ffi::sqlite3_io_methods> {
    // SAFETY: the caller's promise; pMethods is null or points at a static table.
    unsafe { (*file).pMethods.as_ref() }
}

/// The `Log` of a file this VFS opened as a WAL.
///
/// # Safety
/// `file` is a `WalFile` whose open succeeded and that is not closed; SQLite calls a file's
/// methods from one thread at a time, so the borrow is exclusive.
unsafe fn log<'a>(file: *mut ffi::sqlite3_file) -> &'a mut Log {
    // SAFETY: the caller's promise.
    unsafe { &mut (*file.cast::<WalFile>()).log }
}

impl Log {
    fn inner_methods(&self) -> Option<&ffi::sqlite3_io_methods> {
        // SAFETY: `inner` was opened by the default VFS in `x_open` and is closed only in
        // `x_close`, after which this `Log` is gone.
        unsafe { methods(self.inner) }
    }

    /// Writes through to the file.
    fn write_through(&self, data: &[u8], at: i64) -> c_int {
        let Some(write) = self.inner_methods().and_then(|m| m.xWrite) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let Ok(len) = c_int::try_from(data.len()) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        // SAFETY: `data` is valid for `len` bytes; `inner` is open (see `inner_methods`).
        unsafe { write(self.inner, data.as_ptr().cast::<c_void>(), len, at) }
    }

    /// Sends what is held to the file. A failed write drops it: the transaction it belongs
    /// to fails with this error, before its commit is published.
    fn flush(&mut self) -> c_int {
        if self.held.is_empty() {
            return ffi::SQLITE_OK;
        }
        #[cfg(test)]
        tests::FLUSHES.set(tests::FLUSHES.get() + 1);
        let mut rc = ffi::SQLITE_OK;
        let mut at = self.end - self.held.len() as i64;
        for chunk in self.held.chunks(MAX_WRITE) {
            rc = self.write_through(chunk, at);
            if rc != ffi::SQLITE_OK {
                break;
            }
            at += chunk.len() as i64;
        }
        self.held.clear();
        if rc != ffi::SQLITE_OK {
            self.end = -1;
        }
        rc
    }

    fn write(&mut self, data: &[u8], at: i64) -> c_int {
        let commit_header = data.len() == FRAME_HEADER && data[4..8].iter().any(|&b| b != 0);
        let completes_commit = std::mem::replace(&mut self.commit_next, commit_header);
        let appends = at == self.end && data.len() <= MAX_WRITE;
        if !appends || self.held.len() + data.len() > MAX_HELD {
            // Order matters where ranges overlap: what is held goes first.
            let rc = self.flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if !appends {
            let rc = self.write_through(data, at);
            self.end = if rc == ffi::SQLITE_OK {
                at + data.len() as i64
            } else {
                -1
            };
            return rc;
        }
        self.held.extend_from_slice(data);
        self.end = at + data.len() as i64;
        if completes_commit {
            return self.flush();
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file once, after its last other call; `x_open` made it a
    // `WalFile`. The `Log` is dropped here and the inner file closed.
    unsafe {
        let log = log(file);
        let flushed = log.flush();
        let closed = match log.inner_methods().and_then(|m| m.xClose) {
            Some(close) => close(log.inner),
            None => ffi::SQLITE_OK,
        };
        ptr::drop_in_place(ptr::addr_of_mut!((*file.cast::<WalFile>()).log));
        (*file).pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    at: ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: an open `WalFile` (SQLite's contract for io methods); `buf` is SQLite's.
    unsafe {
        let log = log(file);
        let rc = log.flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match log.inner_methods().and_then(|m| m.xRead) {
            Some(read) => read(log.inner, buf, amount, at),
            None => ffi::SQLITE_IOERR_READ,
        }
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    at: ffi::sqlite3_int64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: an open `WalFile`; SQLite's buffer holds `amount` bytes for the call.
    unsafe {
        let data = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        log(file).write(data, at)
    }
}

/// Sends what is held, then calls the inner file's method.
macro_rules! after_flush {
    ($file:ident, $method:ident, $missing:expr, $($arg:expr),*) => {{
        // SAFETY: an open `WalFile` (SQLite's contract for io methods).
        let log = unsafe { log($file) };
        let rc = log.flush();
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match log.inner_methods().and_then(|m| m.$method) {
            // SAFETY: the inner file is open; the arguments are SQLite's, passed on.
            Some(f) => unsafe { f(log.inner, $($arg),*) },
            None => $missing,
        }
    }};
}

/// Calls the inner file's method.
macro_rules! pass {
    ($file:ident, $method:ident, $missing:expr, $($arg:expr),*) => {{
        // SAFETY: an open `WalFile` (SQLite's contract for io methods).
        let log = unsafe { log($file) };
        match log.inner_methods().and_then(|m| m.$method) {
            // SAFETY: the inner file is open; the arguments are SQLite's, passed on.
            Some(f) => unsafe { f(log.inner, $($arg),*) },
            None => $missing,
        }
    }};
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    let rc = after_flush!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size);
    // SAFETY: as above.
    unsafe { log(file) }.end = -1;
    rc
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    after_flush!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    after_flush!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    after_flush!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    pass!(file, xLock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    pass!(file, xUnlock, ffi::SQLITE_OK, level)
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    pass!(
        file,
        xCheckReservedLock,
        ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
        out
    )
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    pass!(file, xSectorSize, 4096,)
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    pass!(file, xDeviceCharacteristics, 0,)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};
    use std::cell::Cell;
    use std::path::Path;

    thread_local! {
        /// Writes of held appends made on this thread (tests run one per thread).
        pub(super) static FLUSHES: Cell<u64> = const { Cell::new(0) };
    }

    fn open_wal(path: &Path) -> Connection {
        let vfs = register().expect("register");
        let c = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs).expect("open");
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
        )
        .expect("schema");
        c
    }

    /// What a process that died now would leave: the database and its WAL as they are in
    /// the file system (no shared-memory index; SQLite rebuilds it from the WAL and checks
    /// every frame's checksum). Opened with the default VFS.
    fn after_a_crash(path: &Path, dir: &Path) -> Connection {
        let copy = dir.join("copy.db");
        std::fs::copy(path, &copy).expect("copy db");
        let wal = format!("{}-wal", path.display());
        std::fs::copy(&wal, format!("{}-wal", copy.display())).expect("copy wal");
        Connection::open(&copy).expect("open copy")
    }

    fn rows(c: &Connection) -> (i64, String) {
        c.query_row("SELECT COUNT(*), COALESCE(SUM(length(body)), 0) || ':' || COALESCE(MAX(body), '') FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("rows")
    }

    fn integrity(c: &Connection) -> String {
        c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity")
    }

    #[test]
    fn each_commit_is_in_the_file_when_it_returns_and_in_one_write() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.db");
        let mut w = open_wal(&path);
        let reader = Connection::open(&path).expect("reader");
        for round in 1..=5_i64 {
            let before = FLUSHES.get();
            let tx = w.transaction().expect("begin");
            for i in 0..200 {
                tx.execute(
                    "INSERT INTO t (body) VALUES (?1)",
                    [format!("round {round} row {i:04} {}", "x".repeat(300))],
                )
                .expect("insert");
            }
            tx.commit().expect("commit");
            // ~16 pages of rows and their b-tree pages: 32+ frame writes without the VFS.
            let flushes = FLUSHES.get() - before;
            assert!(
                (1..=3).contains(&flushes),
                "round {round}: {flushes} writes"
            );
            let crashed = after_a_crash(&path, dir.path());
            assert_eq!(rows(&crashed).0, round * 200);
            assert_eq!(integrity(&crashed), "ok");
            assert_eq!(
                rows(&reader),
                rows(&crashed),
                "another connection reads the same"
            );
        }
    }

    #[test]
    fn a_transaction_that_spills_and_rewrites_pages_commits_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("b.db");
        let mut w = open_wal(&path);
        // A page cache this small spills dirty pages into the WAL before the commit; pages
        // changed again afterwards are rewritten in place in the log, and the commit then
        // rewrites the checksums of the frames after the first rewritten one.
        w.execute_batch("PRAGMA cache_size = 10;").expect("cache");
        let tx = w.transaction().expect("begin");
        for i in 0..2_000 {
            tx.execute(
                "INSERT INTO t (body) VALUES (?1)",
                [format!("{i:05} {}", "y".repeat(200))],
            )
            .expect("insert");
        }
        tx.execute(
            "UPDATE t SET body = 'changed ' || body WHERE id % 7 = 0",
            [],
        )
        .expect("update");
        tx.commit().expect("commit");
        let expected = rows(&w);
        let crashed = after_a_crash(&path, dir.path());
        assert_eq!(rows(&crashed), expected);
        assert_eq!(integrity(&crashed), "ok");
        let changed: i64 = crashed
            .query_row(
                "SELECT COUNT(*) FROM t WHERE body LIKE 'changed %'",
                [],
                |r| r.get(0),
            )
            .expect("changed");
        assert_eq!(changed, 2_000 / 7);
    }

    #[test]
    fn a_rolled_back_transaction_leaves_nothing_and_the_log_restarts_cleanly() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.db");
        let mut w = open_wal(&path);
        w.execute_batch("PRAGMA cache_size = 10;").expect("cache");
        w.execute("INSERT INTO t (body) VALUES ('kept')", [])
            .expect("insert");
        let tx = w.transaction().expect("begin");
        for i in 0..2_000 {
            tx.execute(
                "INSERT INTO t (body) VALUES (?1)",
                [format!("{i} {}", "z".repeat(200))],
            )
            .expect("insert");
        }
        tx.rollback().expect("rollback");
        w.execute("INSERT INTO t (body) VALUES ('after')", [])
            .expect("insert");
        // Copying every frame back starts the log over from its header on the next commit.
        w.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .expect("checkpoint");
        w.execute("INSERT INTO t (body) VALUES ('restarted')", [])
            .expect("insert");
        let crashed = after_a_crash(&path, dir.path());
        let bodies: Vec<String> = crashed
            .prepare("SELECT body FROM t ORDER BY id")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("bodies");
        assert_eq!(bodies, ["kept", "after", "restarted"]);
        assert_eq!(integrity(&crashed), "ok");
    }

    #[test]
    fn other_files_are_the_default_vfs_files() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("d.db");
        let w = open_wal(&path);
        w.execute("INSERT INTO t (body) VALUES ('one')", [])
            .expect("insert");
        // The database file's own methods answer (this VFS wraps only WAL files).
        let mode: String = w
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        drop(w);
        let plain = Connection::open(&path).expect("open");
        assert_eq!(rows(&plain).0, 1);
    }
}

//! How fast the working directory's disk takes flushed writes, measured before and after the
//! scenarios.
//!
//! Every accepted trigger waits for a WAL flush, so the disk sets the durable trigger rate as
//! much as the CPUs do. On a cloud VM the same disk can change from one hour to the next: on
//! 2026-11-24 this machine's disk, after some minutes of benchmark writes, took ~6 MiB/s with
//! flushes stalling 100–190 ms, and the trigger rate fell to a sixth of the previous day's.
//! The report shows what the disk did so that a slow run can be told from a slow server.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes of one probe: 16 MiB in all, enough to go past a small write cache or burst.
pub const PROBE_WRITES: usize = 256;
/// Size of each write (a group commit of a few dozen triggers writes about this much WAL).
pub const PROBE_BLOCK: usize = 64 * 1024;

/// What one probe measured.
#[derive(Clone, Debug)]
pub struct DiskProbe {
    pub writes: usize,
    pub block_bytes: usize,
    /// Flush (`fdatasync`) times after each write, in milliseconds.
    pub flush_p50_ms: f64,
    pub flush_p99_ms: f64,
    pub flush_max_ms: f64,
    /// Bytes written over the probe's whole time (writes and flushes), in MiB/s.
    pub mib_per_s: f64,
}

impl DiskProbe {
    /// One line for the report's machine table.
    pub fn summary(&self) -> String {
        format!(
            "{:.0} MiB/s; flush p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
            self.mib_per_s, self.flush_p50_ms, self.flush_p99_ms, self.flush_max_ms
        )
    }
}

/// Appends `writes` blocks of `block` bytes to a scratch file in `dir`, flushing each to the
/// disk like a WAL commit, and removes the file.
pub fn probe(dir: &Path, writes: usize, block: usize) -> Result<DiskProbe> {
    anyhow::ensure!(writes > 0 && block > 0, "a disk probe needs writes");
    let path = dir.join("disk-probe.tmp");
    let measured = flush_times(&path, writes, block);
    // Removed whatever happened: the probe must not leave 16 MiB behind.
    let removed = std::fs::remove_file(&path);
    let (mut flushes, elapsed) = measured?;
    removed.with_context(|| format!("cannot remove {}", path.display()))?;
    flushes.sort_unstable();
    let at = |q: f64| {
        let i = ((flushes.len() as f64 * q).ceil() as usize).clamp(1, flushes.len()) - 1;
        flushes[i].as_secs_f64() * 1000.0
    };
    Ok(DiskProbe {
        writes,
        block_bytes: block,
        flush_p50_ms: at(0.50),
        flush_p99_ms: at(0.99),
        flush_max_ms: at(1.0),
        mib_per_s: (writes * block) as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-9),
    })
}

fn flush_times(path: &Path, writes: usize, block: usize) -> Result<(Vec<Duration>, Duration)> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    // Not all zeros, so that no layer below can skip or compress the writes.
    let data: Vec<u8> = (0..block).map(|i| (i * 31 % 251) as u8).collect();
    let mut flushes = Vec::with_capacity(writes);
    let start = Instant::now();
    for _ in 0..writes {
        file.write_all(&data).context("disk probe write")?;
        let t = Instant::now();
        file.sync_data().context("disk probe flush")?;
        flushes.push(t.elapsed());
    }
    Ok((flushes, start.elapsed()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_flushes_every_write_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = probe(dir.path(), 8, 4096).unwrap();
        assert_eq!((p.writes, p.block_bytes), (8, 4096));
        assert!(p.flush_p50_ms <= p.flush_p99_ms && p.flush_p99_ms <= p.flush_max_ms);
        assert!(p.mib_per_s > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let line = p.summary();
        assert!(line.contains("MiB/s; flush p50 "), "{line}");
    }

    #[test]
    fn a_probe_of_a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = probe(&dir.path().join("absent"), 1, 16).unwrap_err();
        assert!(format!("{err:#}").contains("cannot create"), "{err:#}");
        assert!(probe(dir.path(), 0, 16).is_err());
    }
}

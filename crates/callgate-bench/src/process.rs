//! Processes under test: spawned with their output in a log file (no pipe to drain), waited
//! for by a line in that log, measured through `/proc/<pid>` (resident memory, CPU time) and
//! stopped with SIGTERM so the server drains as it would in production.

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A child process that is killed if it is still running when dropped.
pub struct Proc {
    name: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls the log until `find` recognises what it needs in the whole text so far.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(found) = find(&text) {
                return Ok(found);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before it was ready; its log ends with:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready within {timeout:?}; its log ends with:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid())
    }

    /// User plus system CPU time consumed so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        cpu_time(&format!("/proc/{}/stat", self.pid()))
    }

    /// User plus system CPU time consumed so far, by thread name.
    pub fn thread_cpu(&self) -> Result<BTreeMap<String, Duration>> {
        thread_cpu(self.pid())
    }

    /// Bytes the process has caused to be sent to the storage layer so far (`write_bytes` of
    /// /proc/<pid>/io); None where the kernel does not keep I/O accounting.
    pub fn written_bytes(&self) -> Option<u64> {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.pid())).ok()?;
        write_bytes(&io)
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        // std can only send SIGKILL and the workspace forbids unsafe code, so ask kill(1).
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if sent {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if self.child.try_wait()?.is_some() {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            eprintln!("{} did not stop within {grace:?}; killing it", self.name);
        }
        self.child.kill().ok();
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `write_bytes` field of a /proc/<pid>/io text.
fn write_bytes(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

/// CPU time (utime + stime) of the process whose `stat` file is at `path`.
pub fn cpu_time(path: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    parse_stat(&stat)
        .map(|(_, cpu)| cpu)
        .context("malformed /proc stat")
}

/// The name (`comm`) and CPU time (utime + stime) in a /proc `stat` line.
fn parse_stat(stat: &str) -> Option<(&str, Duration)> {
    // The name may contain spaces and parentheses: it runs from the first '(' to the last ')'.
    let (head, rest) = stat.rsplit_once(')')?;
    let (_, name) = head.split_once('(')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let ticks: u64 = [11usize, 12]
        .iter()
        .map(|&i| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    Some((
        name,
        Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64),
    ))
}

/// CPU time so far of every thread of process `pid`, summed by thread name. A thread that
/// ends between two readings drops out of the later one; the server's busy threads live as
/// long as it does.
pub fn thread_cpu(pid: u32) -> Result<BTreeMap<String, Duration>> {
    let dir = format!("/proc/{pid}/task");
    let mut by_name: BTreeMap<String, Duration> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {dir}"))? {
        let path = entry?.path().join("stat");
        // A thread may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Some((name, cpu)) = parse_stat(&stat) {
            *by_name.entry(name.to_owned()).or_default() += cpu;
        }
    }
    Ok(by_name)
}

/// `sysconf(_SC_CLK_TCK)`, asked of getconf(1) once; 100 on every Linux in practice.
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_bytes_is_read_from_the_io_accounting_text() {
        let io = "rchar: 4096\nwchar: 1234567\nsyscr: 10\nsyscw: 20\nread_bytes: 0\n\
                  write_bytes: 137740288\ncancelled_write_bytes: 8192\n";
        assert_eq!(write_bytes(io), Some(137_740_288));
        assert_eq!(write_bytes("rchar: 1\nwchar: 2\n"), None);
        assert_eq!(write_bytes("write_bytes: many\n"), None);
    }

    #[test]
    fn a_stat_line_gives_the_name_and_the_cpu_time() {
        // utime 250 and stime 50 ticks; the name holds spaces and parentheses.
        let line = "1234 (sqlite (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        let (name, cpu) = parse_stat(line).expect("parsed");
        assert_eq!(name, "sqlite (x) y");
        assert_eq!(cpu, Duration::from_secs_f64(300.0 / clock_ticks() as f64));
        assert_eq!(parse_stat("no parentheses here"), None);
    }

    #[test]
    fn thread_times_are_read_by_thread_name() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready, started) = std::sync::mpsc::channel::<()>();
        let probe = std::thread::Builder::new()
            .name("cg-bench-probe".into())
            .spawn(move || {
                // The new thread names itself as it starts: read only once it runs.
                let _ = ready.send(());
                let _ = stopped.recv();
            })
            .expect("thread");
        started.recv().expect("the probe thread started");
        let threads = thread_cpu(std::process::id()).expect("read");
        drop(stop);
        probe.join().expect("joined");
        assert!(threads.contains_key("cg-bench-probe"), "{threads:?}");
    }
}

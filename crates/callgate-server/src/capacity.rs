//! Live bookkeeping of queued and live runs per organisation and configuration, shared by the
//! trigger path (capacity checks, SPEC §2.3 #21) and the dispatcher (limits, SPEC §8.2).
//! Seeded from the database at start, then kept in step by the code that changes run states.

use callgate_domain::lifecycle::RunStatus;
use callgate_store::{ConfigId, OrgId, QueueCount};
use foldhash::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub queued_by_org: HashMap<OrgId, i64>,
    pub queued_by_config: HashMap<ConfigId, (OrgId, i64)>,
    pub live_by_org: HashMap<OrgId, i64>,
    pub live_by_config: HashMap<ConfigId, i64>,
    /// Configurations that may have queued runs the counts do not show: another node hinted
    /// at work, or a claim was cut short by pacing or capacity. The dispatcher asks the
    /// database about them until it says their queue is drained.
    pub look_again: HashMap<ConfigId, OrgId>,
}

#[derive(Debug, Default)]
pub struct Capacity {
    inner: Mutex<Counts>,
    /// Runs announced to this node so far (queued here or hinted by another node). The
    /// dispatcher compares it around a claim: work that arrived meanwhile must not be
    /// forgotten because of that claim's "drained".
    arrivals: AtomicU64,
}

impl Capacity {
    pub fn seed(&self, rows: &[QueueCount]) {
        let mut c = Counts::default();
        for r in rows {
            if r.status == RunStatus::Queued {
                *c.queued_by_org.entry(r.org_id).or_default() += r.count;
                c.queued_by_config
                    .entry(r.config_id)
                    .or_insert((r.org_id, 0))
                    .1 += r.count;
            } else if r.status.is_live() {
                *c.live_by_org.entry(r.org_id).or_default() += r.count;
                *c.live_by_config.entry(r.config_id).or_default() += r.count;
            }
        }
        if let Ok(mut inner) = self.inner.lock() {
            *inner = c;
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Counts) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut c| f(&mut c))
    }

    /// (queued, live) of an organisation.
    pub fn org_usage(&self, org: OrgId) -> (i64, i64) {
        self.with(|c| {
            (
                c.queued_by_org.get(&org).copied().unwrap_or(0),
                c.live_by_org.get(&org).copied().unwrap_or(0),
            )
        })
        .unwrap_or((0, 0))
    }

    pub fn queued(&self, org: OrgId, config: ConfigId) {
        self.arrivals.fetch_add(1, Ordering::SeqCst);
        self.with(|c| {
            *c.queued_by_org.entry(org).or_default() += 1;
            c.queued_by_config.entry(config).or_insert((org, 0)).1 += 1;
        });
    }

    /// Another node queued work for this configuration (or freed capacity it may wait for);
    /// make sure it is looked at. The counts stay as they are: a hint says "some", not how
    /// many, and trigger-time checks must not count phantom runs.
    pub fn hinted(&self, org: OrgId, config: ConfigId) {
        self.arrivals.fetch_add(1, Ordering::SeqCst);
        self.keep_looking(org, config);
    }

    /// See `Counts::look_again`.
    pub fn keep_looking(&self, org: OrgId, config: ConfigId) {
        self.with(|c| c.look_again.insert(config, org));
    }

    /// See `arrivals`.
    pub fn arrivals(&self) -> u64 {
        self.arrivals.load(Ordering::SeqCst)
    }

    /// `n` queued runs of a configuration started dialling.
    pub fn dialled(&self, org: OrgId, config: ConfigId, n: i64) {
        self.with(|c| {
            dec(c.queued_by_org.entry(org).or_default(), n);
            dec(
                &mut c.queued_by_config.entry(config).or_insert((org, 0)).1,
                n,
            );
            *c.live_by_org.entry(org).or_default() += n;
            *c.live_by_config.entry(config).or_default() += n;
        });
    }

    /// A run was claimed as it was written: live without ever being counted as queued.
    pub fn dialled_direct(&self, org: OrgId, config: ConfigId) {
        self.with(|c| {
            *c.live_by_org.entry(org).or_default() += 1;
            *c.live_by_config.entry(config).or_default() += 1;
        });
    }

    /// The configuration's queue turned out shorter than counted (e.g. runs cancelled).
    pub fn drained(&self, org: OrgId, config: ConfigId) {
        self.with(|c| {
            let left = c.queued_by_config.get(&config).map(|e| e.1).unwrap_or(0);
            dec(c.queued_by_org.entry(org).or_default(), left);
            c.queued_by_config.remove(&config);
            c.look_again.remove(&config);
        });
    }

    pub fn ended(&self, org: OrgId, config: ConfigId, was: RunStatus) {
        self.with(|c| {
            if was.is_live() {
                dec(c.live_by_org.entry(org).or_default(), 1);
                dec(c.live_by_config.entry(config).or_default(), 1);
            } else if was == RunStatus::Queued {
                dec(c.queued_by_org.entry(org).or_default(), 1);
                dec(
                    &mut c.queued_by_config.entry(config).or_insert((org, 0)).1,
                    1,
                );
            }
        });
    }

    pub fn total_queued(&self) -> i64 {
        self.with(|c| c.queued_by_org.values().sum()).unwrap_or(0)
    }
}

fn dec(v: &mut i64, n: i64) {
    *v = (*v - n).max(0);
}

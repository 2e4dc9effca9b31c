//! Live bookkeeping of queued and live runs per organisation and configuration, shared by the
//! trigger path (capacity checks, SPEC §2.3 #21) and the dispatcher (limits, SPEC §8.2).
//! Seeded from the database at start, then kept in step by the code that changes run states.

use callgate_domain::lifecycle::RunStatus;
use callgate_store::{ConfigId, OrgId, QueueCount};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub queued_by_org: HashMap<OrgId, i64>,
    pub queued_by_config: HashMap<ConfigId, (OrgId, i64)>,
    pub live_by_org: HashMap<OrgId, i64>,
    pub live_by_config: HashMap<ConfigId, i64>,
}

#[derive(Debug, Default)]
pub struct Capacity {
    inner: Mutex<Counts>,
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
        self.with(|c| {
            *c.queued_by_org.entry(org).or_default() += 1;
            c.queued_by_config.entry(config).or_insert((org, 0)).1 += 1;
        });
    }

    /// Another node queued work for this configuration; make sure it is looked at.
    pub fn hinted(&self, org: OrgId, config: ConfigId) {
        self.with(|c| {
            let e = c.queued_by_config.entry(config).or_insert((org, 0));
            if e.1 == 0 {
                e.1 = 1;
                *c.queued_by_org.entry(org).or_default() += 1;
            }
        });
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

    /// The configuration's queue turned out shorter than counted (e.g. runs cancelled).
    pub fn drained(&self, org: OrgId, config: ConfigId) {
        self.with(|c| {
            let left = c.queued_by_config.get(&config).map(|e| e.1).unwrap_or(0);
            dec(c.queued_by_org.entry(org).or_default(), left);
            c.queued_by_config.remove(&config);
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

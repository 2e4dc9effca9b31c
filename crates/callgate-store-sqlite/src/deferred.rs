//! Counter changes gathered during the writer's open transaction and written once, just
//! before its commit.
//!
//! Every trigger added one to its agent's run count and every answered call charged its
//! organisation's quota, each with a statement of its own on the writer thread, the one serial
//! step of every call. Summed per transaction they are one statement per agent and per
//! organisation for a whole batch. Nobody outside the writer sees the difference: the sums are
//! written in the same transaction, so they commit (or roll back) with the runs that made them.
//! Write jobs that read such a counter back inside the transaction add what is still pending
//! (`pending_agent_runs`, `pending_charge`).

use callgate_store::{AgentId, OrgId};
use foldhash::HashMap;
use rusqlite::{Connection, params};
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct Counts {
    agent_runs: HashMap<AgentId, i64>,
    /// Seconds to take off each organisation's quota (where it has one).
    charges: HashMap<OrgId, i64>,
}

impl Counts {
    fn merge(&mut self, other: &mut Counts) {
        for (agent, n) in other.agent_runs.drain() {
            *self.agent_runs.entry(agent).or_default() += n;
        }
        for (org, secs) in other.charges.drain() {
            *self.charges.entry(org).or_default() += secs;
        }
    }

    fn clear(&mut self) {
        self.agent_runs.clear();
        self.charges.clear();
    }
}

/// Owned by one store; only its writer thread changes it.
#[derive(Default)]
pub struct Deferred {
    tallies: Mutex<Tallies>,
}

#[derive(Default)]
struct Tallies {
    /// Of the job running now: kept when it succeeds, dropped when its work is rolled back.
    job: Counts,
    /// Of the jobs already kept in the open transaction.
    txn: Counts,
}

impl Deferred {
    fn lock(&self) -> MutexGuard<'_, Tallies> {
        // Only plain arithmetic runs under this lock; a poisoned one still holds whole numbers.
        self.tallies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The running job created a run of `agent`.
    pub fn count_agent_run(&self, agent: AgentId) {
        *self.lock().job.agent_runs.entry(agent).or_default() += 1;
    }

    /// The running job ended a call of `org` that lasted `seconds` billable seconds.
    pub fn charge_quota(&self, org: OrgId, seconds: i64) {
        if seconds > 0 {
            *self.lock().job.charges.entry(org).or_default() += seconds;
        }
    }

    /// Runs of `agent` created in the open transaction and not yet counted in its row.
    pub fn pending_agent_runs(&self, agent: AgentId) -> i64 {
        let t = self.lock();
        t.job.agent_runs.get(&agent).copied().unwrap_or(0)
            + t.txn.agent_runs.get(&agent).copied().unwrap_or(0)
    }

    /// Seconds charged to `org` in the open transaction and not yet taken off its row.
    pub fn pending_charge(&self, org: OrgId) -> i64 {
        let t = self.lock();
        t.job.charges.get(&org).copied().unwrap_or(0)
            + t.txn.charges.get(&org).copied().unwrap_or(0)
    }

    /// The running job's writes stand (for as long as its transaction does).
    pub fn job_kept(&self) {
        let t = &mut *self.lock();
        t.txn.merge(&mut t.job);
    }

    /// The running job's writes were rolled back; with `whole`, the whole transaction's too.
    pub fn rolled_back(&self, whole: bool) {
        let mut t = self.lock();
        t.job.clear();
        if whole {
            t.txn.clear();
        }
    }

    /// Writes the sums of the open transaction; called just before its commit. On error the
    /// caller rolls the transaction back (and with it `rolled_back(true)`).
    pub fn write(&self, c: &Connection) -> rusqlite::Result<()> {
        let mut t = self.lock();
        for (agent, n) in &t.txn.agent_runs {
            c.prepare_cached("UPDATE agents SET total_runs = total_runs + ?2 WHERE id = ?1")?
                .execute(params![agent, n])?;
        }
        for (org, secs) in &t.txn.charges {
            c.prepare_cached(
                "UPDATE organizations SET quota_seconds_remaining = quota_seconds_remaining - ?2
                 WHERE id = ?1 AND quota_seconds_remaining IS NOT NULL",
            )?
            .execute(params![org, secs])?;
        }
        t.txn.clear();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE agents (id INTEGER PRIMARY KEY, total_runs INTEGER NOT NULL);
             CREATE TABLE organizations (id INTEGER PRIMARY KEY, quota_seconds_remaining INTEGER);
             INSERT INTO agents VALUES (1, 10), (2, 0);
             INSERT INTO organizations VALUES (7, 100), (8, NULL);",
        )
        .unwrap();
        c
    }

    fn agent_runs(c: &Connection, id: i64) -> i64 {
        c.query_row("SELECT total_runs FROM agents WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    }

    fn quota(c: &Connection, id: i64) -> Option<i64> {
        c.query_row(
            "SELECT quota_seconds_remaining FROM organizations WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn kept_jobs_are_summed_into_one_write_per_row() {
        let c = db();
        let d = Deferred::default();
        for _ in 0..3 {
            d.count_agent_run(1);
            d.job_kept();
        }
        d.count_agent_run(2);
        d.charge_quota(7, 30);
        d.charge_quota(8, 5);
        d.charge_quota(7, 0);
        d.job_kept();
        d.charge_quota(7, 12);
        d.job_kept();
        assert_eq!(d.pending_agent_runs(1), 3);
        assert_eq!(d.pending_charge(7), 42);
        d.write(&c).unwrap();
        assert_eq!((agent_runs(&c, 1), agent_runs(&c, 2)), (13, 1));
        assert_eq!((quota(&c, 7), quota(&c, 8)), (Some(58), None));
        // Written once: the next commit starts from nothing.
        assert_eq!((d.pending_agent_runs(1), d.pending_charge(7)), (0, 0));
        d.write(&c).unwrap();
        assert_eq!(agent_runs(&c, 1), 13);
        assert_eq!(quota(&c, 7), Some(58));
    }

    #[test]
    fn rolled_back_work_is_not_counted() {
        let c = db();
        let d = Deferred::default();
        d.count_agent_run(1);
        d.charge_quota(7, 10);
        d.job_kept();
        // A job whose savepoint is rolled back: its counts go, the kept job's stay.
        d.count_agent_run(1);
        d.charge_quota(7, 50);
        assert_eq!(d.pending_agent_runs(1), 2);
        d.rolled_back(false);
        assert_eq!(d.pending_agent_runs(1), 1);
        d.write(&c).unwrap();
        assert_eq!(agent_runs(&c, 1), 11);
        assert_eq!(quota(&c, 7), Some(90));
        // The whole transaction rolled back: nothing of it is written later.
        d.count_agent_run(2);
        d.job_kept();
        d.count_agent_run(2);
        d.rolled_back(true);
        assert_eq!(d.pending_agent_runs(2), 0);
        d.write(&c).unwrap();
        assert_eq!(agent_runs(&c, 2), 0);
    }
}

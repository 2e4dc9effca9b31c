//! Run ids for the triggers waiting at once, from one `nextval` round trip.
//!
//! A trigger needs its run's id before the run is written (templates and the system context
//! name it), and each took a pooled connection and a statement of its own for it. Here the
//! triggers that ask while a round trip is under way are served by the next one, which takes
//! as many values of the sequence as there are waiters and hands them out in the order they
//! asked: ids still follow creation order, on one node and across nodes (they all draw from
//! the one sequence), and a lone trigger waits no longer than before.

use crate::db::rows;
use crate::util::get;
use callgate_store::{RunId, StoreError, StoreResult};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

/// `$1` values of the run id sequence.
///
/// Drawing from a sequence writes WAL now and then, and the statement's commit then waited for
/// a WAL flush beside the triggers' inserts. It need not: a run that uses one of these ids
/// commits with a flush of its own, which covers the sequence's earlier record too, so a crash
/// can only hand out again ids that no committed run holds. The setting is local to the
/// statement's own transaction; the pooled session keeps its default.
const NEXT_IDS: &str = "WITH quick AS (SELECT set_config('synchronous_commit', 'off', true))
     SELECT nextval('run_ids') FROM quick, generate_series(1, $1::int)";

/// Most ids one round trip takes.
const MAX_BATCH: usize = 256;

type Waiter = oneshot::Sender<StoreResult<RunId>>;

/// Hands out run ids; the allocating task ends when every clone of this is dropped.
#[derive(Clone)]
pub struct RunIds {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl RunIds {
    pub fn start(pool: Pool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(allocate(pool, rx));
        Self { tx }
    }

    pub async fn next(&self) -> StoreResult<RunId> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(reply)
            .map_err(|_| StoreError::Unavailable("the run id allocator stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the run id allocator stopped".into()))?
    }
}

async fn allocate(pool: Pool, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    let mut waiting = Vec::new();
    while rx.recv_many(&mut waiting, MAX_BATCH).await > 0 {
        match take(&pool, waiting.len()).await {
            Ok(ids) => {
                for (w, id) in waiting.drain(..).zip(ids) {
                    let _ = w.send(Ok(id));
                }
            }
            Err(e) => {
                for w in waiting.drain(..) {
                    let _ = w.send(Err(crate::inserts::clone_err(&e)));
                }
            }
        }
    }
}

/// `n` new values of the run id sequence, ascending.
async fn take(pool: &Pool, n: usize) -> StoreResult<Vec<RunId>> {
    let c = pool.get().await.map_err(crate::util::pool_err)?;
    let count = i32::try_from(n).map_err(|_| StoreError::Internal("id batch too large".into()))?;
    let found = rows(&c, NEXT_IDS, &[&count]).await?;
    let mut ids = found
        .iter()
        .map(|r| get::<RunId>(r, 0))
        .collect::<StoreResult<Vec<_>>>()?;
    if ids.len() != n {
        return Err(StoreError::Internal(format!(
            "asked the run id sequence for {n} values, got {}",
            ids.len()
        )));
    }
    ids.sort_unstable();
    Ok(ids)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_get_distinct_ids_in_the_order_they_asked() {
        let Some((db, store)) = crate::scratch_store().await else {
            return;
        };
        let ids = RunIds::start(store.pool.clone());
        // Many at once: most are served by shared round trips.
        let asks: Vec<_> = (0..500)
            .map(|_| {
                let ids = ids.clone();
                tokio::spawn(async move { ids.next().await })
            })
            .collect();
        let mut got = BTreeSet::new();
        for a in asks {
            assert!(
                got.insert(a.await.unwrap().unwrap()),
                "an id handed out twice"
            );
        }
        assert_eq!(got.len(), 500);
        // Asked one after another, each id is above the last.
        let mut last = *got.last().unwrap();
        for _ in 0..20 {
            let id = ids.next().await.unwrap();
            assert!(id > last, "{id} after {last}");
            last = id;
        }
        // Queued behind one round trip, callers are answered in the order they asked.
        let (first, second) = (ids.tx.clone(), ids.tx.clone());
        let (a_tx, a_rx) = oneshot::channel();
        let (b_tx, b_rx) = oneshot::channel();
        first.send(a_tx).unwrap();
        second.send(b_tx).unwrap();
        let (a, b) = (a_rx.await.unwrap().unwrap(), b_rx.await.unwrap().unwrap());
        assert!(a < b, "{a} then {b}");
        // The flush setting stays with the statement: the session is as it was.
        let c = store.pool.get().await.unwrap();
        let before: String = c
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(c.query(NEXT_IDS, &[&3i32]).await.unwrap().len(), 3);
        let after: String = c
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!((before.as_str(), after.as_str()), ("on", "on"));
        drop(c);
        drop(store);
        db.drop_database().await.unwrap();
    }
}

//! Where the server under test keeps its runs, read directly by the scenarios for timings the
//! API would only give page by page: the embedded SQLite file (see `db`), or the PostgreSQL
//! scratch database the bench created for this one server (`server::Callgate`).
//!
//! Times come back as Unix microseconds whichever the store; PostgreSQL keeps `timestamptz`
//! (microsecond resolution) and the provider's first event in `run_events`.

use crate::db;
use anyhow::{Context, Result, bail};
use reqwest::Url;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use tokio_postgres::NoTls;

/// Database names this bench creates start so, so a left-over one (an interrupted run) is
/// recognisable.
pub const PG_PREFIX: &str = "callgate_bench_";

/// A URL as it may be printed: no user name or password.
pub fn shown(u: &Url) -> String {
    format!(
        "{}://{}:{}{}",
        u.scheme(),
        u.host_str().unwrap_or("?"),
        u.port().unwrap_or(5432),
        u.path()
    )
}

/// Checks an admin URL given on the command line.
pub fn parse_admin_url(s: &str) -> Result<Url> {
    let u = Url::parse(s).context("--database-url is not a URL")?;
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        bail!("--database-url must be a postgres:// URL");
    }
    Ok(u)
}

pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) =
        tokio_postgres::connect(url, NoTls)
            .await
            .with_context(|| match Url::parse(url) {
                Ok(u) => format!("cannot connect to {}", shown(&u)),
                Err(_) => "cannot connect to PostgreSQL".to_owned(),
            })?;
    tokio::spawn(async move {
        match conn.await {
            // Dropping the server's database (WITH FORCE) ends this reader's session too.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN) => {}
            Err(e) => eprintln!("  PostgreSQL connection ended: {e:#}"),
            Ok(()) => {}
        }
    });
    Ok(client)
}

/// The runs of one running server.
pub enum RunsDb {
    Sqlite(PathBuf),
    Postgres(tokio_postgres::Client),
}

impl RunsDb {
    pub async fn postgres(url: &str) -> Result<Self> {
        Ok(Self::Postgres(connect(url).await?))
    }

    pub async fn max_run_id(&self) -> Result<i64> {
        match self {
            Self::Sqlite(p) => db::max_run_id(&db::open_ro(p)?),
            Self::Postgres(c) => Ok(c
                .query_one("SELECT COALESCE(MAX(id), 0)::bigint FROM runs", &[])
                .await?
                .get(0)),
        }
    }

    /// Waits until every run with an id above `after_id` has been dialled and has ended, so
    /// the next scenario starts on an idle server. Returns how many were still pending at
    /// `timeout`.
    pub async fn wait_settled(&self, after_id: i64, timeout: Duration) -> Result<i64> {
        let c = match self {
            Self::Sqlite(p) => return db::wait_settled(p, after_id, timeout).await,
            Self::Postgres(c) => c,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let pending: i64 = c
                .query_one(
                    "SELECT COUNT(*) FROM runs
                     WHERE id > $1 AND (dialed_at IS NULL OR status <> 'ended')",
                    &[&after_id],
                )
                .await?
                .get(0);
            if pending == 0 || Instant::now() >= deadline {
                return Ok(pending);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// From a run's creation to the provider receiving its dial (the simulator's first event,
    /// `ringing`), in microseconds, for runs with an id above `after_id` created in
    /// `[from, to)` when given; plus how many were never dialled (see `db::dispatch_latencies`).
    pub async fn dispatch_latencies(
        &self,
        after_id: i64,
        created: Option<(SystemTime, SystemTime)>,
    ) -> Result<(Vec<i64>, i64)> {
        let c = match self {
            Self::Sqlite(p) => return db::dispatch_latencies(p, after_id, created),
            Self::Postgres(c) => c,
        };
        let (from, to) = created
            .map(|(a, b)| (db::micros(a), db::micros(b)))
            .unwrap_or((i64::MIN, i64::MAX));
        let rows = c
            .query(
                "SELECT (EXTRACT(EPOCH FROM r.created_at) * 1000000)::bigint,
                        (SELECT (EXTRACT(EPOCH FROM e.at) * 1000000)::bigint FROM run_events e
                          WHERE e.run_id = r.id AND e.status = 'ringing'
                          ORDER BY e.seq LIMIT 1)
                 FROM runs r WHERE r.id > $1",
                &[&after_id],
            )
            .await?;
        let mut latencies = Vec::new();
        let mut undialled = 0;
        for row in rows {
            let created: i64 = row.get(0);
            if created < from || created >= to {
                continue;
            }
            match row.get::<_, Option<i64>>(1) {
                Some(at) => latencies.push(at - created),
                None => undialled += 1,
            }
        }
        Ok((latencies, undialled))
    }

    /// Dial start times (µs) of a configuration's runs with an id above `after_id`, sorted.
    pub async fn dial_times(&self, config_id: i64, after_id: i64) -> Result<Vec<i64>> {
        let c = match self {
            Self::Sqlite(p) => return db::dial_times(p, config_id, after_id),
            Self::Postgres(c) => c,
        };
        let rows = c
            .query(
                "SELECT (EXTRACT(EPOCH FROM dialed_at) * 1000000)::bigint FROM runs
                 WHERE id > $1 AND config_id = $2 AND dialed_at IS NOT NULL
                 ORDER BY dialed_at",
                &[&after_id, &config_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_url_carries_no_credentials() {
        let u = parse_admin_url("postgres://bench:s3cret@127.0.0.1:5433/test").unwrap();
        assert_eq!(shown(&u), "postgres://127.0.0.1:5433/test");
        assert!(!shown(&u).contains("s3cret"));
    }

    #[test]
    fn only_postgres_urls_are_accepted() {
        assert!(parse_admin_url("mysql://root@127.0.0.1/test").is_err());
        assert!(parse_admin_url("not a url").is_err());
    }
}

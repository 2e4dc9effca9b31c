//! Where the server under test keeps its runs, read directly by the scenarios for timings the
//! API would only give page by page: the embedded SQLite file (see `db`), or a PostgreSQL
//! database the bench created for this one server and drops when it stops.
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
const PG_PREFIX: &str = "callgate_bench_";

/// A PostgreSQL database made for one server start.
pub struct PgDatabase {
    admin: Url,
    name: String,
}

impl PgDatabase {
    /// Creates an empty database next to the one `admin` names (which is only used to issue
    /// `CREATE DATABASE`/`DROP DATABASE`).
    pub async fn create(admin: &Url, seq: u32) -> Result<Self> {
        let name = format!("{PG_PREFIX}{}_{seq}", std::process::id());
        let client = connect(admin).await?;
        // The name is ours (prefix, pid, counter): nothing to quote. Two statements: one
        // simple query with both would run them in a transaction, which CREATE DATABASE
        // refuses.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .with_context(|| format!("cannot create database {name} on {}", shown(admin)))?;
        }
        Ok(Self {
            admin: admin.clone(),
            name,
        })
    }

    /// The URL the server is given: the admin URL with this database's name.
    pub fn url(&self) -> Url {
        let mut u = self.admin.clone();
        u.set_path(&format!("/{}", self.name));
        u
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn drop_database(&self) -> Result<()> {
        let client = connect(&self.admin).await?;
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| format!("cannot drop database {}", self.name))?;
        Ok(())
    }
}

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

async fn connect(url: &Url) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url.as_str(), NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", shown(url)))?;
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
    pub async fn postgres(url: &Url) -> Result<Self> {
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
    fn the_server_gets_the_admin_url_with_its_own_database() {
        let db = PgDatabase {
            admin: parse_admin_url("postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
                .unwrap(),
            name: "callgate_bench_1_2".into(),
        };
        assert_eq!(
            db.url().as_str(),
            "postgres://postgres@127.0.0.1:5432/callgate_bench_1_2?sslmode=disable"
        );
    }

    #[test]
    fn only_postgres_urls_are_accepted() {
        assert!(parse_admin_url("mysql://root@127.0.0.1/test").is_err());
        assert!(parse_admin_url("not a url").is_err());
    }
}

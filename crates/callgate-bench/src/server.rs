//! The callgate server under test: started from the release binary on a data directory of its
//! own, read from its first-start output (admin key, trigger path), and configured through its
//! management and admin APIs like an operator would.

use crate::process::Proc;
use crate::runsdb::{PG_PREFIX, RunsDb};
use anyhow::{Context, Result, bail};
use callgate_store_postgres::scratch::ScratchDatabase;
use reqwest::Url;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a start may take (a 1M-run database is scanned once at start).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// How to start a server.
#[derive(Clone)]
pub struct Launch {
    pub bin: PathBuf,
    pub admin_token: String,
    /// `CALLGATE_LOG` for the server; `warn` keeps logging out of the measurement.
    pub log_filter: String,
    /// PostgreSQL instead of the embedded SQLite: an admin URL; every first start gets a
    /// fresh database there.
    pub postgres: Option<Url>,
    /// Leave the PostgreSQL databases in place after the run (`--keep`).
    pub keep_databases: bool,
}

/// A running callgate.
pub struct Callgate {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub base: String,
    /// Process start → "listening" printed.
    pub startup: Duration,
    /// Where its runs are, for the timings read after each load.
    pub runs: RunsDb,
    /// The PostgreSQL database made for it, dropped when it stops.
    pg: Option<ScratchDatabase>,
    keep_database: bool,
    http: reqwest::Client,
    admin_token: String,
}

/// What the first start prints once.
#[derive(Clone, Debug)]
pub struct FirstStart {
    pub api_key: String,
    pub trigger_path: String,
}

/// The tenant the benchmark drives, after `configure`. Triggers without a configuration go to
/// the bootstrap simulator configuration, raised to an effectively unthrottled rate.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub api_key: String,
    pub trigger_path: String,
    /// A simulator configuration at the pacing scenario's rate.
    pub pacing_config: i64,
    /// A configuration so slow (one call per 1000 s) that runs queued on it stay queued.
    pub backlog_config: i64,
}

/// Simulator behaviour for every benchmark configuration: calls end 20 ms after the dial.
pub fn simulator_credentials() -> Value {
    json!({"ring_ms": 10, "talk_ms": 10})
}

impl Callgate {
    /// Starts the binary on `data_dir`. With `first_start`, waits for and returns the printed
    /// admin key and trigger path (the directory must be empty).
    pub async fn start(
        launch: &Launch,
        data_dir: &Path,
        log: &Path,
        first_start: bool,
    ) -> Result<(Self, Option<FirstStart>)> {
        Self::start_on(launch, data_dir, log, first_start, None).await
    }

    /// `start`; on PostgreSQL, on `database` (a copy of an earlier server's, see
    /// `stop_keeping_database`) instead of a fresh one when given.
    pub async fn start_on(
        launch: &Launch,
        data_dir: &Path,
        log: &Path,
        first_start: bool,
        database: Option<ScratchDatabase>,
    ) -> Result<(Self, Option<FirstStart>)> {
        std::fs::create_dir_all(data_dir)?;
        let pg = match (&launch.postgres, database) {
            (Some(_), Some(db)) => Some(db),
            (Some(_), None) if !first_start => {
                bail!("a restart on PostgreSQL needs the earlier server's database")
            }
            (None, Some(_)) => bail!("a database was given to a server on SQLite"),
            (None, None) => None,
            (Some(admin), None) => Some(
                ScratchDatabase::create_with_prefix(admin.as_str(), PG_PREFIX)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot create the server's database: {e}"))?,
            ),
        };
        let mut cmd = Command::new(&launch.bin);
        // A stray CALLGATE_* variable from the caller's shell must not change the setup.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CALLGATE_") {
                cmd.env_remove(&k);
            }
        }
        cmd.arg("serve")
            // The data directory is the working directory so no ./callgate.toml is picked up.
            .current_dir(data_dir)
            .env("CALLGATE_DATA_DIR", data_dir)
            .env("CALLGATE_BIND", "127.0.0.1:0")
            .env("CALLGATE_BOOTSTRAP", "true")
            .env("CALLGATE_ADMIN_TOKEN", &launch.admin_token)
            .env("CALLGATE_LOG", &launch.log_filter);
        if let Some(db) = &pg {
            cmd.env("CALLGATE_DATABASE_URL", db.url());
        }
        let started = Instant::now();
        let mut proc = Proc::spawn("callgate", cmd, log)?;
        let base = proc
            .wait_for(START_TIMEOUT, |text| {
                text.lines()
                    .find_map(|l| l.split("callgate is listening on ").nth(1))
                    .map(|u| u.trim().to_owned())
            })
            .await?;
        let startup = started.elapsed();
        let first = if first_start {
            Some(
                proc.wait_for(Duration::from_secs(30), parse_first_start)
                    .await?,
            )
        } else {
            None
        };
        let addr: SocketAddr = base
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("unexpected listening address {base:?}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let runs = match &pg {
            Some(db) => RunsDb::postgres(db.url()).await?,
            None => RunsDb::Sqlite(db_path(data_dir)),
        };
        Ok((
            Self {
                runs,
                pg,
                keep_database: launch.keep_databases,
                proc,
                addr,
                base,
                startup,
                http,
                admin_token: launch.admin_token.clone(),
            },
            first,
        ))
    }

    /// Stops the server and hands over its PostgreSQL database (None on SQLite) instead of
    /// dropping it, to be copied for later servers.
    pub async fn stop_keeping_database(mut self) -> Result<Option<ScratchDatabase>> {
        self.proc.stop(Duration::from_secs(20)).await?;
        // Dropping the rest closes `runs`, whose session would keep the database from being
        // copied.
        Ok(self.pg.take())
    }

    pub async fn stop(&mut self) -> Result<()> {
        self.proc.stop(Duration::from_secs(20)).await?;
        if let Some(db) = self.pg.take() {
            if self.keep_database {
                eprintln!("database kept: {}", db.keep());
            } else {
                db.drop_database()
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot drop the server's database: {e}"))?;
            }
        }
        Ok(())
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        req = match key {
            Some(k) => req.header("X-API-Key", k),
            None => req.bearer_auth(&self.admin_token),
        };
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("{method} {path} failed"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
    }

    /// Lifts the organisation's limits, makes the bootstrap simulator configuration fast and
    /// unthrottled, and adds the pacing and backlog configurations.
    pub async fn configure(&self, first: &FirstStart, pacing_cps: f64) -> Result<Tenant> {
        let key = first.api_key.as_str();
        let settings = self
            .call(
                reqwest::Method::GET,
                "/api/v1/organizations/settings",
                Some(key),
                None,
            )
            .await?;
        let org_id = settings["organization_id"]
            .as_i64()
            .context("settings have no organization_id")?;
        self.call(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/organizations/{org_id}/settings"),
            None,
            Some(&json!({"max_concurrent_calls": 100_000, "max_queued_calls": 10_000_000})),
        )
        .await?;
        let configs = self
            .call(
                reqwest::Method::GET,
                "/api/v1/organizations/telephony-configs",
                Some(key),
                None,
            )
            .await?;
        let fast_config = configs
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|c| c["is_default_outbound"] == true && c["provider"] == "simulator")
            })
            .and_then(|c| c["id"].as_i64())
            .context("no default simulator configuration after first start")?;
        self.call(
            reqwest::Method::PUT,
            &format!("/api/v1/organizations/telephony-configs/{fast_config}"),
            Some(key),
            Some(&json!({
                "calls_per_second": 100_000,
                "credentials": simulator_credentials(),
            })),
        )
        .await?;
        let create = |name: &str, cps: f64| {
            json!({
                "name": name,
                "provider": "simulator",
                "credentials": simulator_credentials(),
                "calls_per_second": cps,
            })
        };
        let pacing = self
            .call(
                reqwest::Method::POST,
                "/api/v1/organizations/telephony-configs",
                Some(key),
                Some(&create("Pacing benchmark", pacing_cps)),
            )
            .await?;
        let backlog = self
            .call(
                reqwest::Method::POST,
                "/api/v1/organizations/telephony-configs",
                Some(key),
                Some(&create("Backlog benchmark", 0.001)),
            )
            .await?;
        Ok(Tenant {
            api_key: first.api_key.clone(),
            trigger_path: first.trigger_path.clone(),
            pacing_config: pacing["id"].as_i64().context("created config has no id")?,
            backlog_config: backlog["id"].as_i64().context("created config has no id")?,
        })
    }

    /// Triggers one run with `body` and waits until it has ended; returns its run id.
    pub async fn one_finished_run(&self, tenant: &Tenant, body: &[u8]) -> Result<i64> {
        let res = self
            .http
            .post(format!(
                "{}/api/v1/public/agent/{}",
                self.base, tenant.trigger_path
            ))
            .header("X-API-Key", &tenant.api_key)
            .header("Content-Type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        let status = res.status();
        let v: Value = res.json().await.context("trigger answer is not JSON")?;
        if !status.is_success() {
            bail!("trigger answered {status}: {v}");
        }
        let run_id = v["workflow_run_id"]
            .as_i64()
            .context("no workflow_run_id")?;
        let call_id = v["call_id"].as_str().context("no call_id")?.to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/calls/{call_id}"),
                    Some(&tenant.api_key),
                    None,
                )
                .await?;
            if run["status"] == "ended" {
                return Ok(run_id);
            }
            if Instant::now() > deadline {
                bail!("run {run_id} did not end within 30 s: {run}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("callgate.db")
}

/// Finds the admin key and the production trigger path in the first-start banner
/// (`print_first_start` in crates/callgate/src/main.rs).
fn parse_first_start(text: &str) -> Option<FirstStart> {
    let lines: Vec<&str> = text.lines().collect();
    let key_at = lines.iter().position(|l| l.starts_with("Admin API key"))?;
    let api_key = lines.get(key_at + 1)?.trim().to_owned();
    let marker = "/api/v1/public/agent/";
    let trigger_path = lines
        .iter()
        .filter(|l| l.contains("curl -X POST") && !l.contains("/public/agent/test/"))
        .find_map(|l| l.split(marker).nth(1))?
        .split_whitespace()
        .next()?
        .to_owned();
    (!api_key.is_empty()).then_some(FirstStart {
        api_key,
        trigger_path,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_banner_yields_the_key_and_the_production_trigger_path() {
        let banner = "callgate is listening on http://127.0.0.1:4000\n\n\
            First start: created ...\n\nAdmin API key (shown only this once; store it now):\n  cg_abc123\n\n\
            Place a simulated call (production URL, published version):\n  \
            curl -X POST http://127.0.0.1:4000/api/v1/public/agent/7f3a-b2 -H 'Content-Type: application/json'\n\n\
            Test URL (runs the latest draft):\n  \
            curl -X POST http://127.0.0.1:4000/api/v1/public/agent/test/7f3a-b2 -H 'x'\n";
        let f = parse_first_start(banner).expect("banner parses");
        assert_eq!(f.api_key, "cg_abc123");
        assert_eq!(f.trigger_path, "7f3a-b2");
    }

    #[test]
    fn an_incomplete_banner_is_not_parsed_yet() {
        assert!(parse_first_start("callgate is listening on http://127.0.0.1:1\n").is_none());
    }
}

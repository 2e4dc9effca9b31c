//! `callgate call <trigger_path> <phone>`: triggers a call on a running server and follows it
//! live until it ends.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Args)]
pub struct CallArgs {
    pub trigger_path: String,
    pub phone_number: String,
    /// API key (or CALLGATE_API_KEY).
    #[arg(long, env = "CALLGATE_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Server base URL.
    #[arg(long, env = "CALLGATE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Use the test URL (latest draft).
    #[arg(long)]
    pub test: bool,
    /// JSON object passed as initial_context.
    #[arg(long)]
    pub context: Option<String>,
}

pub async fn run(a: CallArgs) -> Result<()> {
    let ctx: Value = match &a.context {
        Some(c) => serde_json::from_str(c).context("--context must be a JSON object")?,
        None => json!({}),
    };
    let base = a.url.trim_end_matches('/');
    let route = if a.test {
        "public/agent/test"
    } else {
        "public/agent"
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let res = client
        .post(format!("{base}/api/v1/{route}/{}", a.trigger_path))
        .header("X-API-Key", &a.api_key)
        .json(&json!({"phone_number": a.phone_number, "initial_context": ctx}))
        .send()
        .await
        .context("cannot reach the callgate server")?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "trigger refused ({status}): {}",
            body.get("detail")
                .and_then(Value::as_str)
                .unwrap_or("no detail")
        );
    }
    let call_id = body
        .get("call_id")
        .and_then(Value::as_str)
        .context("response had no call_id")?
        .to_owned();
    println!(
        "{} accepted: call {call_id}",
        body.get("workflow_run_name")
            .and_then(Value::as_str)
            .unwrap_or("run")
    );
    let mut seen = 0usize;
    loop {
        let run: Value = client
            .get(format!("{base}/api/v1/calls/{call_id}"))
            .header("X-API-Key", &a.api_key)
            .send()
            .await?
            .json()
            .await?;
        let events = run
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for e in events.iter().skip(seen) {
            println!(
                "  {}  {}",
                e.get("at").and_then(Value::as_str).unwrap_or(""),
                e.get("status").and_then(Value::as_str).unwrap_or("")
            );
        }
        seen = events.len();
        if run.get("status").and_then(Value::as_str) == Some("ended") {
            println!(
                "ended: outcome={} duration={}s",
                run.get("outcome").and_then(Value::as_str).unwrap_or("?"),
                run.get("duration_seconds")
                    .map(Value::to_string)
                    .unwrap_or_default()
            );
            for t in run
                .get("transcript")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "  {}: {}",
                    t.get("role").and_then(Value::as_str).unwrap_or(""),
                    t.get("text").and_then(Value::as_str).unwrap_or("")
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

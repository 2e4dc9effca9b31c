//! Telephony providers behind one trait. A provider places a call and reports what happens to it
//! as `ProviderEvent`s on a channel; the server applies them through the lifecycle state machine
//! (SPEC §8.1), whether they come from the in-process simulator or a carrier's callback.
#![forbid(unsafe_code)]

pub mod readiness;
pub mod simulator;

use async_trait::async_trait;
use callgate_store::{RunId, RunUpdate};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Providers callgate knows, with their default calls-per-second (SPEC §8.2).
pub const PROVIDERS: &[(&str, f64)] = &[
    ("simulator", 50.0),
    ("twilio", 1.0),
    ("vonage", 3.0),
    ("plivo", 2.0),
    ("telnyx", 1.0),
];

pub fn default_cps(provider: &str) -> Option<f64> {
    PROVIDERS
        .iter()
        .find(|(name, _)| *name == provider)
        .map(|(_, cps)| *cps)
}

/// A lifecycle observation about one run.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    pub run_id: RunId,
    pub update: RunUpdate,
}

pub type EventSink = mpsc::UnboundedSender<ProviderEvent>;

/// What a dial needs to know.
#[derive(Debug, Clone)]
pub struct DialRequest {
    pub run_id: RunId,
    pub call_id: uuid::Uuid,
    pub to: String,
    pub from: Option<String>,
    /// The rendered greeting the agent opens with.
    pub greeting: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialed {
    pub provider_call_id: String,
    /// The provider's own first event will carry the call id, so recording it separately
    /// would only cost a write.
    pub id_in_events: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// Worth retrying within the same attempt (timeouts, 5xx, 429).
    #[error("transient provider error: {0}")]
    Transient(String),
    /// The provider refused the call; the attempt ends as `failed`.
    #[error("{0}")]
    Rejected(String),
}

/// `ended_reason` of a call ended through the hangup API.
pub const HANGUP_REASON: &str = "api_hangup";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HangupError {
    /// The provider does not have this call live (it just ended, or another process's
    /// simulator plays it).
    #[error("{0}")]
    NotLive(String),
    /// Worth retrying (timeouts, 5xx, 429).
    #[error("transient provider error: {0}")]
    Transient(String),
}

#[async_trait]
pub trait Telephony: Send + Sync {
    async fn dial(&self, req: DialRequest) -> Result<Dialed, DialError>;
    /// Asks the provider to end a call it placed. The end arrives later, as the provider's own
    /// `Ended` event, like any other end of a call.
    async fn hangup(&self, provider_call_id: &str) -> Result<(), HangupError>;
}

/// Builds the dialler of a configuration from its (decrypted) credentials.
/// `simulated` is the process's register of the calls its simulators play, shared by every
/// simulator configuration (and every rebuild of one after a credentials change).
pub fn build(
    provider: &str,
    credentials: &serde_json::Value,
    clock: Arc<dyn callgate_domain::clock::Clock>,
    sink: EventSink,
    simulated: Arc<simulator::Playing>,
) -> Result<Arc<dyn Telephony>, String> {
    match provider {
        "simulator" => {
            let settings = simulator::Settings::from_credentials(credentials)?;
            Ok(Arc::new(simulator::Simulator::new(
                settings, clock, sink, simulated,
            )))
        }
        other => Err(format!(
            "dialling through '{other}' is not available in this build yet"
        )),
    }
}

//! The built-in simulator (SPEC §7.1): plays ringing → answered → ended, or busy / no answer /
//! failed / voicemail by its rules, through the same events a carrier's callbacks produce.

use crate::{DialError, DialRequest, Dialed, EventSink, ProviderEvent, Telephony};
use async_trait::async_trait;
use callgate_domain::clock::Clock;
use callgate_domain::lifecycle::{CallSignal, Outcome};
use callgate_store::{RunUpdate, TranscriptEntry};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimOutcome {
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Voicemail,
    /// The carrier refuses the dial request itself (what `Prefer: wait` reports as 400).
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// An exact number, or a prefix ending in `*`.
    #[serde(rename = "match")]
    pub pattern: String,
    pub outcome: SimOutcome,
    #[serde(default)]
    pub talk_ms: Option<u64>,
}

impl Rule {
    fn matches(&self, number: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => number.starts_with(prefix),
            None => number == self.pattern,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_ring_ms")]
    pub ring_ms: u64,
    #[serde(default = "default_talk_ms")]
    pub talk_ms: u64,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn default_ring_ms() -> u64 {
    1000
}
fn default_talk_ms() -> u64 {
    5000
}

impl Settings {
    /// Parses the simulator's `credentials` object; an absent or empty object means defaults.
    pub fn from_credentials(v: &serde_json::Value) -> Result<Self, String> {
        let v = if v.is_null() {
            serde_json::json!({})
        } else {
            v.clone()
        };
        serde_json::from_value(v).map_err(|e| format!("invalid simulator settings: {e}"))
    }

    /// First matching rule wins; the default is a completed call.
    fn plan(&self, number: &str) -> (SimOutcome, u64) {
        self.rules
            .iter()
            .find(|r| r.matches(number))
            .map(|r| (r.outcome, r.talk_ms.unwrap_or(self.talk_ms)))
            .unwrap_or((SimOutcome::Completed, self.talk_ms))
    }
}

pub struct Simulator {
    settings: Settings,
    clock: Arc<dyn Clock>,
    sink: EventSink,
}

impl Simulator {
    pub fn new(settings: Settings, clock: Arc<dyn Clock>, sink: EventSink) -> Self {
        Self {
            settings,
            clock,
            sink,
        }
    }
}

#[async_trait]
impl Telephony for Simulator {
    async fn dial(&self, req: DialRequest) -> Result<Dialed, DialError> {
        let provider_call_id = format!("SIM-{}", req.call_id.simple());
        let (outcome, talk_ms) = self.settings.plan(&req.to);
        if outcome == SimOutcome::Rejected {
            return Err(DialError::Rejected(format!(
                "simulated carrier rejected the call to {}",
                req.to
            )));
        }
        let play = Play {
            run_id: req.run_id,
            provider_call_id: provider_call_id.clone(),
            greeting: req.greeting.unwrap_or_default(),
            ring: Duration::from_millis(self.settings.ring_ms),
            talk: Duration::from_millis(talk_ms),
            outcome,
            clock: self.clock.clone(),
            sink: self.sink.clone(),
        };
        tokio::spawn(play.run());
        Ok(Dialed {
            provider_call_id,
            id_in_events: true,
        })
    }
}

/// One simulated call, played out on its own task.
struct Play {
    run_id: callgate_store::RunId,
    provider_call_id: String,
    greeting: String,
    ring: Duration,
    talk: Duration,
    outcome: SimOutcome,
    clock: Arc<dyn Clock>,
    sink: EventSink,
}

impl Play {
    fn send(&self, signal: CallSignal, status: &str, f: impl FnOnce(&mut RunUpdate)) {
        let mut update = RunUpdate::new(signal, self.clock.now());
        update.provider_call_id = Some(self.provider_call_id.clone());
        update.provider_status = Some(status.to_owned());
        f(&mut update);
        // A closed sink means the server is shutting down; the reaper settles the run later.
        let _ = self.sink.send(ProviderEvent {
            run_id: self.run_id,
            update,
        });
    }

    fn end(&self, outcome: Outcome, reason: &str, status: &str, f: impl FnOnce(&mut RunUpdate)) {
        self.send(
            CallSignal::Ended {
                outcome,
                reason: reason.to_owned(),
            },
            status,
            f,
        );
    }

    async fn run(self) {
        self.send(CallSignal::Ringing, "ringing", |_| {});
        tokio::time::sleep(self.ring).await;
        match self.outcome {
            SimOutcome::Busy => self.end(Outcome::Busy, "busy", "busy", |_| {}),
            SimOutcome::NoAnswer => self.end(Outcome::NoAnswer, "no_answer", "no-answer", |_| {}),
            // Refused at dial time; never played.
            SimOutcome::Rejected => {}
            SimOutcome::Failed => self.end(Outcome::Failed, "provider_error", "failed", |u| {
                u.error = Some("simulated carrier failure".into());
            }),
            SimOutcome::Voicemail => {
                self.send(
                    CallSignal::Answered {
                        answered_by: Some("machine".into()),
                    },
                    "in-progress",
                    |_| {},
                );
                let started = self.clock.now();
                tokio::time::sleep(self.talk).await;
                let greeting = self.greeting.clone();
                self.end(Outcome::Voicemail, "voicemail", "completed", |u| {
                    u.transcript = Some(vec![TranscriptEntry {
                        role: "agent".into(),
                        text: greeting,
                        at: started,
                    }]);
                });
            }
            SimOutcome::Completed => {
                self.send(
                    CallSignal::Answered {
                        answered_by: Some("human".into()),
                    },
                    "in-progress",
                    |_| {},
                );
                let started = self.clock.now();
                tokio::time::sleep(self.talk).await;
                let now = self.clock.now();
                let greeting = self.greeting.clone();
                self.end(Outcome::Completed, "agent_hangup", "completed", |u| {
                    u.transcript = Some(vec![
                        TranscriptEntry {
                            role: "agent".into(),
                            text: greeting,
                            at: started,
                        },
                        TranscriptEntry {
                            role: "user".into(),
                            text: "Yes, that works for me.".into(),
                            at: now,
                        },
                        TranscriptEntry {
                            role: "agent".into(),
                            text: "Great, thank you. Goodbye!".into(),
                            at: now,
                        },
                    ]);
                    u.extracted = Some(serde_json::json!({ "confirmed": true }));
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins_and_default_is_completed() {
        let s = Settings::from_credentials(&serde_json::json!({
            "talk_ms": 10,
            "rules": [
                {"match": "+1555000*", "outcome": "busy"},
                {"match": "+15550001234", "outcome": "failed"},
                {"match": "+4930*", "outcome": "voicemail", "talk_ms": 3}
            ]
        }))
        .expect("valid settings");
        assert_eq!(s.plan("+15550001234"), (SimOutcome::Busy, 10));
        assert_eq!(s.plan("+4930123456"), (SimOutcome::Voicemail, 3));
        assert_eq!(s.plan("+14155550100"), (SimOutcome::Completed, 10));
        assert_eq!(s.ring_ms, 1000);
    }

    #[test]
    fn unknown_settings_are_refused() {
        assert!(Settings::from_credentials(&serde_json::json!({"ring": 1})).is_err());
        assert!(
            Settings::from_credentials(
                &serde_json::json!({"rules": [{"match": "+1", "outcome": "maybe"}]})
            )
            .is_err()
        );
        assert!(Settings::from_credentials(&serde_json::Value::Null).is_ok());
    }
}

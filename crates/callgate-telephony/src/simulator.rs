//! The built-in simulator (SPEC §7.1): plays ringing → answered → ended, or busy / no answer /
//! failed / voicemail by its rules, through the same events a carrier's callbacks produce.

use crate::{
    DialError, DialRequest, Dialed, EventSink, HANGUP_REASON, HangupError, ProviderEvent, Telephony,
};
use async_trait::async_trait;
use callgate_domain::clock::Clock;
use callgate_domain::lifecycle::{CallSignal, Outcome};
use callgate_store::{RunUpdate, TranscriptEntry};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The calls this process's simulators are playing, by the run's call id: how a hangup
/// request reaches the task that plays the call.
#[derive(Default)]
pub struct Playing(Mutex<HashMap<uuid::Uuid, oneshot::Sender<()>>>);

impl Playing {
    fn start(&self, call_id: uuid::Uuid) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.0.lock() {
            m.insert(call_id, tx);
        }
        rx
    }

    fn stop(&self, call_id: &uuid::Uuid) -> Option<oneshot::Sender<()>> {
        self.0.lock().ok()?.remove(call_id)
    }

    /// How many calls are playing.
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
    playing: Arc<Playing>,
}

impl Simulator {
    pub fn new(
        settings: Settings,
        clock: Arc<dyn Clock>,
        sink: EventSink,
        playing: Arc<Playing>,
    ) -> Self {
        Self {
            settings,
            clock,
            sink,
            playing,
        }
    }
}

#[async_trait]
impl Telephony for Simulator {
    async fn dial(&self, req: DialRequest) -> Result<Dialed, DialError> {
        let provider_call_id = play_id(&req.call_id);
        let (outcome, talk_ms) = self.settings.plan(&req.to);
        if outcome == SimOutcome::Rejected {
            return Err(DialError::Rejected(format!(
                "simulated carrier rejected the call to {}",
                req.to
            )));
        }
        let hangup = self.playing.start(req.call_id);
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
        let playing = self.playing.clone();
        tokio::spawn(async move {
            play.run(hangup).await;
            playing.stop(&req.call_id);
        });
        Ok(Dialed {
            provider_call_id,
            id_in_events: true,
        })
    }

    async fn hangup(&self, provider_call_id: &str) -> Result<(), HangupError> {
        // A send fails only if the call just finished playing.
        let playing = call_id_of(provider_call_id).and_then(|id| self.playing.stop(&id));
        match playing.map(|tx| tx.send(())) {
            Some(Ok(())) => Ok(()),
            _ => Err(HangupError::NotLive(format!(
                "the simulator of this node is not playing call {provider_call_id}"
            ))),
        }
    }
}

/// The provider call id the simulator gives the call of a run.
fn play_id(call_id: &uuid::Uuid) -> String {
    format!("{PLAY_PREFIX}{}", call_id.simple())
}

/// The run's call id in a provider call id of the simulator.
fn call_id_of(provider_call_id: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(provider_call_id.strip_prefix(PLAY_PREFIX)?).ok()
}

const PLAY_PREFIX: &str = "SIM-";

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

    async fn run(self, hangup: oneshot::Receiver<()>) {
        let mut hangup = Some(hangup);
        self.send(CallSignal::Ringing, "ringing", |_| {});
        if hung_up_within(self.ring, &mut hangup).await {
            // Ended before anyone answered: what a carrier reports as canceled.
            self.end(Outcome::Canceled, HANGUP_REASON, "canceled", |_| {});
            return;
        }
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
                let cut = hung_up_within(self.talk, &mut hangup).await;
                let greeting = self.greeting.clone();
                let reason = if cut { HANGUP_REASON } else { "voicemail" };
                self.end(Outcome::Voicemail, reason, "completed", |u| {
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
                let cut = hung_up_within(self.talk, &mut hangup).await;
                let now = self.clock.now();
                let mut transcript = vec![TranscriptEntry {
                    role: "agent".into(),
                    text: self.greeting.clone(),
                    at: started,
                }];
                // Hung up: only the greeting was said before the line went down.
                let reason = if cut {
                    HANGUP_REASON
                } else {
                    transcript.extend([
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
                    "agent_hangup"
                };
                self.end(Outcome::Completed, reason, "completed", |u| {
                    u.transcript = Some(transcript);
                    if !cut {
                        u.extracted = Some(serde_json::json!({ "confirmed": true }));
                    }
                });
            }
        }
    }
}

/// Waits `d`; true as soon as a hangup is asked for instead. The request is heard once: a
/// register entry dropped without a request (never expected) leaves the call to play out.
async fn hung_up_within(d: Duration, hangup: &mut Option<oneshot::Receiver<()>>) -> bool {
    let Some(rx) = hangup.as_mut() else {
        tokio::time::sleep(d).await;
        return false;
    };
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    tokio::select! {
        _ = &mut sleep => false,
        asked = rx => {
            *hangup = None;
            if asked.is_ok() {
                return true;
            }
            sleep.await;
            false
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
    fn a_provider_call_id_names_its_run() {
        let id = uuid::Uuid::new_v4();
        assert_eq!(call_id_of(&play_id(&id)), Some(id));
        assert_eq!(call_id_of(&id.to_string()), None);
        assert_eq!(call_id_of("SIM-not-a-uuid"), None);
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

//! The run lifecycle of SPEC §8.1 as one state machine shared by the simulator and every real
//! provider. Providers report what they saw; `transition` decides whether that moves the run,
//! so repeated or out-of-order callbacks are harmless by construction.

use serde::{Deserialize, Serialize};

/// Where a run is in its life. The order of the variants is the order of progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Scheduled,
    Queued,
    Dialing,
    Ringing,
    InProgress,
    Ended,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        Self::Scheduled,
        Self::Queued,
        Self::Dialing,
        Self::Ringing,
        Self::InProgress,
        Self::Ended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Dialing => "dialing",
            Self::Ringing => "ringing",
            Self::InProgress => "in_progress",
            Self::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "scheduled" => Self::Scheduled,
            "queued" => Self::Queued,
            "dialing" => Self::Dialing,
            "ringing" => Self::Ringing,
            "in_progress" => Self::InProgress,
            "ended" => Self::Ended,
            _ => return None,
        })
    }

    /// A live call holds a concurrency slot from the dial request until it ends.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Dialing | Self::Ringing | Self::InProgress)
    }
}

/// How an ended run turned out (SPEC §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Busy,
    NoAnswer,
    Voicemail,
    Failed,
    Canceled,
    Expired,
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Self::Completed,
        Self::Busy,
        Self::NoAnswer,
        Self::Voicemail,
        Self::Failed,
        Self::Canceled,
        Self::Expired,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Voicemail => "voicemail",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// What a provider (or the dispatcher) observed about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSignal {
    /// The dial request left for the provider.
    Dialing,
    Ringing,
    /// Picked up; `answered_by` is `human`/`machine`/`unknown` when detection ran.
    Answered {
        answered_by: Option<String>,
    },
    Ended {
        outcome: Outcome,
        reason: String,
    },
}

/// The effect of a signal on a run in `current` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Move to this status (and record an event).
    To(RunStatus),
    /// Already there or past it: a duplicate or late callback, nothing changes.
    Ignore,
}

/// Decides how `signal` moves a run. Statuses only move forward; `Ended` is final and
/// reachable from every other status (a cancel, an expiry or a failed dial ends a run early).
pub fn transition(current: RunStatus, signal: &CallSignal) -> Transition {
    if current == RunStatus::Ended {
        return Transition::Ignore;
    }
    let target = match signal {
        CallSignal::Dialing => RunStatus::Dialing,
        CallSignal::Ringing => RunStatus::Ringing,
        CallSignal::Answered { .. } => RunStatus::InProgress,
        CallSignal::Ended { .. } => RunStatus::Ended,
    };
    if target > current {
        Transition::To(target)
    } else {
        Transition::Ignore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended() -> CallSignal {
        CallSignal::Ended {
            outcome: Outcome::Completed,
            reason: "user_hangup".into(),
        }
    }

    #[test]
    fn a_call_moves_forward_through_every_status() {
        assert_eq!(
            transition(RunStatus::Queued, &CallSignal::Dialing),
            Transition::To(RunStatus::Dialing)
        );
        assert_eq!(
            transition(RunStatus::Dialing, &CallSignal::Ringing),
            Transition::To(RunStatus::Ringing)
        );
        assert_eq!(
            transition(
                RunStatus::Ringing,
                &CallSignal::Answered { answered_by: None }
            ),
            Transition::To(RunStatus::InProgress)
        );
        assert_eq!(
            transition(RunStatus::InProgress, &ended()),
            Transition::To(RunStatus::Ended)
        );
    }

    #[test]
    fn late_and_repeated_signals_are_ignored() {
        assert_eq!(
            transition(RunStatus::InProgress, &CallSignal::Ringing),
            Transition::Ignore
        );
        assert_eq!(
            transition(RunStatus::Ringing, &CallSignal::Ringing),
            Transition::Ignore
        );
        assert_eq!(transition(RunStatus::Ended, &ended()), Transition::Ignore);
        assert_eq!(
            transition(
                RunStatus::Ended,
                &CallSignal::Answered { answered_by: None }
            ),
            Transition::Ignore
        );
    }

    #[test]
    fn answering_may_skip_ringing_and_ending_may_skip_everything() {
        assert_eq!(
            transition(
                RunStatus::Dialing,
                &CallSignal::Answered { answered_by: None }
            ),
            Transition::To(RunStatus::InProgress)
        );
        assert_eq!(
            transition(RunStatus::Queued, &ended()),
            Transition::To(RunStatus::Ended)
        );
    }

    #[test]
    fn statuses_and_outcomes_round_trip_through_their_names() {
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(Outcome::parse("nope"), None);
    }
}

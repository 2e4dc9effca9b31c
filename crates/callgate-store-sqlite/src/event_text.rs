//! A run's status history as the SQLite store keeps it in the run's row: a JSON array of
//! compact entries, `[status, at_micros, attempt]` with the provider's status and the detail
//! appended when present (`null` holding the place of a missing provider status before a
//! detail). Every status change rewrites the row and the pages it shares with other runs, so
//! the row is kept small: a compact entry is ~40 % of the object `RunEvent` serialises to
//! (migration 0009). Histories written before hold those objects; both read back alike.
//!
//! An entry is made before the writer thread (the one serial step of every call) except for
//! the two fields only the writer knows: the status the state machine picks and the run's
//! attempt.

use callgate_domain::json_text::push_string;
use callgate_domain::lifecycle::RunStatus;
use callgate_store::RunEvent;
use jiff::Timestamp;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, IgnoredAny, SeqAccess, Visitor};
use std::fmt::Write;

pub(crate) struct EventText {
    /// The time in microseconds, then what follows the attempt: the optional fields, if any,
    /// and the closing bracket. One buffer: every call event makes one of these on the
    /// request side.
    parts: String,
    /// Where the time ends in `parts`.
    at_end: usize,
}

impl EventText {
    pub(crate) fn new(at: Timestamp, provider_status: Option<&str>, detail: Option<&str>) -> Self {
        let mut parts = String::with_capacity(32);
        // Writing into a String cannot fail.
        let _ = write!(parts, "{}", at.as_microsecond());
        let at_end = parts.len();
        // `push_string` reserves room for each text it writes.
        match (provider_status, detail) {
            (None, None) => {}
            (Some(p), None) => {
                parts.push(',');
                push_string(&mut parts, p);
            }
            (p, Some(d)) => {
                parts.push(',');
                match p {
                    Some(p) => push_string(&mut parts, p),
                    None => parts.push_str("null"),
                }
                parts.push(',');
                push_string(&mut parts, d);
            }
        }
        parts.push(']');
        Self { parts, at_end }
    }

    pub(crate) fn text(&self, status: RunStatus, attempt: u32) -> String {
        let (at, tail) = self.parts.split_at(self.at_end);
        let mut s = String::with_capacity(24 + self.parts.len());
        s.push_str("[\"");
        s.push_str(status.as_str());
        s.push_str("\",");
        s.push_str(at);
        s.push(',');
        let _ = write!(s, "{attempt}");
        s.push_str(tail);
        s
    }

    /// The start of a `dialing` entry at `at`, to which SQL appends the attempt and `]`.
    pub(crate) fn dialing_head(at: Timestamp) -> String {
        format!("[\"dialing\",{},", at.as_microsecond())
    }
}

/// Reads a stored history: compact entries, `RunEvent` objects (written before version 9), or
/// both in one array (a run that lived through the upgrade).
pub(crate) fn parse_events(text: &str) -> rusqlite::Result<Vec<RunEvent>> {
    serde_json::from_str::<Vec<Stored>>(text)
        .map(|entries| entries.into_iter().map(|e| e.0).collect())
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

struct Stored(RunEvent);

impl<'de> Deserialize<'de> for Stored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StoredVisitor)
    }
}

struct StoredVisitor;

impl<'de> Visitor<'de> for StoredVisitor {
    type Value = Stored;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "a history entry: [status, at_micros, attempt, provider_status?, detail?] or an object",
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Stored, A::Error> {
        let missing = |what| A::Error::custom(format_args!("history entry without {what}"));
        let status: RunStatus = seq.next_element()?.ok_or_else(|| missing("a status"))?;
        let at: i64 = seq.next_element()?.ok_or_else(|| missing("a time"))?;
        let attempt: u32 = seq.next_element()?.ok_or_else(|| missing("an attempt"))?;
        let provider_status: Option<String> = seq.next_element()?.flatten();
        let detail: Option<String> = seq.next_element()?.flatten();
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(A::Error::custom(
                "history entry with more than five members",
            ));
        }
        let at = Timestamp::from_microsecond(at)
            .map_err(|_| A::Error::custom(format_args!("history time {at} out of range")))?;
        Ok(Stored(RunEvent {
            status,
            at,
            attempt,
            provider_status,
            detail,
        }))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Stored, A::Error> {
        RunEvent::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Stored)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::util::json_text;

    #[test]
    fn every_entry_reads_back_as_the_event_it_was_made_from() {
        let times: Vec<Timestamp> = [
            "1970-01-01T00:00:00Z",
            "2026-11-23T22:15:34.123456Z",
            "2026-11-23T22:15:34.100Z",
            "9999-12-30T21:59:59.999999Z",
        ]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
        let texts = [
            None,
            Some(""),
            Some("busy"),
            Some("quote \" backslash \\ newline \n tab \t bell \u{7} é 🐢"),
        ];
        let mut compared = 0;
        for at in &times {
            for provider_status in texts {
                for detail in texts {
                    let pending = EventText::new(*at, provider_status, detail);
                    for status in RunStatus::ALL {
                        for attempt in [0, 1, 7, u32::MAX] {
                            let event = RunEvent {
                                status,
                                at: *at,
                                attempt,
                                provider_status: provider_status.map(str::to_owned),
                                detail: detail.map(str::to_owned),
                            };
                            let entry = pending.text(status, attempt);
                            // Valid JSON on its own, so SQLite's JSON functions read it too.
                            serde_json::from_str::<serde_json::Value>(&entry).unwrap();
                            let stored = format!("[{entry},{entry}]");
                            assert_eq!(parse_events(&stored).unwrap(), vec![event.clone(), event]);
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 4 * 4 * 4 * 6 * 4);
    }

    #[test]
    fn entries_are_compact() {
        let at: Timestamp = "2026-11-25T04:45:21.471197Z".parse().unwrap();
        let entry = EventText::new(at, Some("ringing"), None).text(RunStatus::Ringing, 1);
        assert_eq!(entry, r#"["ringing",1795581921471197,1,"ringing"]"#);
        let entry = EventText::new(at, None, Some("no answer")).text(RunStatus::Ended, 2);
        assert_eq!(entry, r#"["ended",1795581921471197,2,null,"no answer"]"#);
        let head = EventText::dialing_head(at);
        assert_eq!(
            format!("{head}1]"),
            EventText::new(at, None, None).text(RunStatus::Dialing, 1)
        );
    }

    #[test]
    fn histories_written_before_version_9_and_mixed_ones_read_back() {
        let at: Timestamp = "2026-11-23T22:15:34.1Z".parse().unwrap();
        let old = RunEvent {
            status: RunStatus::Ringing,
            at,
            attempt: 1,
            provider_status: Some("ringing".into()),
            detail: None,
        };
        let ended = RunEvent {
            status: RunStatus::Ended,
            at,
            attempt: 1,
            provider_status: None,
            detail: Some("busy".into()),
        };
        let new = EventText::new(at, None, Some("busy")).text(RunStatus::Ended, 1);
        let stored = format!("[{},{new}]", json_text(&old).unwrap());
        assert_eq!(parse_events(&stored).unwrap(), vec![old, ended]);
        assert_eq!(parse_events("[]").unwrap(), vec![]);
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            r#"[["ringing",1]]"#,
            r#"[["ringing",1,1,null,null,7]]"#,
            r#"[["nonsense",1,1]]"#,
            r#"[["ringing","soon",1]]"#,
            r#"["ringing"]"#,
        ] {
            assert!(parse_events(bad).is_err(), "{bad}");
        }
    }
}

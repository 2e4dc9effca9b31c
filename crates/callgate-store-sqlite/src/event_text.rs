//! A history entry's JSON as stored, made before the writer thread (the one serial step of
//! every call) except for the two fields only the writer knows: the status the state machine
//! picks and the run's attempt. Byte for byte what serde writes for `RunEvent` (tested).

use callgate_domain::json_text::push_string;
use callgate_domain::lifecycle::RunStatus;
use jiff::Timestamp;
use std::fmt::Write;

pub(crate) struct EventText {
    /// The quoted time, then what follows the attempt: the optional fields, if any, and the
    /// closing brace. One buffer: every call event makes one of these on the request side.
    parts: String,
    /// Where the quoted time ends in `parts`.
    at_end: usize,
}

impl EventText {
    pub(crate) fn new(at: Timestamp, provider_status: Option<&str>, detail: Option<&str>) -> Self {
        let mut parts = String::with_capacity(64);
        callgate_domain::rfc3339::push_quoted(at, &mut parts);
        let at_end = parts.len();
        // Nothing follows the attempt but the brace, or the optional fields (in `RunEvent`'s
        // order, each only when present) and the brace.
        // `push_string` reserves room for each text it writes.
        if let Some(p) = provider_status {
            parts.push_str(",\"provider_status\":");
            push_string(&mut parts, p);
        }
        if let Some(d) = detail {
            parts.push_str(",\"detail\":");
            push_string(&mut parts, d);
        }
        parts.push('}');
        Self { parts, at_end }
    }

    pub(crate) fn text(&self, status: RunStatus, attempt: u32) -> String {
        let (at, tail) = self.parts.split_at(self.at_end);
        let mut s = String::with_capacity(48 + self.parts.len());
        s.push_str("{\"status\":\"");
        s.push_str(status.as_str());
        s.push_str("\",\"at\":");
        s.push_str(at);
        s.push_str(",\"attempt\":");
        // Writing into a String cannot fail.
        let _ = write!(s, "{attempt}");
        s.push_str(tail);
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::util::json_text;
    use callgate_store::RunEvent;

    #[test]
    fn the_text_is_what_serde_writes_for_the_event() {
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
                            assert_eq!(pending.text(status, attempt), json_text(&event).unwrap());
                            compared += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(compared, 4 * 4 * 4 * 6 * 4);
    }
}

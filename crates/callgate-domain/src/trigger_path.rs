//! Trigger paths: the public name of an API Trigger node (SPEC §1, §6.1).
//!
//! A trigger path appears in the URL `/api/v1/public/agent/{trigger_path}`, so its alphabet is
//! kept URL-safe: 1–36 characters of `[A-Za-z0-9_-]`. 36 is the length of a hyphenated UUID,
//! which is what a trigger gets when the user does not pick a path.

use std::fmt;

/// A trigger path known to follow the rule above.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TriggerPath(String);

/// Longest allowed trigger path, in characters (the length of a hyphenated UUID).
pub const MAX_TRIGGER_PATH_LEN: usize = 36;

/// Why a string is not a trigger path. Each message states the rule so an API client can fix
/// its input without reading the docs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerPathError {
    /// Zero characters.
    #[error("trigger path must not be empty (use 1-36 letters, digits, '_' or '-')")]
    Empty,
    /// More than [`MAX_TRIGGER_PATH_LEN`] characters.
    #[error("trigger path is {len} characters long; at most 36 are allowed")]
    TooLong {
        /// Length of the rejected input, in characters.
        len: usize,
    },
    /// A character outside `[A-Za-z0-9_-]`.
    #[error(
        "trigger path contains {found:?}; only letters A-Z and a-z, digits, '_' and '-' are allowed"
    )]
    InvalidChar {
        /// The first offending character.
        found: char,
    },
}

impl TriggerPath {
    /// Accepts exactly the language `^[A-Za-z0-9_-]{1,36}$`.
    pub fn parse(raw: &str) -> Result<TriggerPath, TriggerPathError> {
        if raw.is_empty() {
            return Err(TriggerPathError::Empty);
        }
        // The character rule is checked before the length so that a long string with a bad
        // character reports the character, which is usually the real mistake.
        if let Some(found) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(TriggerPathError::InvalidChar { found });
        }
        // Only ASCII is left here, so bytes equal characters.
        if raw.len() > MAX_TRIGGER_PATH_LEN {
            return Err(TriggerPathError::TooLong { len: raw.len() });
        }
        Ok(TriggerPath(raw.to_owned()))
    }

    /// A fresh random path (a UUID v4 in its hyphenated lowercase form), used when a trigger
    /// node is saved without one (SPEC §6.1).
    pub fn generate() -> TriggerPath {
        TriggerPath(uuid::Uuid::new_v4().to_string())
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TriggerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TriggerPath {
    type Error = TriggerPathError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        TriggerPath::parse(&value)
    }
}

impl From<TriggerPath> for String {
    fn from(value: TriggerPath) -> Self {
        value.0
    }
}

impl std::str::FromStr for TriggerPath {
    type Err = TriggerPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TriggerPath::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_letters_digits_underscore_and_dash() {
        for raw in ["a", "Z", "0", "_", "-", "sales-lead_2024", &"x".repeat(36)] {
            assert_eq!(
                TriggerPath::parse(raw).map(String::from),
                Ok(raw.to_owned())
            );
        }
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(TriggerPath::parse(""), Err(TriggerPathError::Empty));
    }

    #[test]
    fn rejects_37_characters() {
        assert_eq!(
            TriggerPath::parse(&"a".repeat(37)),
            Err(TriggerPathError::TooLong { len: 37 })
        );
    }

    #[test]
    fn rejects_characters_outside_the_alphabet() {
        for (raw, found) in [
            ("a b", ' '),
            ("a/b", '/'),
            ("a.b", '.'),
            ("é", 'é'),
            ("a%2F", '%'),
        ] {
            assert_eq!(
                TriggerPath::parse(raw),
                Err(TriggerPathError::InvalidChar { found })
            );
        }
    }

    #[test]
    fn generated_paths_are_valid_and_distinct() {
        let a = TriggerPath::generate();
        let b = TriggerPath::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(TriggerPath::parse(a.as_str()), Ok(a));
    }

    #[test]
    fn error_messages_state_the_rule() {
        let msg = TriggerPath::parse("a b").unwrap_err().to_string();
        assert!(msg.contains("letters"), "{msg}");
        let msg = TriggerPath::parse(&"a".repeat(40)).unwrap_err().to_string();
        assert!(msg.contains("36"), "{msg}");
    }

    #[test]
    fn serde_round_trips_and_rejects_bad_paths() {
        let p: TriggerPath = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"abc\"");
        assert!(serde_json::from_str::<TriggerPath>("\"a b\"").is_err());
    }
}

//! Destination phone numbers in E.164 form (SPEC §2.1).
//!
//! `E164` is the only way a phone number enters the system: its constructor strips the
//! separators people type (spaces, dashes, dots, parentheses), requires `+` and 8–15 digits,
//! and then asks libphonenumber's metadata (the `phonenumber` crate) whether the number can
//! exist. After that nobody re-checks.
//!
//! Note on the North American 555 numbers used in docs and tests: libphonenumber's metadata for
//! `US` accepts any subscriber number `[2-9]\d{6}` behind a real area code, so fictional numbers
//! such as `+1 415 555 0100` or `+1 415 555 2671` are valid. A number whose *area code* is 555
//! (`+1 555 000 1234`) is not, because no such area code exists; that rejection is wanted.

mod rules;

use std::fmt;

/// A phone number known to be valid, held in normalised E.164 form: `+` and digits only.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

/// Why a string is not an acceptable phone number. The `Invalid` text is the exact `detail`
/// Dograh returns (SPEC §2.3 check 5), so callers can show it as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing but whitespace or separators was given.
    #[error("phone number is empty")]
    Empty,
    /// The shape is wrong, or libphonenumber knows no such number.
    #[error("Invalid phone number format")]
    Invalid,
}

/// Shortest and longest digit counts E.164 allows after the `+` (country code included).
const MIN_DIGITS: usize = 8;
const MAX_DIGITS: usize = 15;

impl E164 {
    /// Parses user input such as `+1 (415) 555-0100` into `+14155550100`.
    pub fn parse(raw: &str) -> Result<E164, PhoneError> {
        let mut stripped = String::with_capacity(raw.len());
        stripped.extend(
            raw.chars()
                .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '.' | '(' | ')')),
        );
        if stripped.is_empty() {
            return Err(PhoneError::Empty);
        }
        // Check the plain shape ourselves first: it keeps letters, extensions ("x12") and
        // national formats out, and bounds what we hand to the metadata parser.
        if !has_e164_shape(&stripped) {
            return Err(PhoneError::Invalid);
        }
        // Most numbers are decided by the precompiled rules (see `rules`); the rest by the
        // crate's full parser.
        match rules::fast_check(&stripped[1..]) {
            Some(true) => Ok(E164(stripped)),
            Some(false) => Err(PhoneError::Invalid),
            None => slow_parse(&stripped),
        }
    }

    /// The normalised number, e.g. `+14155550100`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// libphonenumber's parser and validity check on an input of E.164 shape.
fn slow_parse(stripped: &str) -> Result<E164, PhoneError> {
    let parsed = phonenumber::parse(None, stripped).map_err(|_| PhoneError::Invalid)?;
    if !phonenumber::is_valid(&parsed) {
        return Err(PhoneError::Invalid);
    }
    // Re-format from the parsed number rather than keeping the input: libphonenumber drops a
    // national trunk prefix written after the country code ("+44 (0)20 …"), and the stored
    // form must be the one the carrier expects. The result is checked again so that
    // `parse(x.as_str()) == Ok(x)` always holds.
    // Built by hand instead of through the crate's formatter, whose `Display` can fail and
    // would then panic inside `to_string`. `NationalNumber` keeps Italian leading zeros.
    let normalised = format!("+{}{}", parsed.code().value(), parsed.national());
    if !has_e164_shape(&normalised) {
        return Err(PhoneError::Invalid);
    }
    Ok(E164(normalised))
}

/// `+` followed by 8–15 ASCII digits, the first of which (the country code) is not 0.
fn has_e164_shape(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (MIN_DIGITS..=MAX_DIGITS).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for E164 {
    type Error = PhoneError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        E164::parse(&value)
    }
}

impl From<E164> for String {
    fn from(value: E164) -> Self {
        value.0
    }
}

impl std::str::FromStr for E164 {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        E164::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match E164::parse(raw) {
            Ok(n) => n.to_string(),
            Err(e) => panic!("{raw:?} should be valid: {e}"),
        }
    }

    #[test]
    fn plain_e164_numbers_are_accepted() {
        assert_eq!(ok("+14155550100"), "+14155550100");
        assert_eq!(ok("+14155552671"), "+14155552671");
        assert_eq!(ok("+4930123456"), "+4930123456");
        assert_eq!(ok("+442079460958"), "+442079460958");
    }

    #[test]
    fn fictional_555_01xx_numbers_behind_real_area_codes_are_valid() {
        for n in [
            "+14155550100",
            "+14155550199",
            "+12015550123",
            "+12125550123",
        ] {
            assert_eq!(ok(n), n);
        }
    }

    #[test]
    fn area_code_555_does_not_exist() {
        assert_eq!(E164::parse("+15550001234"), Err(PhoneError::Invalid));
    }

    #[test]
    fn separators_are_stripped() {
        assert_eq!(ok("+1 (415) 555-0100"), "+14155550100");
        assert_eq!(ok("+1.415.555.0100"), "+14155550100");
        assert_eq!(ok(" +49 30 123456 "), "+4930123456");
        assert_eq!(ok("+1\t415 555 0100"), "+14155550100");
    }

    #[test]
    fn trunk_prefix_after_country_code_is_dropped() {
        assert_eq!(ok("+44 (0)20 7946 0958"), "+442079460958");
    }

    #[test]
    fn empty_input_is_reported_as_empty() {
        assert_eq!(E164::parse(""), Err(PhoneError::Empty));
        assert_eq!(E164::parse(" - ( ) "), Err(PhoneError::Empty));
    }

    #[test]
    fn wrong_shapes_are_invalid() {
        for raw in [
            "14155550100",       // missing '+'
            "+1415",             // too short
            "+1234567",          // 7 digits
            "+1234567890123456", // 16 digits
            "+1415555O100",      // letter O
            "+1 415 555 0100 x12",
            "++14155550100",
            "+0123456789",
            "+",
            "+１４１５５５５０１００", // full-width digits
        ] {
            assert_eq!(E164::parse(raw), Err(PhoneError::Invalid), "{raw:?}");
        }
    }

    #[test]
    fn numbers_libphonenumber_does_not_know_are_invalid() {
        assert_eq!(E164::parse("+10000000000"), Err(PhoneError::Invalid));
        assert_eq!(E164::parse("+99912345678"), Err(PhoneError::Invalid));
    }

    #[test]
    fn serde_parses_and_writes_the_normalised_string() {
        let n: E164 = serde_json::from_str("\"+1 415-555-0100\"").unwrap();
        assert_eq!(n.as_str(), "+14155550100");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"+14155550100\"");
        assert!(serde_json::from_str::<E164>("\"nope\"").is_err());
    }

    #[test]
    fn invalid_message_matches_dograh_detail() {
        assert_eq!(
            PhoneError::Invalid.to_string(),
            "Invalid phone number format"
        );
    }
}

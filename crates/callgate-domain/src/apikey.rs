//! API key material (SPEC §11).
//!
//! A raw key is `cg_` followed by 32 random bytes in unpadded base64url (43 characters), so it
//! is URL- and header-safe and carries 256 bits of entropy. Only its SHA-256 hash and a short
//! display prefix are stored: with that much entropy a plain, unsalted hash cannot be brute
//! forced, and it lets the store find a key by an indexed equality lookup.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Every callgate key starts with this, so secret scanners and humans can recognise one.
pub const KEY_PREFIX: &str = "cg_";

/// Length of the stored display prefix, in characters (`cg_` plus five key characters).
pub const DISPLAY_PREFIX_LEN: usize = 8;

/// A freshly created key. `raw` is shown to the user once and then dropped; the other two
/// fields are what gets stored.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The secret, `cg_` + 43 base64url characters.
    pub raw: String,
    /// SHA-256 of `raw`'s UTF-8 bytes.
    pub hash: [u8; 32],
    /// The first 8 characters of `raw`, shown in key lists so users can tell keys apart.
    pub prefix: String,
}

/// Written by hand so the secret never reaches a log through `{:?}` (SPEC §11).
impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("raw", &"<redacted>")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Creates a new key from the thread-local CSPRNG.
pub fn generate_api_key() -> GeneratedKey {
    let bytes: [u8; 32] = rand::random();
    let raw = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    GeneratedKey {
        hash: hash_api_key(&raw),
        prefix: display_prefix(&raw),
        raw,
    }
}

/// The value stored for (and looked up by) a raw key. Any string is hashed, so a presented key
/// of the wrong shape simply matches nothing.
pub fn hash_api_key(raw: &str) -> [u8; 32] {
    Sha256::digest(raw.as_bytes()).into()
}

/// The first [`DISPLAY_PREFIX_LEN`] characters of `raw` (fewer if `raw` is shorter).
pub fn display_prefix(raw: &str) -> String {
    raw.chars().take(DISPLAY_PREFIX_LEN).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_has_the_documented_shape() {
        let key = generate_api_key();
        assert!(key.raw.starts_with("cg_"));
        assert_eq!(key.raw.len(), 3 + 43);
        let body = &key.raw[3..];
        assert!(
            body.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_eq!(key.prefix, &key.raw[..8]);
        assert_eq!(key.hash, hash_api_key(&key.raw));
    }

    #[test]
    fn keys_are_distinct() {
        assert_ne!(generate_api_key().raw, generate_api_key().raw);
    }

    #[test]
    fn hash_is_sha256_of_the_raw_key() {
        // SHA-256("abc"), from FIPS 180-2 appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let got: String = hash_api_key("abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn display_prefix_takes_eight_characters() {
        assert_eq!(display_prefix("cg_AbCdEfGh"), "cg_AbCdE");
        assert_eq!(display_prefix("short"), "short");
        assert_eq!(display_prefix("ééééééééé"), "éééééééé");
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let key = generate_api_key();
        assert!(!format!("{key:?}").contains(&key.raw));
    }
}

//! Sealing provider credentials at rest (SPEC §11) with ChaCha20-Poly1305 under the server
//! key. The embedded default generates the key into the data directory on first start.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use std::path::Path;

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("server key must be 32 bytes of base64")]
    BadKey,
    #[error("cannot read or write the server key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl Sealer {
    pub fn from_base64(b64: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD.decode(b64.trim()).map_err(|_| KeyError::BadKey)?;
        if bytes.len() != 32 {
            return Err(KeyError::BadKey);
        }
        Ok(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        })
    }

    /// Loads `server.key` from the data directory, creating it (mode 0600) when missing.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join("server.key");
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(s) => Self::from_base64(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let b64 = STANDARD.encode(key);
                std::fs::write(&path, &b64).map_err(io)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                        .map_err(io)?;
                }
                Self::from_base64(&b64)
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce length cannot fail; an empty result would
        // only make the configuration unreadable, never leak it.
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(Nonce::from_slice(nonce), body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_credentials_open_only_with_the_same_key() {
        let a = Sealer::from_base64(&STANDARD.encode([7u8; 32])).expect("key");
        let b = Sealer::from_base64(&STANDARD.encode([8u8; 32])).expect("key");
        let sealed = a.seal(b"{\"auth_token\":\"s3cret\"}");
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(
            a.open(&sealed).as_deref(),
            Some(&b"{\"auth_token\":\"s3cret\"}"[..])
        );
        assert_eq!(b.open(&sealed), None);
        assert!(Sealer::from_base64("short").is_err());
    }
}

//! The envelope that protects software key material at rest.
//!
//! A sealed blob is `version (1 byte) || nonce (12 bytes) || AES-256-GCM ciphertext+tag`,
//! encrypted under the key-encryption key (KEK) with a fresh random nonce. The associated data
//! binds the key id, the algorithm and the envelope version, so a blob copied onto another key
//! row, relabelled with another algorithm, or altered in any byte fails to open.
//!
//! Plaintext key bytes only ever live in `Zeroizing` buffers.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::{Algorithm, KeyError, Result};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// The 32-byte key-encryption key. Never printed, zeroized on drop.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

impl Kek {
    /// Wraps 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Kek(Zeroizing::new(bytes))
    }

    /// A new random KEK.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(bytes.as_mut());
        Kek(bytes)
    }

    /// Parses a KEK written as 64 hex digits or as standard base64 of 32 bytes (surrounding
    /// white space ignored), or given as exactly 32 raw bytes.
    pub fn parse(text: &[u8]) -> std::result::Result<Self, String> {
        if text.len() == 32 && std::str::from_utf8(text).is_err() {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(text);
            return Ok(Kek::from_bytes(bytes));
        }
        let trimmed = std::str::from_utf8(text)
            .map_err(|_| "the KEK is neither 32 raw bytes nor text".to_string())?
            .trim();
        let decoded = Zeroizing::new(if trimmed.len() == 64 {
            hex::decode(trimmed).map_err(|_| "the KEK has 64 characters but is not hex")?
        } else {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(trimmed)
                .map_err(|_| "the KEK must be 64 hex digits or base64 of 32 bytes")?
        });
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            format!(
                "the KEK must be 32 bytes; this one is {} bytes",
                decoded.len()
            )
        })?;
        Ok(Kek::from_bytes(bytes))
    }

    /// The KEK as lowercase hex, for writing a new KEK file.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.0[..]))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&(*self.0).into())
    }
}

/// A sealed software key: the envelope described in the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey(Vec<u8>);

impl SealedKey {
    /// Wraps stored bytes (not yet checked).
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        SealedKey(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Seals `plaintext` for the key `key_id` of algorithm `algorithm`.
    pub fn seal(kek: &Kek, key_id: &str, algorithm: Algorithm, plaintext: &[u8]) -> Result<Self> {
        Self::seal_bound(kek, key_id, algorithm.as_str(), plaintext)
    }

    /// Seals `plaintext` for the object `id` of kind `kind` (an algorithm name, or another
    /// secret's kind such as `bip39-seed`); the same id and kind are needed to open it.
    pub fn seal_bound(kek: &Kek, id: &str, kind: &str, plaintext: &[u8]) -> Result<Self> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce);
        let aad = associated_data(id, kind, VERSION);
        let ciphertext = kek
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyError::Unavailable("sealing failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(SealedKey(out))
    }

    /// Opens the blob for `key_id` / `algorithm`. Fails if any byte, the id or the algorithm
    /// differs from what was sealed, or the KEK is not the one that sealed it.
    pub fn open(
        &self,
        kek: &Kek,
        key_id: &str,
        algorithm: Algorithm,
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.open_bound(kek, key_id, algorithm.as_str())
    }

    /// Opens a blob sealed with [`SealedKey::seal_bound`] for `key_id` and `kind`.
    pub fn open_bound(&self, kek: &Kek, key_id: &str, kind: &str) -> Result<Zeroizing<Vec<u8>>> {
        let fail = |reason: &str| KeyError::Unseal {
            key_id: key_id.to_string(),
            reason: reason.to_string(),
        };
        let (&version, rest) = self
            .0
            .split_first()
            .ok_or_else(|| fail("the blob is empty"))?;
        if version != VERSION {
            return Err(fail(&format!("unknown envelope version {version}")));
        }
        if rest.len() < NONCE_LEN + 16 {
            return Err(fail("the blob is truncated"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| fail("bad nonce"))?;
        let aad = associated_data(key_id, kind, version);
        kek.cipher()
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                fail("authentication failed (a different KEK, or the blob, key id or algorithm was altered)")
            })
    }
}

fn associated_data(key_id: &str, kind: &str, version: u8) -> Vec<u8> {
    format!("keyward-sealed-key|v{version}|{key_id}|{kind}").into_bytes()
}

/// Fills `buf` from the operating system's CSPRNG. Failing to get randomness is not
/// recoverable for a signing server, so it aborts the process rather than continue weakly.
pub(crate) fn fill_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system random number generator failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let kek = Kek::generate();
        let sealed = SealedKey::seal(&kek, "k1", Algorithm::Ed25519, b"secret").unwrap();
        assert!(!sealed.as_bytes().windows(6).any(|w| w == b"secret"));
        let opened = sealed.open(&kek, "k1", Algorithm::Ed25519).unwrap();
        assert_eq!(opened.as_slice(), b"secret");
    }

    #[test]
    fn a_changed_byte_id_algorithm_or_kek_fails_to_open() {
        let kek = Kek::generate();
        let sealed = SealedKey::seal(&kek, "k1", Algorithm::P256, b"secret").unwrap();
        for i in 0..sealed.as_bytes().len() {
            let mut bytes = sealed.as_bytes().to_vec();
            bytes[i] ^= 0x01;
            let err = SealedKey::from_stored(bytes)
                .open(&kek, "k1", Algorithm::P256)
                .unwrap_err();
            assert!(matches!(err, KeyError::Unseal { .. }), "byte {i}: {err}");
        }
        let err = sealed.open(&kek, "k2", Algorithm::P256).unwrap_err();
        assert!(
            err.to_string().contains("sealed key k2 failed to open"),
            "{err}"
        );
        assert!(sealed.open(&kek, "k1", Algorithm::Secp256k1).is_err());
        assert!(
            sealed
                .open(&Kek::generate(), "k1", Algorithm::P256)
                .is_err()
        );
    }

    #[test]
    fn kek_parses_hex_base64_and_raw_and_never_prints() {
        let kek = Kek::generate();
        let hex = kek.to_hex();
        let again = Kek::parse(hex.as_bytes()).unwrap();
        assert_eq!(&again.0[..], &kek.0[..]);
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&kek.0[..]);
        assert_eq!(
            Kek::parse(format!("{b64}\n").as_bytes()).unwrap().0[..],
            kek.0[..]
        );
        assert!(Kek::parse(b"too short").is_err());
        assert_eq!(format!("{kek:?}"), "Kek([redacted])");
    }
}

//! Raw digests and messages for keys of purpose `raw`.
//!
//! A caller sends either `digest` (its length must match `hash`) or `message`. For ECDSA and
//! RSA keys a message is hashed here and only the digest goes to the backend; Ed25519 keys
//! sign the message itself (PureEdDSA), and a digest sent to an Ed25519 key is signed as the
//! message.

use base64::Engine as _;
use keyward_policy::{Intent, RawIntent};

use super::{IntentError, SignIntent};
use crate::keys::{Algorithm, HashAlg, Purpose, SignInputKind, ToSign};

/// Decodes standard base64, naming the field when it fails.
pub fn decode_b64(field: &str, value: &str) -> Result<Vec<u8>, IntentError> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| IntentError::Malformed(format!("{field} is not valid standard base64: {e}")))
}

/// The payload of a raw sign or verify request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawPayload {
    /// A digest made with the hash.
    Digest(HashAlg, Vec<u8>),
    /// A message, hashed with the hash unless the key signs messages.
    Message(HashAlg, Vec<u8>),
}

impl RawPayload {
    /// Decodes `digest` xor `message` (base64) with `hash` (default sha256).
    pub fn decode(
        digest: Option<&str>,
        message: Option<&str>,
        hash: Option<&str>,
    ) -> Result<Self, IntentError> {
        let hash: HashAlg = match hash {
            Some(h) => h.parse().map_err(IntentError::Invalid)?,
            None => HashAlg::Sha256,
        };
        match (digest, message) {
            (Some(d), None) => {
                let digest = decode_b64("digest", d)?;
                if digest.len() != hash.output_len() {
                    return Err(IntentError::Invalid(format!(
                        "digest is {} bytes, but a {hash} digest is {} bytes",
                        digest.len(),
                        hash.output_len()
                    )));
                }
                Ok(RawPayload::Digest(hash, digest))
            }
            (None, Some(m)) => Ok(RawPayload::Message(hash, decode_b64("message", m)?)),
            (Some(_), Some(_)) => Err(IntentError::Invalid(
                "send either digest or message, not both".into(),
            )),
            (None, None) => Err(IntentError::Invalid("send a digest or a message".into())),
        }
    }

    /// What a key of `algorithm` signs for this payload.
    pub fn to_sign(&self, algorithm: Algorithm) -> ToSign {
        match (algorithm.input_kind(), self) {
            (
                SignInputKind::Message,
                RawPayload::Digest(_, bytes) | RawPayload::Message(_, bytes),
            ) => ToSign::Message(bytes.clone()),
            (SignInputKind::Digest, RawPayload::Digest(hash, digest)) => ToSign::Digest {
                hash: *hash,
                digest: digest.clone(),
            },
            (SignInputKind::Digest, RawPayload::Message(hash, message)) => ToSign::Digest {
                hash: *hash,
                digest: hash.digest(message),
            },
        }
    }

    /// The intent and the bytes to sign for a key of `algorithm`.
    pub fn into_intent(self, algorithm: Algorithm) -> SignIntent {
        let to_sign = self.to_sign(algorithm);
        let intent = match &self {
            RawPayload::Digest(hash, digest) => RawIntent {
                prehashed: true,
                hash: hash.to_string(),
                digest: hex::encode(digest),
                message_len: None,
            },
            RawPayload::Message(hash, message) => {
                // Ed25519 signs the message itself; policies still get a digest to match on.
                let hash = if algorithm.input_kind() == SignInputKind::Message {
                    HashAlg::Sha256
                } else {
                    *hash
                };
                RawIntent {
                    prehashed: false,
                    hash: hash.to_string(),
                    digest: hex::encode(hash.digest(message)),
                    message_len: Some(message.len() as u64),
                }
            }
        };
        SignIntent {
            purpose: Purpose::Raw,
            intent: Intent::Raw(intent),
            to_sign,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_length_must_match_the_hash() {
        let d32 = base64::engine::general_purpose::STANDARD.encode([0u8; 32]);
        assert!(RawPayload::decode(Some(&d32), None, None).is_ok());
        let err = RawPayload::decode(Some(&d32), None, Some("sha512")).unwrap_err();
        assert!(matches!(err, IntentError::Invalid(m) if m.contains("64 bytes")));
        assert!(matches!(
            RawPayload::decode(Some("%%%"), None, None).unwrap_err(),
            IntentError::Malformed(_)
        ));
        assert!(RawPayload::decode(None, None, None).is_err());
        assert!(RawPayload::decode(Some(&d32), Some(&d32), None).is_err());
        assert!(RawPayload::decode(Some(&d32), None, Some("md5")).is_err());
    }

    #[test]
    fn messages_are_hashed_for_digest_keys_only() {
        let p = RawPayload::Message(HashAlg::Sha384, b"abc".to_vec());
        assert_eq!(
            p.to_sign(Algorithm::P256),
            ToSign::Digest {
                hash: HashAlg::Sha384,
                digest: HashAlg::Sha384.digest(b"abc")
            }
        );
        assert_eq!(
            p.to_sign(Algorithm::Ed25519),
            ToSign::Message(b"abc".to_vec())
        );
    }
}

//! The exact bytes to sign and the signature options, as stored with a pending request, so
//! that what approvers saw is what gets signed. Never changes the bytes it round-trips.

use serde::{Deserialize, Serialize};

use crate::keys::{SignOptions, ToSign};
use crate::store::StoreError;

/// The bytes and options to sign, as stored with a pending request.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToSign {
    kind: String,
    hash: Option<String>,
    bytes: String,
    scheme: String,
    format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tweak: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<StoredToSign>,
}

pub(super) fn encode_to_sign(to_sign: &ToSign, options: SignOptions) -> String {
    serde_json::to_string(&stored_to_sign(to_sign, options)).unwrap_or_default()
}

fn stored_to_sign(to_sign: &ToSign, options: SignOptions) -> StoredToSign {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let part = |kind: &str, hash: Option<String>, bytes: &[u8]| StoredToSign {
        kind: kind.into(),
        hash,
        bytes: b64(bytes),
        scheme: options.scheme.to_string(),
        format: options.format.to_string(),
        tweak: None,
        parts: Vec::new(),
    };
    match to_sign {
        ToSign::Digest { hash, digest } => part("digest", Some(hash.to_string()), digest),
        ToSign::Message(m) => part("message", None, m),
        ToSign::Schnorr { digest, tweak } => StoredToSign {
            tweak: tweak.as_deref().map(b64),
            ..part("schnorr", None, digest)
        },
        ToSign::Batch(parts) => StoredToSign {
            parts: parts.iter().map(|p| stored_to_sign(p, options)).collect(),
            ..part("batch", None, &[])
        },
    }
}

pub(super) fn decode_to_sign(text: &str) -> Result<(ToSign, SignOptions), StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("stored bytes to sign: {e}"));
    let stored: StoredToSign = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    from_stored(stored)
}

fn from_stored(stored: StoredToSign) -> Result<(ToSign, SignOptions), StoreError> {
    use base64::Engine as _;
    let corrupt = |e: String| StoreError::Corrupt(format!("stored bytes to sign: {e}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&stored.bytes)
        .map_err(|e| corrupt(e.to_string()))?;
    let options = SignOptions {
        scheme: stored.scheme.parse().map_err(corrupt)?,
        format: stored.format.parse().map_err(corrupt)?,
    };
    let to_sign = match (stored.kind.as_str(), stored.hash) {
        ("digest", Some(hash)) => ToSign::Digest {
            hash: hash.parse().map_err(corrupt)?,
            digest: bytes,
        },
        ("message", None) => ToSign::Message(bytes),
        ("schnorr", None) => ToSign::Schnorr {
            digest: bytes,
            tweak: match &stored.tweak {
                Some(t) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(t)
                        .map_err(|e| corrupt(e.to_string()))?,
                ),
                None => None,
            },
        },
        ("batch", None) => ToSign::Batch(
            stored
                .parts
                .into_iter()
                .map(|p| from_stored(p).map(|(t, _)| t))
                .collect::<Result<_, _>>()?,
        ),
        (kind, _) => return Err(corrupt(format!("unknown kind {kind}"))),
    };
    Ok((to_sign, options))
}

/// The signature options stored with a pending request (its `to_sign` column).
pub fn stored_sign_options(to_sign: &str) -> Result<SignOptions, StoreError> {
    decode_to_sign(to_sign).map(|(_, options)| options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::HashAlg;

    #[test]
    fn stored_bytes_to_sign_round_trip_batches_and_schnorr() {
        let batch = ToSign::Batch(vec![
            ToSign::Digest {
                hash: HashAlg::Sha256,
                digest: vec![1; 32],
            },
            ToSign::Schnorr {
                digest: vec![2; 32],
                tweak: Some(vec![3; 32]),
            },
            ToSign::Schnorr {
                digest: vec![4; 32],
                tweak: None,
            },
        ]);
        let options = SignOptions::default();
        let (back, _) = decode_to_sign(&encode_to_sign(&batch, options)).unwrap();
        assert_eq!(back, batch);
        let single = ToSign::Message(b"m".to_vec());
        let (back, _) = decode_to_sign(&encode_to_sign(&single, options)).unwrap();
        assert_eq!(back, single);
    }
}

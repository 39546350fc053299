//! Public keys: SPKI DER as stored, PEM and JWK as shown, and signature verification.

use base64::Engine as _;
use pkcs8::{DecodePublicKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use super::{Algorithm, EcdsaFormat, HashAlg, KeyError, Result, RsaScheme, ToSign};

/// A public key with its algorithm, held as DER `SubjectPublicKeyInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: Algorithm,
    spki_der: Vec<u8>,
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn bad_key(e: impl std::fmt::Display) -> KeyError {
    KeyError::InvalidKeyMaterial(format!("public key does not parse: {e}"))
}

impl PublicKey {
    /// Wraps and checks a DER SPKI for `algorithm`.
    pub fn from_spki_der(algorithm: Algorithm, spki_der: Vec<u8>) -> Result<Self> {
        let key = PublicKey {
            algorithm,
            spki_der,
        };
        key.parsed()?;
        Ok(key)
    }

    /// Builds the SPKI of any key type that can encode one.
    pub(crate) fn encode(algorithm: Algorithm, key: &impl EncodePublicKey) -> Result<Self> {
        let der = key
            .to_public_key_der()
            .map_err(|e| KeyError::InvalidKeyMaterial(format!("cannot encode public key: {e}")))?;
        Ok(PublicKey {
            algorithm,
            spki_der: der.as_bytes().to_vec(),
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// PEM `PUBLIC KEY` (what `openssl pkey -pubin` reads).
    pub fn to_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.spki_der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// A secp256k1 key as a SEC1 point (33 bytes compressed, 65 uncompressed); an error for
    /// keys of other algorithms.
    pub fn secp256k1_sec1(&self, compress: bool) -> Result<Vec<u8>> {
        match self.parsed()? {
            Parsed::Secp256k1(k) => Ok(k.to_sec1_point(compress).as_bytes().to_vec()),
            _ => Err(bad_key(format!(
                "{} is not a secp256k1 key",
                self.algorithm
            ))),
        }
    }

    /// The key as a JSON Web Key (RFC 7517/8037), without private parts.
    pub fn to_jwk(&self) -> Result<Value> {
        Ok(match self.parsed()? {
            Parsed::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(k.as_bytes())})
            }
            Parsed::Secp256k1(k) => {
                let point = k.to_sec1_point(false);
                json!({"kty": "EC", "crv": "secp256k1",
                       "x": b64url(point.x().map(|x| x.as_slice()).unwrap_or_default()),
                       "y": b64url(point.y().map(|y| y.as_slice()).unwrap_or_default())})
            }
            Parsed::P256(k) => {
                let point = k.to_sec1_point(false);
                json!({"kty": "EC", "crv": "P-256",
                       "x": b64url(point.x().map(|x| x.as_slice()).unwrap_or_default()),
                       "y": b64url(point.y().map(|y| y.as_slice()).unwrap_or_default())})
            }
            Parsed::Rsa(k) => {
                json!({"kty": "RSA", "n": b64url(&k.n_bytes()), "e": b64url(&k.e_bytes())})
            }
        })
    }

    /// Checks `signature` over `input` made with `options`. `Ok(false)` when it does not verify.
    pub fn verify(
        &self,
        input: &ToSign,
        signature: &[u8],
        scheme: RsaScheme,
        format: EcdsaFormat,
    ) -> Result<bool> {
        Ok(match (self.parsed()?, input) {
            (Parsed::Ed25519(k), ToSign::Message(msg)) => {
                let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
                    return Ok(false);
                };
                k.verify_strict(msg, &sig).is_ok()
            }
            (Parsed::Secp256k1(k), ToSign::Digest { digest, .. }) => {
                use signature::hazmat::PrehashVerifier;
                let sig = match format {
                    EcdsaFormat::Der => k256::ecdsa::Signature::from_der(signature),
                    EcdsaFormat::Raw => k256::ecdsa::Signature::from_slice(signature),
                };
                sig.is_ok_and(|sig| k.verify_prehash(digest, &sig).is_ok())
            }
            (Parsed::Secp256k1(k), ToSign::Schnorr { digest, tweak }) => {
                super::schnorr::verify(&k, digest, tweak.as_deref(), signature)?
            }
            (Parsed::P256(k), ToSign::Digest { digest, .. }) => {
                use signature::hazmat::PrehashVerifier;
                let sig = match format {
                    EcdsaFormat::Der => p256::ecdsa::Signature::from_der(signature),
                    EcdsaFormat::Raw => p256::ecdsa::Signature::from_slice(signature),
                };
                sig.is_ok_and(|sig| k.verify_prehash(digest, &sig).is_ok())
            }
            (Parsed::Rsa(k), ToSign::Digest { hash, digest }) => {
                use sha2::{Sha256, Sha384, Sha512};
                match (scheme, hash) {
                    (RsaScheme::Pkcs1v15, HashAlg::Sha256) => {
                        k.pkcs1v15_verify_prehash::<Sha256>(digest, signature)
                    }
                    (RsaScheme::Pkcs1v15, HashAlg::Sha384) => {
                        k.pkcs1v15_verify_prehash::<Sha384>(digest, signature)
                    }
                    (RsaScheme::Pkcs1v15, HashAlg::Sha512) => {
                        k.pkcs1v15_verify_prehash::<Sha512>(digest, signature)
                    }
                    (RsaScheme::Pss, HashAlg::Sha256) => {
                        k.pss_verify_prehash::<Sha256>(digest, signature)
                    }
                    (RsaScheme::Pss, HashAlg::Sha384) => {
                        k.pss_verify_prehash::<Sha384>(digest, signature)
                    }
                    (RsaScheme::Pss, HashAlg::Sha512) => {
                        k.pss_verify_prehash::<Sha512>(digest, signature)
                    }
                }
                .is_ok()
            }
            _ => {
                return Err(KeyError::InvalidInput(format!(
                    "{} keys verify {}",
                    self.algorithm,
                    if self.algorithm == Algorithm::Ed25519 {
                        "messages"
                    } else {
                        "digests"
                    }
                )));
            }
        })
    }

    /// An Ed25519 key's 32 bytes; an error for keys of other algorithms.
    pub fn ed25519_bytes(&self) -> Result<[u8; 32]> {
        match self.parsed()? {
            Parsed::Ed25519(k) => Ok(k.to_bytes()),
            _ => Err(bad_key(format!("{} is not an Ed25519 key", self.algorithm))),
        }
    }

    /// The secp256k1 verifying key; an error for keys of other algorithms.
    pub(crate) fn secp256k1_key(&self) -> Result<k256::ecdsa::VerifyingKey> {
        match self.parsed()? {
            Parsed::Secp256k1(k) => Ok(k),
            _ => Err(bad_key(format!(
                "{} is not a secp256k1 key",
                self.algorithm
            ))),
        }
    }

    fn parsed(&self) -> Result<Parsed> {
        let der = &self.spki_der;
        Ok(match self.algorithm {
            Algorithm::Ed25519 => Parsed::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(der).map_err(bad_key)?,
            ),
            Algorithm::Secp256k1 => Parsed::Secp256k1(
                k256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(bad_key)?,
            ),
            Algorithm::P256 => {
                Parsed::P256(p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(bad_key)?)
            }
            alg => {
                let key = rsa::PublicKey::from_public_key_der(der).map_err(bad_key)?;
                let bits = key.size() * 8;
                if Some(bits) != alg.rsa_bits() {
                    return Err(bad_key(format!("{bits}-bit modulus for {alg}")));
                }
                Parsed::Rsa(key)
            }
        })
    }
}

enum Parsed {
    Ed25519(ed25519_dalek::VerifyingKey),
    Secp256k1(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    Rsa(rsa::PublicKey),
}

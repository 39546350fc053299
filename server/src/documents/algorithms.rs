//! Signature and digest algorithm identifiers, the signer adapter for the X.509 builders, and
//! signature checks against a `SubjectPublicKeyInfo`.
//!
//! `KeySigner` lets `x509_cert`'s certificate, CRL and request builders sign through a
//! `SigningKey`; it is used for the CA key (certificates, CRLs) and for a key's own CSR, never
//! for documents (those go through the pipeline).

use std::sync::Arc;

use der::asn1::BitString;
use der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier, SubjectPublicKeyInfoOwned};

use super::{DocumentError, Result};
use crate::keys::{
    Algorithm, EcdsaFormat, HashAlg, PublicKey, RsaScheme, SignOptions, SigningKey, ToSign,
};

/// Object identifiers used by document signing.
pub mod oid {
    use spki::ObjectIdentifier as Oid;

    /// rsaEncryption.
    pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    /// id-RSASSA-PSS.
    pub const RSASSA_PSS: Oid = Oid::new_unwrap("1.2.840.113549.1.1.10");
    /// sha256WithRSAEncryption.
    pub const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
    /// sha384WithRSAEncryption.
    pub const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
    /// sha512WithRSAEncryption.
    pub const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
    /// id-ecPublicKey.
    pub const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    /// secp256r1 (P-256).
    pub const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    /// ecdsa-with-SHA256.
    pub const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
    /// ecdsa-with-SHA384.
    pub const ECDSA_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
    /// ecdsa-with-SHA512.
    pub const ECDSA_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");
    /// id-Ed25519.
    pub const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
    /// id-sha256.
    pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    /// id-sha384.
    pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    /// id-sha512.
    pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
    /// id-data.
    pub const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    /// id-signedData.
    pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    /// id-contentType.
    pub const CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    /// id-messageDigest.
    pub const MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    /// id-signingTime.
    pub const SIGNING_TIME: Oid = Oid::new_unwrap("1.2.840.113549.1.9.5");
    /// id-aa-signingCertificateV2 (RFC 5035).
    pub const SIGNING_CERTIFICATE_V2: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.2.47");
    /// id-kp-emailProtection.
    pub const KP_EMAIL_PROTECTION: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.4");
    /// id-kp-documentSigning (RFC 9336).
    pub const KP_DOCUMENT_SIGNING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.36");
}

/// The AlgorithmIdentifier of a hash (parameters absent, RFC 5754).
pub fn digest_algorithm(hash: HashAlg) -> AlgorithmIdentifierOwned {
    let oid = match hash {
        HashAlg::Sha256 => oid::SHA256,
        HashAlg::Sha384 => oid::SHA384,
        HashAlg::Sha512 => oid::SHA512,
    };
    AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    }
}

/// The hash named by a digest AlgorithmIdentifier.
pub fn hash_of_digest_oid(oid: &ObjectIdentifier) -> Option<HashAlg> {
    match *oid {
        oid::SHA256 => Some(HashAlg::Sha256),
        oid::SHA384 => Some(HashAlg::Sha384),
        oid::SHA512 => Some(HashAlg::Sha512),
        _ => None,
    }
}

/// The AlgorithmIdentifier of a signature made by a key of `algorithm` over a `hash` digest.
pub fn signature_algorithm(
    algorithm: Algorithm,
    hash: HashAlg,
    scheme: RsaScheme,
) -> Result<AlgorithmIdentifierOwned> {
    let plain = |oid| AlgorithmIdentifierOwned {
        oid,
        parameters: None,
    };
    Ok(match algorithm {
        Algorithm::Ed25519 => plain(oid::ED25519),
        Algorithm::P256 => plain(match hash {
            HashAlg::Sha256 => oid::ECDSA_SHA256,
            HashAlg::Sha384 => oid::ECDSA_SHA384,
            HashAlg::Sha512 => oid::ECDSA_SHA512,
        }),
        Algorithm::Secp256k1 => {
            return Err(DocumentError::Unsupported(
                "secp256k1 keys cannot hold X.509 document certificates; use p256, RSA or ed25519"
                    .into(),
            ));
        }
        _ => match scheme {
            RsaScheme::Pkcs1v15 => AlgorithmIdentifierOwned {
                oid: match hash {
                    HashAlg::Sha256 => oid::SHA256_WITH_RSA,
                    HashAlg::Sha384 => oid::SHA384_WITH_RSA,
                    HashAlg::Sha512 => oid::SHA512_WITH_RSA,
                },
                parameters: Some(Any::null()),
            },
            // RSASSA-PSS-params: the hash, MGF1 with the same hash, a salt as long as the hash
            // (what the software backend signs with), trailer field 1.
            RsaScheme::Pss => match hash {
                HashAlg::Sha256 => rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha256>(),
                HashAlg::Sha384 => rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha384>(),
                HashAlg::Sha512 => rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha512>(),
            }
            .map_err(|e| DocumentError::Encoding(e.to_string()))?,
        },
    })
}

/// The Java-style name of a signature algorithm, e.g. `SHA256withRSA`.
pub fn signature_name(algorithm: Algorithm, hash: HashAlg, scheme: RsaScheme) -> String {
    let h = match hash {
        HashAlg::Sha256 => "SHA256",
        HashAlg::Sha384 => "SHA384",
        HashAlg::Sha512 => "SHA512",
    };
    match algorithm {
        Algorithm::Ed25519 => "Ed25519".into(),
        Algorithm::P256 | Algorithm::Secp256k1 => format!("{h}withECDSA"),
        _ => match scheme {
            RsaScheme::Pkcs1v15 => format!("{h}withRSA"),
            RsaScheme::Pss => format!("{h}withRSAandMGF1"),
        },
    }
}

/// What a key of `algorithm` is handed to sign `message` with `hash`.
pub fn to_sign(algorithm: Algorithm, hash: HashAlg, message: &[u8]) -> ToSign {
    match algorithm {
        Algorithm::Ed25519 => ToSign::Message(message.to_vec()),
        _ => ToSign::Digest {
            hash,
            digest: hash.digest(message),
        },
    }
}

/// A signature value as the builders want it.
#[derive(Debug, Clone)]
pub struct RawSignature(pub Vec<u8>);

impl spki::SignatureBitStringEncoding for RawSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

/// A public key as the builders want it: the SPKI DER.
#[derive(Debug, Clone)]
pub struct SpkiBytes(pub Vec<u8>);

impl spki::EncodePublicKey for SpkiBytes {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::from_der(&self.0)?)
    }
}

/// Signs for the X.509 builders through a `SigningKey` (CA key, or a key's own CSR).
pub struct KeySigner {
    key: Arc<dyn SigningKey>,
    spki: Vec<u8>,
    hash: HashAlg,
    scheme: RsaScheme,
}

impl KeySigner {
    /// A signer with `key`, whose public key is `spki` (DER), hashing with `hash`.
    pub fn new(key: Arc<dyn SigningKey>, spki: Vec<u8>, hash: HashAlg, scheme: RsaScheme) -> Self {
        KeySigner {
            key,
            spki,
            hash,
            scheme,
        }
    }

    /// The default hash for a key: SHA-512 for Ed25519 (unused by PureEdDSA), SHA-256 otherwise.
    pub fn default_hash(algorithm: Algorithm) -> HashAlg {
        match algorithm {
            Algorithm::Ed25519 => HashAlg::Sha512,
            Algorithm::Rsa4096 => HashAlg::Sha384,
            _ => HashAlg::Sha256,
        }
    }
}

impl signature::Keypair for KeySigner {
    type VerifyingKey = SpkiBytes;

    fn verifying_key(&self) -> SpkiBytes {
        SpkiBytes(self.spki.clone())
    }
}

impl spki::DynSignatureAlgorithmIdentifier for KeySigner {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        signature_algorithm(self.key.algorithm(), self.hash, self.scheme)
            .map_err(|_| spki::Error::KeyMalformed)
    }
}

impl signature::Signer<RawSignature> for KeySigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<RawSignature, signature::Error> {
        let input = to_sign(self.key.algorithm(), self.hash, msg);
        let options = SignOptions {
            scheme: self.scheme,
            format: EcdsaFormat::Der,
        };
        self.key
            .sign(&input, options)
            .map(|s| RawSignature(s.bytes))
            .map_err(|e| {
                tracing::error!(error = %e, "X.509 signing failed");
                signature::Error::new()
            })
    }
}

/// The Keyward algorithm of a public key, when it is one Keyward can check.
pub fn key_algorithm(spki: &SubjectPublicKeyInfoOwned) -> Option<Algorithm> {
    match spki.algorithm.oid {
        oid::ED25519 => Some(Algorithm::Ed25519),
        oid::EC_PUBLIC_KEY => {
            let curve: ObjectIdentifier = spki.algorithm.parameters.as_ref()?.decode_as().ok()?;
            (curve == oid::P256).then_some(Algorithm::P256)
        }
        oid::RSA_ENCRYPTION => {
            use rsa::traits::PublicKeyParts;
            let der = spki.to_der().ok()?;
            let key = <rsa::PublicKey as spki::DecodePublicKey>::from_public_key_der(&der).ok()?;
            match key.size() * 8 {
                2048 => Some(Algorithm::Rsa2048),
                3072 => Some(Algorithm::Rsa3072),
                4096 => Some(Algorithm::Rsa4096),
                _ => None,
            }
        }
        _ => None,
    }
}

/// How a signature AlgorithmIdentifier says to check a signature.
fn signature_params(
    alg: &AlgorithmIdentifierOwned,
    default_hash: Option<HashAlg>,
) -> std::result::Result<(HashAlg, RsaScheme), String> {
    let with_default =
        || default_hash.ok_or_else(|| format!("signature algorithm {} names no hash", alg.oid));
    Ok(match alg.oid {
        oid::SHA256_WITH_RSA | oid::ECDSA_SHA256 => (HashAlg::Sha256, RsaScheme::Pkcs1v15),
        oid::SHA384_WITH_RSA | oid::ECDSA_SHA384 => (HashAlg::Sha384, RsaScheme::Pkcs1v15),
        oid::SHA512_WITH_RSA | oid::ECDSA_SHA512 => (HashAlg::Sha512, RsaScheme::Pkcs1v15),
        oid::RSA_ENCRYPTION | oid::ED25519 | oid::EC_PUBLIC_KEY => {
            (with_default()?, RsaScheme::Pkcs1v15)
        }
        oid::RSASSA_PSS => {
            let params = alg
                .parameters
                .as_ref()
                .ok_or("RSASSA-PSS without parameters")?;
            let params: pkcs1::RsaPssParamsOwned = params
                .decode_as()
                .map_err(|e| format!("RSASSA-PSS parameters do not parse: {e}"))?;
            let hash = hash_of_digest_oid(&params.hash.oid)
                .ok_or_else(|| format!("unsupported PSS hash {}", params.hash.oid))?;
            (hash, RsaScheme::Pss)
        }
        other => return Err(format!("unsupported signature algorithm {other}")),
    })
}

/// Checks `signature` over `message` under `spki` with the signature algorithm `alg`.
/// `default_hash` is the hash for algorithm identifiers that name none (CMS `rsaEncryption`).
/// `Err` says why the signature cannot be checked at all; `Ok(false)` means it does not verify.
pub fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    default_hash: Option<HashAlg>,
    message: &[u8],
    signature: &[u8],
) -> std::result::Result<bool, String> {
    let algorithm = key_algorithm(spki)
        .ok_or_else(|| format!("unsupported public key algorithm {}", spki.algorithm.oid))?;
    let (hash, scheme) = signature_params(alg, default_hash)?;
    let der = spki.to_der().map_err(|e| e.to_string())?;
    let key = PublicKey::from_spki_der(algorithm, der).map_err(|e| e.to_string())?;
    let input = to_sign(algorithm, hash, message);
    key.verify(&input, signature, scheme, EcdsaFormat::Der)
        .map_err(|e| e.to_string())
}

/// Checks that `cert` was signed by the holder of `issuer_spki`.
pub fn verify_certificate(
    cert: &x509_cert::Certificate,
    issuer_spki: &SubjectPublicKeyInfoOwned,
) -> std::result::Result<bool, String> {
    let tbs = cert.tbs_certificate().to_der().map_err(|e| e.to_string())?;
    let sig = cert
        .signature()
        .as_bytes()
        .ok_or("the signature is not a whole number of bytes")?;
    verify_signature(issuer_spki, cert.signature_algorithm(), None, &tbs, sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_identifiers_carry_their_hash_and_parse_back() {
        for hash in HashAlg::ALL {
            let id = signature_algorithm(Algorithm::Rsa2048, *hash, RsaScheme::Pss).unwrap();
            assert_eq!(id.oid, oid::RSASSA_PSS);
            assert_eq!(
                signature_params(&id, None).unwrap(),
                (*hash, RsaScheme::Pss)
            );
            let id = signature_algorithm(Algorithm::Rsa2048, *hash, RsaScheme::Pkcs1v15).unwrap();
            assert_eq!(
                signature_params(&id, None).unwrap(),
                (*hash, RsaScheme::Pkcs1v15)
            );
        }
        let ec = signature_algorithm(Algorithm::P256, HashAlg::Sha256, RsaScheme::Pss).unwrap();
        assert_eq!(ec.oid, oid::ECDSA_SHA256);
        assert!(ec.parameters.is_none());
        assert!(
            signature_algorithm(Algorithm::Secp256k1, HashAlg::Sha256, RsaScheme::Pkcs1v15)
                .is_err()
        );
        assert_eq!(
            signature_name(Algorithm::Rsa3072, HashAlg::Sha384, RsaScheme::Pss),
            "SHA384withRSAandMGF1"
        );
    }
}

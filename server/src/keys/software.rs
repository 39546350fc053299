//! Software key slots: private keys held as PKCS#8 DER, sealed under the KEK at rest
//! (see `sealed`), parsed into memory only to sign.
//!
//! Never stores or returns unsealed key bytes; every plaintext buffer is zeroized on drop.

use std::sync::Arc;

use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use zeroize::Zeroizing;

use super::sealed::fill_random;
use super::{
    Algorithm, EcdsaFormat, GeneratedKey, HashAlg, Kek, KeyBackend, KeyError, PublicKey, Result,
    RsaScheme, SealedKey, SignOptions, Signature, SigningKey, ToSign,
};

/// The software slot backend, named `software`.
#[derive(Debug, Clone)]
pub struct SoftwareBackend {
    kek: Kek,
}

/// A parsed private key held in memory.
enum SoftwareKey {
    Ed25519(ed25519_dalek::SigningKey),
    Secp256k1(k256::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
    /// RSA keys sign through AWS-LC, which signs several times faster than the `rsa` crate
    /// (and generates keys faster); the `rsa` crate still parses public keys and verifies.
    Rsa(Algorithm, aws_lc_rs::rsa::KeyPair),
}

impl SoftwareBackend {
    /// The backend's name.
    pub const NAME: &'static str = "software";

    /// A backend sealing under `kek`.
    pub fn new(kek: Kek) -> Self {
        SoftwareBackend { kek }
    }

    /// Imports a PKCS#8 private key (PEM). When `expected` is given the key must be of that
    /// algorithm. Returns the key sealed for `key_id`.
    pub fn import_pkcs8_pem(
        &self,
        key_id: &str,
        pem: &str,
        expected: Option<Algorithm>,
    ) -> Result<(Algorithm, GeneratedKey)> {
        let pem = pem.trim();
        if pem.contains("ENCRYPTED PRIVATE KEY") {
            return Err(KeyError::InvalidKeyMaterial(
                "encrypted PKCS#8 is not accepted; decrypt it first (openssl pkcs8 -topk8 -nocrypt)".into(),
            ));
        }
        if !pem.starts_with("-----BEGIN PRIVATE KEY-----") {
            return Err(KeyError::InvalidKeyMaterial(
                "expected a PKCS#8 PEM starting with -----BEGIN PRIVATE KEY----- \
                 (convert other formats with openssl pkcs8 -topk8 -nocrypt)"
                    .into(),
            ));
        }
        let (label, der) = pkcs8::der::pem::decode_vec(pem.as_bytes())
            .map_err(|e| KeyError::InvalidKeyMaterial(format!("the PEM does not decode: {e}")))?;
        let der = Zeroizing::new(der);
        if label != "PRIVATE KEY" {
            return Err(KeyError::InvalidKeyMaterial(format!(
                "unexpected PEM label {label:?}"
            )));
        }
        let algorithm = detect_algorithm(&der)?;
        if let Some(expected) = expected
            && expected != algorithm
        {
            return Err(KeyError::InvalidKeyMaterial(format!(
                "the key is {algorithm}, but {expected} was asked for"
            )));
        }
        let key = SoftwareKey::from_pkcs8(algorithm, &der)?;
        Ok((algorithm, self.finish(key_id, key)?))
    }

    /// Makes a software key of `algorithm` from its raw private scalar or seed (32 bytes:
    /// secp256k1 or Ed25519), e.g. a key derived from an HD wallet, sealed for `key_id`.
    pub fn import_raw(
        &self,
        key_id: &str,
        algorithm: Algorithm,
        secret: &[u8],
    ) -> Result<GeneratedKey> {
        let key = match algorithm {
            Algorithm::Secp256k1 => {
                SoftwareKey::Secp256k1(k256::ecdsa::SigningKey::from_slice(secret).map_err(
                    |_| KeyError::InvalidKeyMaterial("not a valid secp256k1 private key".into()),
                )?)
            }
            Algorithm::Ed25519 => {
                let bytes: &[u8; 32] = secret.try_into().map_err(|_| {
                    KeyError::InvalidKeyMaterial("an Ed25519 seed is 32 bytes".into())
                })?;
                SoftwareKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(bytes))
            }
            other => {
                return Err(KeyError::InvalidKeyMaterial(format!(
                    "raw {other} keys cannot be imported"
                )));
            }
        };
        self.finish(key_id, key)
    }

    /// Seals a secret that is not itself a key (e.g. an HD wallet's seed) for the object `id`
    /// of kind `kind`; returns the blob to store.
    pub fn seal_secret(&self, id: &str, kind: &str, secret: &[u8]) -> Result<Vec<u8>> {
        Ok(SealedKey::seal_bound(&self.kek, id, kind, secret)?
            .as_bytes()
            .to_vec())
    }

    /// Opens a blob made by [`SoftwareBackend::seal_secret`].
    pub fn open_secret(&self, id: &str, kind: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        SealedKey::from_stored(blob.to_vec()).open_bound(&self.kek, id, kind)
    }

    fn finish(&self, key_id: &str, key: SoftwareKey) -> Result<GeneratedKey> {
        let algorithm = key.algorithm();
        let der = key.to_pkcs8()?;
        let sealed = SealedKey::seal(&self.kek, key_id, algorithm, &der)?;
        let public_key = key.public_key()?;
        Ok(GeneratedKey {
            key: Arc::new(key),
            public_key,
            material: sealed.as_bytes().to_vec(),
        })
    }
}

impl KeyBackend for SoftwareBackend {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn generate(&self, key_id: &str, algorithm: Algorithm) -> Result<GeneratedKey> {
        let key = SoftwareKey::generate(algorithm)?;
        self.finish(key_id, key)
    }

    fn load(
        &self,
        key_id: &str,
        algorithm: Algorithm,
        material: &[u8],
    ) -> Result<Arc<dyn SigningKey>> {
        let der = SealedKey::from_stored(material.to_vec()).open(&self.kek, key_id, algorithm)?;
        Ok(Arc::new(SoftwareKey::from_pkcs8(algorithm, &der)?))
    }

    fn check_ready(&self) -> Result<()> {
        Ok(())
    }
}

fn detect_algorithm(der: &[u8]) -> Result<Algorithm> {
    use pkcs8::der::Decode;
    let info = pkcs8::PrivateKeyInfoRef::from_der(der)
        .map_err(|e| KeyError::InvalidKeyMaterial(format!("not a PKCS#8 private key: {e}")))?;
    const ED25519: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");
    const EC: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    const RSA: pkcs8::ObjectIdentifier =
        pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    const SECP256K1: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.132.0.10");
    const P256: pkcs8::ObjectIdentifier =
        pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    let oid = info.algorithm.oid;
    if oid == ED25519 {
        return Ok(Algorithm::Ed25519);
    }
    if oid == EC {
        let curve = info.algorithm.parameters_oid().ok();
        return match curve {
            Some(c) if c == SECP256K1 => Ok(Algorithm::Secp256k1),
            Some(c) if c == P256 => Ok(Algorithm::P256),
            Some(c) => Err(KeyError::InvalidKeyMaterial(format!(
                "unsupported elliptic curve {c}; Keyward supports secp256k1 and P-256"
            ))),
            None => Err(KeyError::InvalidKeyMaterial(
                "EC key without a named curve".into(),
            )),
        };
    }
    if oid == RSA {
        let key = rsa::PrivateKey::from_pkcs8_der(der)
            .map_err(|e| KeyError::InvalidKeyMaterial(format!("RSA key does not parse: {e}")))?;
        use rsa::traits::PublicKeyParts;
        return match key.size() * 8 {
            2048 => Ok(Algorithm::Rsa2048),
            3072 => Ok(Algorithm::Rsa3072),
            4096 => Ok(Algorithm::Rsa4096),
            bits => Err(KeyError::InvalidKeyMaterial(format!(
                "{bits}-bit RSA keys are not supported; use 2048, 3072 or 4096 bits"
            ))),
        };
    }
    Err(KeyError::InvalidKeyMaterial(format!(
        "unsupported key algorithm {oid}; Keyward imports Ed25519, secp256k1, P-256 and RSA keys"
    )))
}

fn random_scalar<T>(parse: impl Fn(&[u8]) -> Option<T>) -> T {
    loop {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(bytes.as_mut());
        if let Some(key) = parse(bytes.as_ref()) {
            return key;
        }
    }
}

impl SoftwareKey {
    fn generate(algorithm: Algorithm) -> Result<Self> {
        Ok(match algorithm {
            Algorithm::Ed25519 => SoftwareKey::Ed25519(random_scalar(|b| {
                b.try_into().ok().map(ed25519_dalek::SigningKey::from_bytes)
            })),
            Algorithm::Secp256k1 => SoftwareKey::Secp256k1(random_scalar(|b| {
                k256::ecdsa::SigningKey::from_slice(b).ok()
            })),
            Algorithm::P256 => SoftwareKey::P256(random_scalar(|b| {
                p256::ecdsa::SigningKey::from_slice(b).ok()
            })),
            alg => {
                use aws_lc_rs::rsa::KeySize;
                let size = match alg {
                    Algorithm::Rsa3072 => KeySize::Rsa3072,
                    Algorithm::Rsa4096 => KeySize::Rsa4096,
                    _ => KeySize::Rsa2048,
                };
                let key = aws_lc_rs::rsa::KeyPair::generate(size)
                    .map_err(|_| KeyError::Unavailable(format!("{alg} key generation failed")))?;
                SoftwareKey::Rsa(alg, key)
            }
        })
    }

    fn from_pkcs8(algorithm: Algorithm, der: &[u8]) -> Result<Self> {
        let bad = |e: pkcs8::Error| {
            KeyError::InvalidKeyMaterial(format!("{algorithm} private key does not parse: {e}"))
        };
        Ok(match algorithm {
            Algorithm::Ed25519 => {
                SoftwareKey::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(bad)?)
            }
            Algorithm::Secp256k1 => {
                SoftwareKey::Secp256k1(k256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(bad)?)
            }
            Algorithm::P256 => {
                SoftwareKey::P256(p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(bad)?)
            }
            alg => {
                let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(der).map_err(|e| {
                    KeyError::InvalidKeyMaterial(format!("{alg} private key does not parse: {e}"))
                })?;
                if Some(key.public_modulus_len() * 8) != alg.rsa_bits() {
                    return Err(KeyError::InvalidKeyMaterial(format!(
                        "the private key is not {alg}"
                    )));
                }
                SoftwareKey::Rsa(alg, key)
            }
        })
    }

    fn to_pkcs8(&self) -> Result<Zeroizing<Vec<u8>>> {
        let fail = |e: &dyn std::fmt::Display| {
            KeyError::Unavailable(format!("cannot encode private key: {e}"))
        };
        let doc = match self {
            SoftwareKey::Ed25519(k) => k.to_pkcs8_der(),
            SoftwareKey::Secp256k1(k) => k.to_pkcs8_der(),
            SoftwareKey::P256(k) => k.to_pkcs8_der(),
            SoftwareKey::Rsa(_, k) => {
                use aws_lc_rs::encoding::AsDer as _;
                // AWS-LC's buffer is zeroized when it drops.
                let der = k.as_der().map_err(|e| fail(&e))?;
                return Ok(Zeroizing::new(der.as_ref().to_vec()));
            }
        }
        .map_err(|e| fail(&e))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    fn public_key(&self) -> Result<PublicKey> {
        match self {
            SoftwareKey::Ed25519(k) => PublicKey::encode(Algorithm::Ed25519, &k.verifying_key()),
            SoftwareKey::Secp256k1(k) => PublicKey::encode(Algorithm::Secp256k1, k.verifying_key()),
            SoftwareKey::P256(k) => PublicKey::encode(Algorithm::P256, k.verifying_key()),
            SoftwareKey::Rsa(alg, k) => {
                use aws_lc_rs::encoding::AsDer as _;
                use aws_lc_rs::signature::KeyPair as _;
                let spki = k.public_key().as_der().map_err(|e| {
                    KeyError::Unavailable(format!("cannot encode the RSA public key: {e}"))
                })?;
                PublicKey::from_spki_der(*alg, spki.as_ref().to_vec())
            }
        }
    }
}

fn digest_of(input: &ToSign, algorithm: Algorithm) -> Result<(HashAlg, &[u8])> {
    match input {
        ToSign::Digest { hash, digest } => {
            if digest.len() != hash.output_len() {
                return Err(KeyError::InvalidInput(format!(
                    "a {hash} digest is {} bytes, got {}",
                    hash.output_len(),
                    digest.len()
                )));
            }
            Ok((*hash, digest))
        }
        ToSign::Message(_) => Err(KeyError::InvalidInput(format!(
            "{algorithm} keys sign digests; hash the message first"
        ))),
        ToSign::Schnorr { .. } | ToSign::Batch(_) => Err(KeyError::InvalidInput(format!(
            "{algorithm} keys sign one digest at a time"
        ))),
    }
}

/// Signs a precomputed digest with PKCS#1 v1.5 (a `DigestInfo` of `hash`) or PSS (MGF1 with
/// `hash`, a salt as long as the digest), with AWS-LC's blinded private-key operation.
fn rsa_sign(
    key: &aws_lc_rs::rsa::KeyPair,
    scheme: RsaScheme,
    hash: HashAlg,
    digest: &[u8],
) -> Result<Vec<u8>> {
    use aws_lc_rs::{digest, signature};
    let (encoding, algorithm): (&'static dyn signature::RsaEncoding, _) = match (scheme, hash) {
        (RsaScheme::Pkcs1v15, HashAlg::Sha256) => (&signature::RSA_PKCS1_SHA256, &digest::SHA256),
        (RsaScheme::Pkcs1v15, HashAlg::Sha384) => (&signature::RSA_PKCS1_SHA384, &digest::SHA384),
        (RsaScheme::Pkcs1v15, HashAlg::Sha512) => (&signature::RSA_PKCS1_SHA512, &digest::SHA512),
        (RsaScheme::Pss, HashAlg::Sha256) => (&signature::RSA_PSS_SHA256, &digest::SHA256),
        (RsaScheme::Pss, HashAlg::Sha384) => (&signature::RSA_PSS_SHA384, &digest::SHA384),
        (RsaScheme::Pss, HashAlg::Sha512) => (&signature::RSA_PSS_SHA512, &digest::SHA512),
    };
    let digest = digest::Digest::import_less_safe(digest, algorithm).map_err(|_| {
        KeyError::InvalidInput(format!("a {hash} digest is {} bytes", hash.output_len()))
    })?;
    let mut out = vec![0u8; key.public_modulus_len()];
    key.sign_digest(encoding, &digest, &mut out)
        .map_err(|_| KeyError::Unavailable("RSA signing failed".into()))?;
    Ok(out)
}

impl SigningKey for SoftwareKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            SoftwareKey::Ed25519(_) => Algorithm::Ed25519,
            SoftwareKey::Secp256k1(_) => Algorithm::Secp256k1,
            SoftwareKey::P256(_) => Algorithm::P256,
            SoftwareKey::Rsa(alg, _) => *alg,
        }
    }

    /// Ed25519 and ECDSA sign (and check their signature) in tens of microseconds; RSA takes
    /// milliseconds.
    fn blocks(&self) -> bool {
        matches!(self, SoftwareKey::Rsa(..))
    }

    fn sign(&self, input: &ToSign, options: SignOptions) -> Result<Signature> {
        let fail = |e: signature::Error| KeyError::Unavailable(format!("signing failed: {e}"));
        let algorithm = self.algorithm();
        let bytes = match self {
            SoftwareKey::Ed25519(k) => {
                let ToSign::Message(msg) = input else {
                    return Err(KeyError::InvalidInput(
                        "ed25519 keys sign messages (PureEdDSA)".into(),
                    ));
                };
                use ed25519_dalek::Signer as _;
                k.sign(msg).to_bytes().to_vec()
            }
            SoftwareKey::Secp256k1(k) => {
                if let ToSign::Schnorr { digest, tweak } = input {
                    return Ok(Signature {
                        bytes: super::schnorr::sign(k, digest, tweak.as_deref())?,
                        recovery_id: None,
                    });
                }
                let (_, digest) = digest_of(input, algorithm)?;
                if digest.len() < 16 {
                    return Err(KeyError::InvalidInput("digest too short for ECDSA".into()));
                }
                // k256 signs with RFC 6979 nonces and always returns low-S signatures.
                let (sig, recid) = k.sign_prehash_recoverable(digest);
                let sig = sig.normalize_s();
                let bytes = match options.format {
                    EcdsaFormat::Der => sig.to_der().as_bytes().to_vec(),
                    EcdsaFormat::Raw => sig.to_bytes().to_vec(),
                };
                return Ok(Signature {
                    bytes,
                    recovery_id: Some(recid.to_byte()),
                });
            }
            SoftwareKey::P256(k) => {
                let (_, digest) = digest_of(input, algorithm)?;
                use signature::hazmat::PrehashSigner;
                let sig: p256::ecdsa::Signature = k.sign_prehash(digest).map_err(fail)?;
                match options.format {
                    EcdsaFormat::Der => sig.to_der().as_bytes().to_vec(),
                    EcdsaFormat::Raw => sig.to_bytes().to_vec(),
                }
            }
            SoftwareKey::Rsa(_, k) => {
                let (hash, digest) = digest_of(input, algorithm)?;
                rsa_sign(k, options.scheme, hash, digest)?
            }
        };
        Ok(Signature {
            bytes,
            recovery_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_input(alg: Algorithm) -> ToSign {
        match alg {
            Algorithm::Ed25519 => ToSign::Message(b"hello".to_vec()),
            _ => ToSign::Digest {
                hash: HashAlg::Sha256,
                digest: HashAlg::Sha256.digest(b"hello"),
            },
        }
    }

    #[test]
    fn every_algorithm_generates_signs_verifies_and_reloads() {
        let backend = SoftwareBackend::new(Kek::generate());
        for &alg in &[
            Algorithm::Ed25519,
            Algorithm::Secp256k1,
            Algorithm::P256,
            Algorithm::Rsa2048,
        ] {
            let made = backend.generate("k", alg).unwrap();
            let input = sample_input(alg);
            for scheme in [RsaScheme::Pkcs1v15, RsaScheme::Pss] {
                let options = SignOptions {
                    scheme,
                    format: EcdsaFormat::Der,
                };
                let sig = made.key.sign(&input, options).unwrap();
                assert!(
                    made.public_key
                        .verify(&input, &sig.bytes, scheme, EcdsaFormat::Der)
                        .unwrap(),
                    "{alg}"
                );
                let mut flipped = sig.bytes.clone();
                let last = flipped.len() - 1;
                flipped[last] ^= 1;
                assert!(
                    !made
                        .public_key
                        .verify(&input, &flipped, scheme, EcdsaFormat::Der)
                        .unwrap(),
                    "{alg}"
                );
            }
            let again = backend.load("k", alg, &made.material).unwrap();
            let sig = again.sign(&input, SignOptions::default()).unwrap();
            assert!(
                made.public_key
                    .verify(&input, &sig.bytes, RsaScheme::Pkcs1v15, EcdsaFormat::Der)
                    .unwrap()
            );
            assert!(backend.load("other-id", alg, &made.material).is_err());
        }
    }

    #[test]
    fn rsa_signs_as_the_rsa_crate_does_and_refuses_a_wrong_size() {
        // A key encoded by another implementation: the `rsa` crate.
        let theirs = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let pem = theirs.to_pkcs8_pem(pkcs8::LineEnding::LF).unwrap();
        let backend = SoftwareBackend::new(Kek::generate());
        let (alg, made) = backend.import_pkcs8_pem("k", &pem, None).unwrap();
        assert_eq!(alg, Algorithm::Rsa2048);
        let digest = HashAlg::Sha384.digest(b"contract");
        let input = ToSign::Digest {
            hash: HashAlg::Sha384,
            digest: digest.clone(),
        };
        // PKCS#1 v1.5 is deterministic: both implementations give the same bytes.
        let ours = made.key.sign(&input, SignOptions::default()).unwrap();
        let expected = theirs
            .pkcs1v15_sign_prehash_with_rng::<sha2::Sha384, _>(&mut getrandom::SysRng, &digest)
            .unwrap();
        assert_eq!(ours.bytes, expected);
        // A 2048-bit key is not taken for another size.
        let der = theirs.to_pkcs8_der().unwrap();
        let err = match SoftwareKey::from_pkcs8(Algorithm::Rsa3072, der.as_bytes()) {
            Err(err) => err,
            Ok(_) => panic!("a 2048-bit key parsed as rsa-3072"),
        };
        assert!(matches!(err, KeyError::InvalidKeyMaterial(_)), "{err}");
        // A digest of the wrong length is refused before signing.
        let short = ToSign::Digest {
            hash: HashAlg::Sha256,
            digest: vec![0u8; 31],
        };
        assert!(matches!(
            made.key.sign(&short, SignOptions::default()),
            Err(KeyError::InvalidInput(_))
        ));
    }

    #[test]
    fn secp256k1_is_low_s_with_a_recovery_id() {
        let backend = SoftwareBackend::new(Kek::generate());
        let made = backend.generate("k", Algorithm::Secp256k1).unwrap();
        let order_half =
            hex::decode("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0")
                .unwrap();
        for i in 0..64u8 {
            let input = ToSign::Digest {
                hash: HashAlg::Sha256,
                digest: HashAlg::Sha256.digest(&[i]),
            };
            let sig = made
                .key
                .sign(
                    &input,
                    SignOptions {
                        format: EcdsaFormat::Raw,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert!(sig.bytes[32..] <= order_half[..], "high S at {i}");
            assert!(matches!(sig.recovery_id, Some(0 | 1)));
        }
    }

    #[test]
    fn import_refuses_other_formats_and_mismatched_algorithms() {
        let backend = SoftwareBackend::new(Kek::generate());
        let err = backend
            .import_pkcs8_pem(
                "k",
                "-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----",
                None,
            )
            .unwrap_err();
        assert!(err.to_string().contains("PKCS#8"), "{err}");
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pem = key.to_pkcs8_pem(pkcs8::LineEnding::LF).unwrap();
        let (alg, _) = backend.import_pkcs8_pem("k", &pem, None).unwrap();
        assert_eq!(alg, Algorithm::Ed25519);
        let err = backend
            .import_pkcs8_pem("k", &pem, Some(Algorithm::P256))
            .unwrap_err();
        assert!(err.to_string().contains("ed25519"), "{err}");
    }
}

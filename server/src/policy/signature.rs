//! Signed policy modules. With `[policy] trusted_signers` set, a module is accepted at upload
//! (and bound to a key) only with a detached Ed25519 signature by one of those keys over
//! `MESSAGE_DOMAIN || SHA-256(module)`. The domain makes a module signature useless as any
//! other Ed25519 signature of the same key, and the other way round. `keyward policy sign`
//! makes the signature; so does any Ed25519 signer (policy-sdk/README.md shows openssl).
//!
//! Public keys are written as SubjectPublicKeyInfo: PEM, or the standard base64 of the DER
//! (the one line between the PEM's armour, as `openssl pkey -pubout` prints it). A signer is
//! recorded by that base64, with the name the configuration gave it.

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::Digest as _;

/// Prefixed to the module's SHA-256 to form the signed message.
pub const MESSAGE_DOMAIN: &[u8] = b"keyward policy module v1\0";

/// Longest signer name, characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The signed message for a module with SHA-256 `digest`.
pub fn message(digest: &[u8; 32]) -> Vec<u8> {
    [MESSAGE_DOMAIN, digest.as_slice()].concat()
}

/// The signed message for `module`.
pub fn module_message(module: &[u8]) -> Vec<u8> {
    message(&sha2::Sha256::digest(module).into())
}

/// A public key allowed to sign policy modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedSigner {
    /// The name given in the configuration, if any.
    pub name: Option<String>,
    /// The key as the standard base64 of its SubjectPublicKeyInfo DER.
    pub public_key: String,
    key: VerifyingKey,
}

impl TrustedSigner {
    /// Parses a public key (SPKI PEM, or the standard base64 of the DER) with an optional name.
    pub fn parse(name: Option<String>, text: &str) -> Result<Self, String> {
        if let Some(name) = &name {
            let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
            if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !name.chars().all(ok) {
                return Err(format!(
                    "signer name {name:?} is invalid: use 1 to {MAX_NAME_CHARS} characters of \
                     A-Z, a-z, 0-9, '.', '_', '-' and '@'"
                ));
            }
        }
        let text = text.trim();
        let key = if text.starts_with("-----BEGIN") {
            VerifyingKey::from_public_key_pem(text)
                .map_err(|e| format!("not an Ed25519 public key in PEM: {e}"))?
        } else {
            let der = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| {
                    "a public key must be SPKI PEM or the standard base64 of its DER".to_string()
                })?;
            VerifyingKey::from_public_key_der(&der)
                .map_err(|e| format!("not an Ed25519 SubjectPublicKeyInfo: {e}"))?
        };
        if key.is_weak() {
            return Err("the public key is a small-order point".into());
        }
        Ok(TrustedSigner {
            name,
            public_key: encode_public_key(&key),
            key,
        })
    }
}

/// The standard base64 of `key`'s SubjectPublicKeyInfo DER.
pub fn encode_public_key(key: &VerifyingKey) -> String {
    let der = key
        .to_public_key_der()
        .expect("an Ed25519 SPKI always encodes");
    base64::engine::general_purpose::STANDARD.encode(der.as_bytes())
}

pub use crate::store::ModuleSignature;

/// Why a module's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefusal {
    /// Signers are configured and the module came without a signature.
    #[error(
        "this server accepts only signed policy modules (policy.trusted_signers): sign the \
         module with `keyward policy sign --key FILE module.wasm` and send the signature"
    )]
    Required,
    /// The signature is not base64 of 64 bytes.
    #[error("signature must be the standard base64 of a 64-byte Ed25519 signature")]
    Malformed,
    /// No trusted signer's key verifies the signature over this module.
    #[error(
        "the signature does not verify over this module with any key in policy.trusted_signers"
    )]
    Untrusted,
}

/// The configured signers; empty when modules need no signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedSigners(Vec<TrustedSigner>);

impl TrustedSigners {
    /// Signers from the configuration (already checked for duplicates).
    pub fn new(signers: Vec<TrustedSigner>) -> Self {
        TrustedSigners(signers)
    }

    /// Whether modules must be signed.
    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// The signers.
    pub fn signers(&self) -> &[TrustedSigner] {
        &self.0
    }

    /// Checks `signature` over the module with SHA-256 `digest`. With no signers configured
    /// nothing is checked and nothing recorded (`Ok(None)`), whether or not a signature came.
    pub fn check(
        &self,
        digest: &[u8; 32],
        signature: Option<&str>,
    ) -> Result<Option<ModuleSignature>, SignatureRefusal> {
        if !self.required() {
            return Ok(None);
        }
        let text = signature.ok_or(SignatureRefusal::Required)?.trim();
        let bytes: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| SignatureRefusal::Malformed)?
            .try_into()
            .map_err(|_| SignatureRefusal::Malformed)?;
        let sig = Signature::from_bytes(&bytes);
        let msg = message(digest);
        let signer = self
            .0
            .iter()
            .find(|s| s.key.verify_strict(&msg, &sig).is_ok())
            .ok_or(SignatureRefusal::Untrusted)?;
        Ok(Some(ModuleSignature {
            signature: base64::engine::general_purpose::STANDARD.encode(bytes),
            signer_key: signer.public_key.clone(),
            signer_name: signer.name.clone(),
        }))
    }

    /// Checks a stored module's recorded signature against the signers configured now (a
    /// binding needs one; a signer removed from the list no longer vouches for its modules).
    pub fn check_stored(
        &self,
        digest_hex: &str,
        recorded: Option<&ModuleSignature>,
    ) -> Result<Option<ModuleSignature>, SignatureRefusal> {
        if !self.required() {
            return Ok(None);
        }
        let digest: [u8; 32] = hex::decode(digest_hex)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or(SignatureRefusal::Untrusted)?;
        self.check(&digest, recorded.map(|r| r.signature.as_str()))
    }
}

/// A signing key read from a file: PKCS#8 PEM or DER, as `openssl genpkey -algorithm ed25519`
/// or `keyward policy keygen` write it.
pub fn read_signing_key(bytes: &[u8]) -> Result<SigningKey, String> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN") => {
            SigningKey::from_pkcs8_pem(text.trim())
                .map_err(|e| format!("not an Ed25519 PKCS#8 private key in PEM: {e}"))
        }
        _ => SigningKey::from_pkcs8_der(bytes)
            .map_err(|e| format!("not an Ed25519 PKCS#8 private key (PEM or DER): {e}")),
    }
}

/// A new signing key as PKCS#8 PEM, with its public key as `policy.trusted_signers` takes it.
pub fn generate_signing_key() -> (zeroize::Zeroizing<String>, String) {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    crate::keys::fill_random_bytes(seed.as_mut_slice());
    let key = SigningKey::from_bytes(&seed);
    // PKCS#8 v1 (no public key inside), which every tool reads; OpenSSL 3.0 refuses v2.
    let pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: *seed,
        public_key: None,
    }
    .to_pkcs8_pem(Default::default())
    .expect("an Ed25519 key always encodes");
    (
        zeroize::Zeroizing::new(pem.to_string()),
        encode_public_key(&key.verifying_key()),
    )
}

/// Signs `module` with `key`: the standard base64 of the 64-byte signature.
pub fn sign_module(key: &SigningKey, module: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.sign(&module_message(module)).to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn signers(keys: &[&SigningKey]) -> TrustedSigners {
        TrustedSigners::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| {
                    TrustedSigner::parse(
                        Some(format!("s{i}")),
                        &encode_public_key(&k.verifying_key()),
                    )
                    .unwrap()
                })
                .collect(),
        )
    }

    fn digest(module: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(module).into()
    }

    #[test]
    fn a_trusted_signature_names_its_signer() {
        let (a, b) = (key(1), key(2));
        let set = signers(&[&a, &b]);
        let module = b"\0asm module";
        let got = set
            .check(&digest(module), Some(&sign_module(&b, module)))
            .unwrap()
            .unwrap();
        assert_eq!(got.signer_name.as_deref(), Some("s1"));
        assert_eq!(got.signer_key, encode_public_key(&b.verifying_key()));
        assert_eq!(
            set.check_stored(&hex::encode(digest(module)), Some(&got)),
            Ok(Some(got.clone()))
        );
    }

    #[test]
    fn refusals() {
        let (a, stranger) = (key(1), key(3));
        let set = signers(&[&a]);
        let module = b"\0asm module";
        let d = digest(module);
        assert_eq!(set.check(&d, None), Err(SignatureRefusal::Required));
        assert_eq!(
            set.check(&d, Some("not base64!")),
            Err(SignatureRefusal::Malformed)
        );
        assert_eq!(
            set.check(&d, Some("AAAA")),
            Err(SignatureRefusal::Malformed)
        );
        let theirs = sign_module(&stranger, module);
        assert_eq!(
            set.check(&d, Some(&theirs)),
            Err(SignatureRefusal::Untrusted)
        );
        let other_module = sign_module(&a, b"\0asm other");
        assert_eq!(
            set.check(&d, Some(&other_module)),
            Err(SignatureRefusal::Untrusted)
        );
        // The bare digest, signed without the domain, is not a module signature.
        let bare = base64::engine::general_purpose::STANDARD.encode(a.sign(&d).to_bytes());
        assert_eq!(set.check(&d, Some(&bare)), Err(SignatureRefusal::Untrusted));
        // Nothing recorded: nothing to bind with.
        assert_eq!(
            set.check_stored(&hex::encode(d), None),
            Err(SignatureRefusal::Required)
        );
    }

    #[test]
    fn no_signers_check_nothing() {
        let set = TrustedSigners::default();
        assert_eq!(set.check(&[0; 32], None), Ok(None));
        assert_eq!(set.check(&[0; 32], Some("garbage")), Ok(None));
    }

    #[test]
    fn public_keys_parse_from_pem_and_base64_der() {
        let k = key(7).verifying_key();
        let b64 = encode_public_key(&k);
        assert!(b64.starts_with("MCowBQYDK2VwAyEA"), "{b64}");
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        assert_eq!(TrustedSigner::parse(None, &pem).unwrap().public_key, b64);
        assert!(TrustedSigner::parse(None, "MCow").is_err());
        assert!(TrustedSigner::parse(Some("has space".into()), &b64).is_err());
        // An Ed25519 key of the identity point (small order) is refused.
        let mut weak = k.to_public_key_der().unwrap().as_bytes().to_vec();
        let n = weak.len();
        weak[n - 32..].copy_from_slice(&{
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        });
        let weak = base64::engine::general_purpose::STANDARD.encode(weak);
        assert!(
            TrustedSigner::parse(None, &weak)
                .unwrap_err()
                .contains("small-order")
        );
    }

    #[test]
    fn generated_keys_sign_what_their_public_key_verifies() {
        let (pem, public) = generate_signing_key();
        let key = read_signing_key(pem.as_bytes()).unwrap();
        let set = TrustedSigners::new(vec![TrustedSigner::parse(None, &public).unwrap()]);
        let module = b"\0asm";
        assert!(
            set.check(&digest(module), Some(&sign_module(&key, module)))
                .is_ok()
        );
        assert_ne!(generate_signing_key().1, public);
    }

    #[test]
    fn signing_keys_read_from_pkcs8() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let k = key(9);
        let pem = k.to_pkcs8_pem(Default::default()).unwrap();
        assert_eq!(read_signing_key(pem.as_bytes()).unwrap(), k);
        let der = k.to_pkcs8_der().unwrap();
        assert_eq!(read_signing_key(der.as_bytes()).unwrap(), k);
        assert!(read_signing_key(b"junk").is_err());
    }
}

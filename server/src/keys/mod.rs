//! Signing keys: the algorithms Keyward supports, the `SigningKey`/`KeyBackend` seam every
//! backend implements, and the in-memory registry of loaded keys.
//!
//! Parts:
//! - `algorithm`: algorithm, hash, RSA scheme and ECDSA output format names.
//! - `public`: public keys as SPKI DER, PEM and JWK, and signature verification.
//! - `sealed`: the AES-256-GCM envelope that protects software key material at rest.
//! - `software`: the software slot backend.
//! - `pkcs11`: the PKCS#11 (HSM) backend.
//! - `registry`: loaded keys, cached so that a sign request does not unseal on every call.
//!
//! This module never hands private key bytes to anything but the backend that owns them.

mod algorithm;
pub mod pkcs11;
mod public;
mod registry;
mod schnorr;
mod sealed;
mod software;

use std::sync::Arc;

pub use algorithm::{Algorithm, EcdsaFormat, HashAlg, Purpose, RsaScheme};
pub use public::PublicKey;
pub use registry::{KeyMeta, KeyRegistry, LoadedKey, ResolveError};
pub use sealed::{Kek, SealedKey};
pub use software::SoftwareBackend;

/// The x-only (BIP-340) key a secp256k1 public key signs under, after `tweak` (32 bytes).
pub fn schnorr_output_key(public: &PublicKey, tweak: Option<&[u8]>) -> Result<[u8; 32]> {
    let key = public.secp256k1_key()?;
    Ok(schnorr::output_key(&key, tweak)?.to_bytes().into())
}

/// Fills `buf` from the operating system CSPRNG.
pub fn fill_random_bytes(buf: &mut [u8]) {
    sealed::fill_random(buf);
}

/// Errors of the key layer.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The input does not fit the key (wrong digest length, unsupported option).
    #[error("{0}")]
    InvalidInput(String),
    /// Imported key material could not be parsed or is of an unsupported kind.
    #[error("{0}")]
    InvalidKeyMaterial(String),
    /// A sealed key blob failed to open: wrong KEK, or the blob, key id or algorithm changed.
    #[error("sealed key {key_id} failed to open: {reason}")]
    Unseal {
        /// The key whose blob failed.
        key_id: String,
        /// What failed.
        reason: String,
    },
    /// The backend could not sign (HSM down, internal failure).
    #[error("key backend unavailable: {0}")]
    Unavailable(String),
    /// The backend named by a key is not configured on this server.
    #[error("key backend {0:?} is not configured")]
    UnknownBackend(String),
}

/// Result alias of the key layer.
pub type Result<T, E = KeyError> = std::result::Result<T, E>;

/// What crosses into a backend to be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToSign {
    /// A digest made with `hash` (ECDSA, RSA).
    Digest {
        /// The hash the digest was made with.
        hash: HashAlg,
        /// The digest bytes; their length matches `hash`.
        digest: Vec<u8>,
    },
    /// A whole message (Ed25519 signs messages, PureEdDSA).
    Message(Vec<u8>),
    /// A BIP-340 Schnorr signature by a secp256k1 key over a 32-byte digest (a BIP-341
    /// sighash), with the key tweaked by `tweak` when given (taproot key path).
    Schnorr {
        /// The 32-byte digest.
        digest: Vec<u8>,
        /// The 32-byte tweak scalar added to the (even-y) secret.
        tweak: Option<Vec<u8>>,
    },
    /// Several inputs signed with the same key under one policy decision (the inputs of a
    /// PSBT). Backends never see it: the pipeline signs each part and returns one signature
    /// per part.
    Batch(Vec<ToSign>),
}

/// Options that shape a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignOptions {
    /// RSA padding scheme.
    pub scheme: RsaScheme,
    /// ECDSA output encoding.
    pub format: EcdsaFormat,
}

/// A signature made by a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signature bytes in the requested format.
    pub bytes: Vec<u8>,
    /// For secp256k1: the public-key recovery id (0 or 1).
    pub recovery_id: Option<u8>,
}

/// Whether a key signs digests or whole messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInputKind {
    /// ECDSA and RSA: the input is a digest; the server hashes messages first.
    Digest,
    /// Ed25519: the input is the message itself (PureEdDSA).
    Message,
}

/// A private key that can sign, wherever it lives.
///
/// The input is pre-hashed for ECDSA and RSA keys (`ToSign::Digest`) and a whole message for
/// Ed25519 keys (`ToSign::Message`); `input_kind` says which. Implementations may block (RSA
/// arithmetic, HSM round trips): `blocks` says so, and callers then run them off the async
/// runtime.
pub trait SigningKey: Send + Sync {
    /// The key's algorithm.
    fn algorithm(&self) -> Algorithm;
    /// Whether one signature can take long enough (an RSA private-key operation, a round
    /// trip to a device) that it must not run on an async worker. Default: it can.
    fn blocks(&self) -> bool {
        true
    }
    /// Whether `sign` takes a digest or a message.
    fn input_kind(&self) -> SignInputKind {
        self.algorithm().input_kind()
    }
    /// Signs `input`. Never returns a signature that does not verify under the public key.
    fn sign(&self, input: &ToSign, options: SignOptions) -> Result<Signature>;
}

/// A key backend creates keys and loads them back from what Keyward stored.
pub trait KeyBackend: Send + Sync {
    /// The backend's name as stored with each key (e.g. `software`).
    fn name(&self) -> &str;
    /// Creates a new key pair; `key_id` is bound into what is stored.
    fn generate(&self, key_id: &str, algorithm: Algorithm) -> Result<GeneratedKey>;
    /// Loads a key from the material stored at creation.
    fn load(
        &self,
        key_id: &str,
        algorithm: Algorithm,
        material: &[u8],
    ) -> Result<Arc<dyn SigningKey>>;
    /// Checks that the backend can sign right now.
    fn check_ready(&self) -> Result<()>;
}

/// A freshly generated (or imported) key.
pub struct GeneratedKey {
    /// The key, ready to sign.
    pub key: Arc<dyn SigningKey>,
    /// Its public half.
    pub public_key: PublicKey,
    /// What the backend needs to load it again (a sealed blob, an HSM reference).
    pub material: Vec<u8>,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("algorithm", &self.public_key.algorithm())
            .finish_non_exhaustive()
    }
}

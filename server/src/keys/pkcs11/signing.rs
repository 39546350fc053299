//! Signing with a token key: the PKCS#11 mechanism for each algorithm and scheme, and the
//! conversion of what the token returns into Keyward's signature formats.
//!
//! - RSA PKCS#1 v1.5: `CKM_RSA_PKCS` over the DER `DigestInfo` of the digest.
//! - RSA-PSS: `CKM_RSA_PKCS_PSS`, MGF1 with the same hash, salt as long as the hash.
//! - ECDSA: `CKM_ECDSA` over the digest; the token's `r || s` becomes DER or stays raw;
//!   secp256k1 is normalized to low-S and gets its recovery id.
//! - Ed25519: `CKM_EDDSA` over the whole message.
//!
//! Every signature is checked against the public key before it is returned: a token fault
//! never becomes a bad signature handed to a caller.

use std::sync::Arc;

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};

use super::objects::TokenKeyRef;
use super::pool::SessionPool;
use crate::keys::{
    Algorithm, EcdsaFormat, HashAlg, KeyError, PublicKey, Result, RsaScheme, SignOptions,
    Signature, SigningKey, ToSign,
};

/// `DigestInfo` prefixes of RFC 8017 section 9.2, note 1 (the DER up to the digest bytes).
/// Written out because no maintained crate exports them apart from a full RSA signer.
fn digest_info_prefix(hash: HashAlg) -> &'static [u8] {
    match hash {
        HashAlg::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        HashAlg::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        HashAlg::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

fn pss_params(hash: HashAlg) -> PkcsPssParams {
    let (hash_alg, mgf) = match hash {
        HashAlg::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        HashAlg::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
        HashAlg::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
    };
    PkcsPssParams {
        hash_alg,
        mgf,
        s_len: (hash.output_len() as u64).into(),
    }
}

/// A private key on a token.
pub struct TokenKey {
    pool: Arc<SessionPool>,
    algorithm: Algorithm,
    label: String,
    id: Vec<u8>,
    public_key: PublicKey,
}

impl TokenKey {
    /// A key signing through `pool`.
    pub fn new(pool: Arc<SessionPool>, algorithm: Algorithm, at: &TokenKeyRef) -> Result<Self> {
        use base64::Engine as _;
        let spki = base64::engine::general_purpose::STANDARD
            .decode(&at.public_key)
            .map_err(|e| KeyError::InvalidKeyMaterial(format!("stored public key: {e}")))?;
        Ok(TokenKey {
            pool,
            algorithm,
            label: at.label.clone(),
            id: at.id_bytes()?,
            public_key: PublicKey::from_spki_der(algorithm, spki)?,
        })
    }

    /// What goes to `C_Sign`, and with which mechanism.
    fn prepare(
        &self,
        input: &ToSign,
        options: SignOptions,
    ) -> Result<(Mechanism<'static>, Vec<u8>)> {
        let alg = self.algorithm;
        match (alg, input) {
            (Algorithm::Ed25519, ToSign::Message(m)) => Ok((
                Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
                    cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
                )),
                m.clone(),
            )),
            (Algorithm::P256 | Algorithm::Secp256k1, ToSign::Digest { digest, .. }) => {
                Ok((Mechanism::Ecdsa, digest.clone()))
            }
            (_, ToSign::Digest { hash, digest }) if alg.is_rsa() => match options.scheme {
                RsaScheme::Pkcs1v15 => {
                    let mut info = digest_info_prefix(*hash).to_vec();
                    info.extend_from_slice(digest);
                    Ok((Mechanism::RsaPkcs, info))
                }
                RsaScheme::Pss => Ok((Mechanism::RsaPkcsPss(pss_params(*hash)), digest.clone())),
            },
            _ => Err(KeyError::InvalidInput(format!(
                "{alg} keys sign {}",
                if alg == Algorithm::Ed25519 {
                    "messages"
                } else {
                    "digests"
                }
            ))),
        }
    }

    /// Turns the token's output into the requested format.
    fn finish(&self, input: &ToSign, raw: Vec<u8>, options: SignOptions) -> Result<Signature> {
        let fault = |why: &str| {
            KeyError::Unavailable(format!(
                "PKCS#11 key {:?} returned an unusable signature: {why}",
                self.label
            ))
        };
        let (bytes, recovery_id) = match self.algorithm {
            Algorithm::Secp256k1 => {
                let ToSign::Digest { digest, .. } = input else {
                    return Err(fault("no digest"));
                };
                let sig =
                    k256::ecdsa::Signature::from_slice(&raw).map_err(|_| fault("not r||s"))?;
                let sig = sig.normalize_s();
                let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&self.sec1_point()?)
                    .map_err(|_| fault("public key"))?;
                let recid = k256::ecdsa::RecoveryId::trial_recovery_from_prehash(&vk, digest, &sig)
                    .map_err(|_| fault("no recovery id matches the public key"))?;
                let bytes = match options.format {
                    EcdsaFormat::Der => sig.to_der().as_bytes().to_vec(),
                    EcdsaFormat::Raw => sig.to_bytes().to_vec(),
                };
                (bytes, Some(recid.to_byte()))
            }
            Algorithm::P256 => {
                let sig =
                    p256::ecdsa::Signature::from_slice(&raw).map_err(|_| fault("not r||s"))?;
                let bytes = match options.format {
                    EcdsaFormat::Der => sig.to_der().as_bytes().to_vec(),
                    EcdsaFormat::Raw => sig.to_bytes().to_vec(),
                };
                (bytes, None)
            }
            _ => (raw, None),
        };
        let valid = self
            .public_key
            .verify(input, &bytes, options.scheme, options.format)?;
        if !valid {
            return Err(fault("it does not verify under the public key"));
        }
        Ok(Signature { bytes, recovery_id })
    }

    fn sec1_point(&self) -> Result<Vec<u8>> {
        use pkcs8::DecodePublicKey;
        let vk = k256::ecdsa::VerifyingKey::from_public_key_der(self.public_key.spki_der())
            .map_err(|e| KeyError::InvalidKeyMaterial(format!("public key: {e}")))?;
        Ok(vk.to_sec1_point(false).as_bytes().to_vec())
    }
}

impl SigningKey for TokenKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn sign(&self, input: &ToSign, options: SignOptions) -> Result<Signature> {
        if let ToSign::Digest { hash, digest } = input
            && digest.len() != hash.output_len()
        {
            return Err(KeyError::InvalidInput(format!(
                "a {hash} digest is {} bytes, not {}",
                hash.output_len(),
                digest.len()
            )));
        }
        let (mechanism, data) = self.prepare(input, options)?;
        let raw = {
            let mut session = self.pool.checkout()?;
            let handle = session.private_key(&self.id, &self.label)?;
            session
                .sign(&mechanism, handle, &data)
                .map_err(|e| session.fault("signing", e))?
        };
        self.finish(input, raw, options)
    }
}

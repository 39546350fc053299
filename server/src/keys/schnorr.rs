//! BIP-340 Schnorr signatures with secp256k1 keys, optionally tweaked as BIP-341 asks for a
//! taproot key-path spend (the output key is the internal key plus `tweak * G`).
//!
//! The tweak is computed by the caller from public data (for BIP-86 accounts: the TapTweak
//! hash of the internal key); the tweaked secret exists only inside `sign` and is zeroized
//! with the `k256` key that holds it.

use k256::elliptic_curve::PrimeField;
use k256::{NonZeroScalar, ProjectivePoint, Scalar};
use signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};

use super::{KeyError, Result};

fn tweak_scalar(tweak: &[u8]) -> Result<Scalar> {
    let bytes: [u8; 32] = tweak
        .try_into()
        .map_err(|_| KeyError::InvalidInput("a taproot tweak is 32 bytes".into()))?;
    Option::from(Scalar::from_repr(bytes.into())).ok_or_else(|| {
        KeyError::InvalidInput("the taproot tweak is not below the curve order".into())
    })
}

/// Signs the 32-byte `digest` with BIP-340 under `secret`, tweaked by `tweak` when given.
pub(crate) fn sign(
    secret: &k256::ecdsa::SigningKey,
    digest: &[u8],
    tweak: Option<&[u8]>,
) -> Result<Vec<u8>> {
    if digest.len() != 32 {
        return Err(KeyError::InvalidInput(
            "a BIP-340 message digest is 32 bytes".into(),
        ));
    }
    // `From<NonZeroScalar>` negates the secret when its point has an odd y (BIP-340).
    let mut key = k256::schnorr::SigningKey::from(*secret.as_nonzero_scalar());
    if let Some(tweak) = tweak {
        let t = tweak_scalar(tweak)?;
        let tweaked: Option<NonZeroScalar> =
            NonZeroScalar::new(*key.as_nonzero_scalar().as_ref() + t).into();
        let tweaked =
            tweaked.ok_or_else(|| KeyError::InvalidInput("the tweaked key is zero".into()))?;
        key = k256::schnorr::SigningKey::from(tweaked);
    }
    let sig = key
        .sign_prehash_with_rng(&mut getrandom::SysRng, digest)
        .map_err(|e| KeyError::Unavailable(format!("BIP-340 signing failed: {e}")))?;
    Ok(sig.to_bytes().to_vec())
}

/// The x-only key that signatures made by `sign` with `tweak` verify under.
pub(crate) fn output_key(
    public: &k256::ecdsa::VerifyingKey,
    tweak: Option<&[u8]>,
) -> Result<k256::schnorr::VerifyingKey> {
    let internal = k256::schnorr::VerifyingKey::try_from(*public.as_affine())
        .map_err(|_| KeyError::InvalidInput("not a usable secp256k1 public key".into()))?;
    let Some(tweak) = tweak else {
        return Ok(internal);
    };
    let t = tweak_scalar(tweak)?;
    let q = ProjectivePoint::from(*internal.as_affine()) + ProjectivePoint::GENERATOR * t;
    k256::schnorr::VerifyingKey::try_from(q.to_affine())
        .map_err(|_| KeyError::InvalidInput("the tweaked key is the point at infinity".into()))
}

/// Checks a BIP-340 signature made by `sign`.
pub(crate) fn verify(
    public: &k256::ecdsa::VerifyingKey,
    digest: &[u8],
    tweak: Option<&[u8]>,
    signature: &[u8],
) -> Result<bool> {
    let key = output_key(public, tweak)?;
    let Ok(sig) = k256::schnorr::Signature::try_from(signature) else {
        return Ok(false);
    };
    Ok(key.verify_prehash(digest, &sig).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tweaked_signatures_verify_under_the_output_key_only() {
        let secret = k256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
        let digest = [7u8; 32];
        let tweak = [9u8; 32];
        let sig = sign(&secret, &digest, Some(&tweak)).unwrap();
        assert!(verify(secret.verifying_key(), &digest, Some(&tweak), &sig).unwrap());
        assert!(!verify(secret.verifying_key(), &digest, None, &sig).unwrap());
        let plain = sign(&secret, &digest, None).unwrap();
        assert!(verify(secret.verifying_key(), &digest, None, &plain).unwrap());
        assert!(sign(&secret, &[0u8; 31], None).is_err());
        assert!(sign(&secret, &digest, Some(&[0xff; 32])).is_err());
    }
}

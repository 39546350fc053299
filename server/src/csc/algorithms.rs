//! Algorithm OIDs of the CSC API: what a credential's key can do (`key.algo`), and how a
//! `signAlgo` / `hashAlgo` pair of `signHash` maps onto a Keyward key.

use crate::documents::algorithms::oid;
use crate::keys::{Algorithm, HashAlg, RsaScheme};

use super::{CscError, Result};

/// The `key.algo` OIDs of a key: signature algorithms it can produce.
pub fn key_algorithms(algorithm: Algorithm) -> Vec<String> {
    let oids = if algorithm.is_rsa() {
        vec![
            oid::RSA_ENCRYPTION,
            oid::SHA256_WITH_RSA,
            oid::SHA384_WITH_RSA,
            oid::SHA512_WITH_RSA,
            oid::RSASSA_PSS,
        ]
    } else if algorithm == Algorithm::P256 {
        vec![
            oid::EC_PUBLIC_KEY,
            oid::ECDSA_SHA256,
            oid::ECDSA_SHA384,
            oid::ECDSA_SHA512,
        ]
    } else if algorithm == Algorithm::Ed25519 {
        vec![oid::ED25519]
    } else {
        Vec::new()
    };
    oids.iter().map(ToString::to_string).collect()
}

/// `key.len`: the key size in bits.
pub fn key_len(algorithm: Algorithm) -> u32 {
    match algorithm.rsa_bits() {
        Some(bits) => u32::try_from(bits).unwrap_or(u32::MAX),
        None => 256,
    }
}

/// `key.curve`, for elliptic-curve keys.
pub fn key_curve(algorithm: Algorithm) -> Option<String> {
    (algorithm == Algorithm::P256).then(|| oid::P256.to_string())
}

/// The hash of a digest-algorithm OID.
pub fn hash_of_oid(text: &str) -> Result<HashAlg> {
    let parsed = text.trim();
    [
        (oid::SHA256, HashAlg::Sha256),
        (oid::SHA384, HashAlg::Sha384),
        (oid::SHA512, HashAlg::Sha512),
    ]
    .into_iter()
    .find(|(o, _)| o.to_string() == parsed)
    .map(|(_, h)| h)
    .ok_or_else(|| {
        CscError::InvalidRequest(format!(
            "unsupported hash algorithm OID {parsed:?}; use SHA-256, SHA-384 or SHA-512 \
             (2.16.840.1.101.3.4.2.1, .2, .3)"
        ))
    })
}

/// The hash whose digests are `len` bytes long (SCAL 2 authorizations that name no hash).
pub fn hash_of_len(len: usize) -> Option<HashAlg> {
    HashAlg::ALL.iter().copied().find(|h| h.output_len() == len)
}

/// What a `signAlgo` asks of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignAlgo {
    /// The hash the signature algorithm implies, if it names one.
    pub hash: Option<HashAlg>,
    /// RSA padding.
    pub scheme: RsaScheme,
}

/// Maps `signAlgo` onto a key of `algorithm`; refuses an algorithm the key cannot make.
pub fn sign_algo(text: &str, algorithm: Algorithm) -> Result<SignAlgo> {
    let o = text.trim();
    let is = |x: spki::ObjectIdentifier| x.to_string() == o;
    let pkcs1 = |hash| SignAlgo {
        hash,
        scheme: RsaScheme::Pkcs1v15,
    };
    let found = if algorithm.is_rsa() {
        if is(oid::RSA_ENCRYPTION) {
            Some(pkcs1(None))
        } else if is(oid::SHA256_WITH_RSA) {
            Some(pkcs1(Some(HashAlg::Sha256)))
        } else if is(oid::SHA384_WITH_RSA) {
            Some(pkcs1(Some(HashAlg::Sha384)))
        } else if is(oid::SHA512_WITH_RSA) {
            Some(pkcs1(Some(HashAlg::Sha512)))
        } else if is(oid::RSASSA_PSS) {
            Some(SignAlgo {
                hash: None,
                scheme: RsaScheme::Pss,
            })
        } else {
            None
        }
    } else if algorithm.is_ecdsa() {
        if is(oid::EC_PUBLIC_KEY) {
            Some(pkcs1(None))
        } else if is(oid::ECDSA_SHA256) {
            Some(pkcs1(Some(HashAlg::Sha256)))
        } else if is(oid::ECDSA_SHA384) {
            Some(pkcs1(Some(HashAlg::Sha384)))
        } else if is(oid::ECDSA_SHA512) {
            Some(pkcs1(Some(HashAlg::Sha512)))
        } else {
            None
        }
    } else if is(oid::ED25519) {
        Some(pkcs1(None))
    } else {
        None
    };
    found.ok_or_else(|| {
        CscError::InvalidRequest(format!(
            "signAlgo {o:?} is not supported by this credential's {algorithm} key; \
             credentials/info lists the key's algorithms"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_algorithms_fit_the_key_or_are_refused() {
        let rsa = sign_algo("1.2.840.113549.1.1.11", Algorithm::Rsa2048).unwrap();
        assert_eq!(rsa.hash, Some(HashAlg::Sha256));
        assert_eq!(rsa.scheme, RsaScheme::Pkcs1v15);
        let pss = sign_algo("1.2.840.113549.1.1.10", Algorithm::Rsa3072).unwrap();
        assert_eq!((pss.hash, pss.scheme), (None, RsaScheme::Pss));
        let ec = sign_algo("1.2.840.10045.4.3.3", Algorithm::P256).unwrap();
        assert_eq!(ec.hash, Some(HashAlg::Sha384));
        assert!(sign_algo("1.2.840.10045.4.3.2", Algorithm::Rsa2048).is_err());
        assert!(sign_algo("1.2.840.113549.1.1.11", Algorithm::P256).is_err());
        assert!(sign_algo("1.3.101.112", Algorithm::P256).is_err());
        assert!(sign_algo("1.3.101.112", Algorithm::Ed25519).is_ok());
        // Every advertised OID is accepted by the key it is advertised for.
        for alg in [Algorithm::Rsa2048, Algorithm::P256, Algorithm::Ed25519] {
            for o in key_algorithms(alg) {
                assert!(sign_algo(&o, alg).is_ok(), "{alg} {o}");
            }
        }
    }

    #[test]
    fn hashes_by_oid_and_length() {
        assert_eq!(
            hash_of_oid("2.16.840.1.101.3.4.2.1").unwrap(),
            HashAlg::Sha256
        );
        assert_eq!(
            hash_of_oid("2.16.840.1.101.3.4.2.3").unwrap(),
            HashAlg::Sha512
        );
        assert!(hash_of_oid("1.3.14.3.2.26").is_err());
        assert_eq!(hash_of_len(48), Some(HashAlg::Sha384));
        assert_eq!(hash_of_len(20), None);
    }
}

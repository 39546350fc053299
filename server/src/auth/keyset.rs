//! An issuer's verification keys, read from its JSON Web Key Set: only signature keys of
//! asymmetric types, each with the algorithms it may verify, looked up by the token's `kid` and
//! `alg`. Shared by the verifier (`jwt`) and the cache of remote key sets (`jwks`).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey};
use serde_json::Value;

/// One verification key of an issuer.
pub(crate) struct VerifyKey {
    kid: Option<String>,
    /// The key.
    pub(crate) key: DecodingKey,
    /// Algorithms this key can verify, narrowed by the JWK's own `alg` and the issuer's list.
    algorithms: Vec<JwtAlg>,
}

/// The usable signature keys of one issuer's JWKS document.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<VerifyKey>,
}

/// What a key set says about a token's `kid` and `alg`.
pub(crate) enum Lookup<'a> {
    /// A key that verifies this algorithm.
    Found(&'a VerifyKey),
    /// No key has this `kid` (a refetch may find it).
    UnknownKid,
    /// A key has this `kid` but cannot verify this algorithm (never refetched).
    Mismatch,
}

fn algorithms_for(params: &AlgorithmParameters) -> Vec<JwtAlg> {
    use JwtAlg::*;
    match params {
        AlgorithmParameters::RSA(_) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![ES256],
            EllipticCurve::P384 => vec![ES384],
            _ => vec![],
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![EdDSA]
        }
        // Symmetric (`oct`) keys are never used to verify.
        _ => vec![],
    }
}

impl KeySet {
    /// The signature keys of `jwks` usable with `allowed` algorithms. Keys for encryption,
    /// symmetric keys, keys of other algorithms and keys that do not parse are skipped, so
    /// that one odd key in an IdP's set does not make the others unusable.
    pub(crate) fn from_jwks(jwks: &[Value], allowed: &[JwtAlg]) -> KeySet {
        let mut keys = Vec::new();
        for value in jwks {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            let mut algorithms = algorithms_for(&jwk.algorithm);
            if let Some(alg) = jwk.common.key_algorithm {
                let named: Option<JwtAlg> = alg.to_string().parse().ok();
                algorithms.retain(|a| Some(*a) == named);
            }
            algorithms.retain(|a| allowed.contains(a));
            if algorithms.is_empty() {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                key,
                algorithms,
            });
        }
        KeySet { keys }
    }

    /// From a parsed `JwkSet` (static sets).
    pub(crate) fn from_jwk_set(jwks: &JwkSet, allowed: &[JwtAlg]) -> KeySet {
        let values: Vec<Value> = jwks
            .keys
            .iter()
            .filter_map(|k| serde_json::to_value(k).ok())
            .collect();
        Self::from_jwks(&values, allowed)
    }

    /// Number of usable keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn lookup(&self, kid: Option<&str>, alg: JwtAlg) -> Lookup<'_> {
        let candidates: Vec<&VerifyKey> = match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            // Without a kid, only an unambiguous set is usable.
            None if self.keys.len() == 1 => self.keys.iter().collect(),
            None => return Lookup::Mismatch,
        };
        if candidates.is_empty() {
            return Lookup::UnknownKid;
        }
        match candidates.into_iter().find(|k| k.algorithms.contains(&alg)) {
            Some(k) => Lookup::Found(k),
            None => Lookup::Mismatch,
        }
    }
}

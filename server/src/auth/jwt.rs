//! Verification of one issuer's tokens against its JSON Web Key Set.
//!
//! The header's `alg` must be allowed for the issuer and fit the key's type (and the key's
//! own `alg`, when it has one). `jku`, `x5u`, `jwk` and `x5c` headers are never used:
//! keys come only from the issuer's configured key set. Keys meant for encryption and
//! symmetric keys are ignored.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, Validation};
use serde_json::Value;

use super::{AuthError, Principal, Result, Role};

/// How to verify one issuer's tokens.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values (one must be present in the token).
    pub audiences: Vec<String>,
    /// Allowed signature algorithms.
    pub algorithms: Vec<JwtAlg>,
    /// JSON pointer to the roles claim (an array or a space-separated string).
    pub roles_claim: String,
    /// Clock leeway for `exp`/`nbf`, seconds.
    pub leeway_seconds: u64,
}

struct VerifyKey {
    kid: Option<String>,
    key: DecodingKey,
    /// Algorithms this key can verify, narrowed by the JWK's own `alg`.
    algorithms: Vec<JwtAlg>,
}

/// Verifies one issuer's tokens.
pub struct IssuerVerifier {
    settings: IssuerSettings,
    keys: Vec<VerifyKey>,
}

impl std::fmt::Debug for IssuerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerVerifier")
            .field("issuer", &self.settings.issuer)
            .field("keys", &self.keys.len())
            .finish()
    }
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
        _ => vec![],
    }
}

impl IssuerVerifier {
    /// Builds a verifier from settings and a JWKS document.
    pub fn new(settings: IssuerSettings, jwks: &JwkSet) -> Result<Self> {
        if settings.audiences.is_empty() {
            return Err(AuthError::Config(format!(
                "issuer {} has no audiences",
                settings.issuer
            )));
        }
        let mut keys = Vec::new();
        for jwk in &jwks.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let mut algorithms = algorithms_for(&jwk.algorithm);
            if let Some(alg) = jwk.common.key_algorithm {
                let named: Option<JwtAlg> = alg.to_string().parse().ok();
                algorithms.retain(|a| Some(*a) == named);
            }
            algorithms.retain(|a| settings.algorithms.contains(a));
            if algorithms.is_empty() {
                continue;
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                AuthError::Config(format!("unusable JWK in {}: {e}", settings.issuer))
            })?;
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                key,
                algorithms,
            });
        }
        Ok(IssuerVerifier { settings, keys })
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Verifies a token of this issuer.
    pub fn verify(&self, token: &str) -> Result<Principal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("bad token header: {e}")))?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not allowed for this issuer",
                header.alg
            )));
        }
        let candidates: Vec<&VerifyKey> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None if self.keys.len() == 1 => self.keys.iter().collect(),
            None => {
                return Err(AuthError::Invalid(
                    "the token has no kid and the issuer has several keys".into(),
                ));
            }
        };
        let key = candidates
            .into_iter()
            .find(|k| k.algorithms.contains(&header.alg))
            .ok_or_else(|| {
                AuthError::Invalid("no key of the issuer matches the token's kid and alg".into())
            })?;

        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.leeway = self.settings.leeway_seconds;
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
            .map_err(|e| AuthError::Invalid(describe(&e)))?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::Invalid("sub must be a non-empty string".into()))?
            .to_string();
        let (roles, other_roles) = read_roles(&claims, &self.settings.roles_claim);
        Ok(Principal {
            issuer: self.settings.issuer.clone(),
            subject,
            roles,
            other_roles,
        })
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    match e.kind() {
        ExpiredSignature => "the token has expired".into(),
        ImmatureSignature => "the token is not valid yet (nbf)".into(),
        InvalidAudience => "the token's audience is not accepted here".into(),
        InvalidIssuer => "the token's issuer is not accepted here".into(),
        InvalidSignature => "the signature does not verify".into(),
        MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        InvalidAlgorithm => "the token's algorithm does not match the key".into(),
        other => format!("{other:?}"),
    }
}

/// Reads roles at `pointer`: an array of strings or one space-separated string. Returns the
/// Keyward roles and, apart, the other role names.
pub(crate) fn read_roles(claims: &Value, pointer: &str) -> (Vec<Role>, Vec<String>) {
    let names: Vec<&str> = match claims.pointer(pointer) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => s.split_whitespace().collect(),
        _ => Vec::new(),
    };
    let mut roles: Vec<Role> = names.iter().filter_map(|n| Role::parse(n)).collect();
    roles.sort_by_key(|r| r.as_str());
    roles.dedup();
    let mut other: Vec<String> = names
        .iter()
        .filter(|n| Role::parse(n).is_none())
        .map(|n| n.to_string())
        .collect();
    other.sort();
    other.dedup();
    (roles, other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_come_from_an_array_or_a_space_separated_string() {
        let claims = json!({"roles": ["signer", "nope"], "realm": {"r": "auditor admin"}});
        assert_eq!(
            read_roles(&claims, "/roles"),
            (vec![Role::Signer], vec!["nope".to_string()])
        );
        assert_eq!(
            read_roles(&claims, "/realm/r").0,
            vec![Role::Admin, Role::Auditor]
        );
        assert!(read_roles(&claims, "/missing").0.is_empty());
    }
}

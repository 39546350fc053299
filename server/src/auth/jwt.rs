//! Verification of one issuer's tokens against its JSON Web Key Set.
//!
//! The header's `alg` must be allowed for the issuer and fit the key's type (and the key's
//! own `alg`, when it has one). `jku`, `x5u`, `jwk` and `x5c` headers are never used:
//! keys come only from the issuer's configured or discovered key set (`jwks`). Keys meant for
//! encryption and symmetric keys are ignored. `iss`, `aud`, `exp` and `sub` are required;
//! `exp`, `nbf` and `iat` must be numbers, and are checked with the configured leeway.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm as JwtAlg, Validation};
use serde_json::Value;

use super::jwks::KeySource;
use super::keyset::{KeySet, VerifyKey};
use super::verified::{VerifiedTokens, token_hash};
use super::{AuthError, Principal, Result, Role};

/// How to verify one issuer's tokens and read its claims.
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
    /// JSON pointer to the groups claim, if any (an array or a space-separated string).
    pub groups_claim: Option<String>,
    /// IdP role or group name -> Keyward roles. When empty, names in the roles claim are read
    /// as Keyward role names; when set, only mapped names grant roles.
    pub role_map: BTreeMap<String, Vec<Role>>,
    /// Clock leeway for `exp`, `nbf` and `iat`, seconds.
    pub leeway_seconds: u64,
}

/// Verifies one issuer's tokens.
pub struct IssuerVerifier {
    settings: IssuerSettings,
    source: KeySource,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for IssuerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerVerifier")
            .field("issuer", &self.settings.issuer)
            .finish()
    }
}

impl IssuerVerifier {
    /// A verifier with a fixed JWKS document (a file, or the development issuer).
    pub fn new(settings: IssuerSettings, jwks: &JwkSet) -> Result<Self> {
        check_settings(&settings)?;
        let keys = KeySet::from_jwk_set(jwks, &settings.algorithms);
        Ok(IssuerVerifier {
            settings,
            source: KeySource::Static(keys),
            verified: VerifiedTokens::default(),
        })
    }

    /// A verifier whose keys come from a remote source (discovery / `jwks_uri`).
    pub(crate) fn with_source(settings: IssuerSettings, source: KeySource) -> Result<Self> {
        check_settings(&settings)?;
        Ok(IssuerVerifier {
            settings,
            source,
            verified: VerifiedTokens::default(),
        })
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Where the keys come from.
    pub(crate) fn source(&self) -> &KeySource {
        &self.source
    }

    /// Verifies a token of this issuer, or finds it among those verified recently with the
    /// current key set (see `verified`).
    pub async fn verify(&self, token: &str) -> Result<Principal> {
        let hash = token_hash(token);
        if let Some(generation) = self.source.fresh_generation()
            && let Some(principal) = self.verified.get(&hash, generation)
        {
            return Ok(principal);
        }
        let ((principal, exp), generation) = self.verify_fully(token).await?;
        self.verified.put(hash, generation, exp, &principal);
        Ok(principal)
    }

    async fn verify_fully(&self, token: &str) -> Result<((Principal, f64), u64)> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("bad token header: {e}")))?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not allowed for this issuer",
                header.alg
            )));
        }
        let kid = header.kid.as_deref();
        self.source
            .with_key(kid, header.alg, |key| {
                verify_with(&self.settings, key, header.alg, token)
            })
            .await
    }
}

fn check_settings(settings: &IssuerSettings) -> Result<()> {
    if settings.audiences.is_empty() {
        return Err(AuthError::Config(format!(
            "issuer {} has no audiences",
            settings.issuer
        )));
    }
    Ok(())
}

/// Checks the signature and claims of `token` with `key`: the caller, and the token's `exp`.
pub(crate) fn verify_with(
    settings: &IssuerSettings,
    key: &VerifyKey,
    alg: JwtAlg,
    token: &str,
) -> Result<(Principal, f64)> {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[&settings.issuer]);
    validation.set_audience(&settings.audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.validate_exp = true;
    validation.leeway = settings.leeway_seconds;
    let data = jsonwebtoken::decode::<Value>(token, &key.key, &validation)
        .map_err(|e| AuthError::Invalid(describe(&e)))?;
    let claims = data.claims;
    let exp = check_times(&claims, settings.leeway_seconds)?;
    Ok((principal_from_claims(settings, &claims)?, exp))
}

/// `exp`, `nbf` and `iat` must be numbers (a string is refused, not parsed), `exp` must be
/// present, and `iat` must not be in the future beyond the leeway. (The library checks `exp`
/// and `nbf` against the clock; this is the belt to its braces.) Gives `exp`.
fn check_times(claims: &Value, leeway: u64) -> Result<f64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let leeway = leeway as f64;
    let number = |name: &str| -> Result<Option<f64>> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(AuthError::Invalid(format!("{name} must be a number"))),
        }
    };
    let exp = number("exp")?.ok_or_else(|| AuthError::Invalid("the token has no exp".into()))?;
    if exp + leeway < now {
        return Err(AuthError::Invalid("the token has expired".into()));
    }
    if let Some(nbf) = number("nbf")?
        && nbf - leeway > now
    {
        return Err(AuthError::Invalid(
            "the token is not valid yet (nbf)".into(),
        ));
    }
    if let Some(iat) = number("iat")?
        && iat - leeway > now
    {
        return Err(AuthError::Invalid(
            "the token was issued in the future (iat)".into(),
        ));
    }
    Ok(exp)
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
        InvalidClaimFormat(c) => format!("the claim {c} has the wrong type"),
        other => format!("{other:?}"),
    }
}

fn optional_string(claims: &Value, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(|s| s.chars().take(256).collect())
}

/// Builds the principal from verified claims.
pub(crate) fn principal_from_claims(
    settings: &IssuerSettings,
    claims: &Value,
) -> Result<Principal> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AuthError::Invalid("sub must be a non-empty string".into()))?
        .to_string();
    let role_names = read_names(claims, &settings.roles_claim);
    let groups = settings
        .groups_claim
        .as_deref()
        .map(|p| read_names(claims, p))
        .unwrap_or_default();
    let roles = map_roles(&role_names, &groups, &settings.role_map);
    // Role names that are not Keyward roles (and not mapped to one) stay available by name,
    // e.g. `treasury` for approver rules and for policies.
    let other_roles: Vec<String> = role_names
        .iter()
        .filter(|n| Role::parse(n).is_none() && !settings.role_map.contains_key(n.as_str()))
        .take(64)
        .cloned()
        .collect();
    let amr = match claims.get("amr") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .take(32)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Principal {
        issuer: settings.issuer.clone(),
        subject,
        roles,
        other_roles,
        groups,
        email: optional_string(claims, "email"),
        name: optional_string(claims, "name"),
        acr: optional_string(claims, "acr"),
        amr,
    })
}

/// Reads names at `pointer`: an array of strings or one space-separated string.
pub(crate) fn read_names(claims: &Value, pointer: &str) -> Vec<String> {
    let mut names: Vec<String> = match claims.pointer(pointer) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    };
    names.truncate(256);
    names
}

/// Keyward roles from the IdP's role and group names. Without a `role_map`, role names that
/// are Keyward role names count as such (groups grant nothing); with one, only mapped role
/// or group names grant roles.
pub(crate) fn map_roles(
    role_names: &[String],
    groups: &[String],
    role_map: &BTreeMap<String, Vec<Role>>,
) -> Vec<Role> {
    let mut roles: Vec<Role> = if role_map.is_empty() {
        role_names.iter().filter_map(|n| Role::parse(n)).collect()
    } else {
        role_names
            .iter()
            .chain(groups)
            .filter_map(|n| role_map.get(n))
            .flatten()
            .copied()
            .collect()
    };
    roles.sort_by_key(|r| r.as_str());
    roles.dedup();
    roles
}

/// Reads Keyward role names at `pointer` (no mapping).
#[cfg(test)]
pub(crate) fn read_roles(claims: &Value, pointer: &str) -> Vec<Role> {
    map_roles(&read_names(claims, pointer), &[], &BTreeMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_come_from_an_array_or_a_space_separated_string() {
        let claims = json!({"roles": ["signer", "nope"], "realm": {"r": "auditor admin"}});
        assert_eq!(read_roles(&claims, "/roles"), vec![Role::Signer]);
        assert_eq!(
            read_roles(&claims, "/realm/r"),
            vec![Role::Admin, Role::Auditor]
        );
        assert!(read_roles(&claims, "/missing").is_empty());
    }

    #[test]
    fn a_role_map_replaces_plain_names() {
        let mut map = BTreeMap::new();
        map.insert("kw-sign".to_string(), vec![Role::Signer]);
        map.insert("treasury".to_string(), vec![Role::Approver, Role::Auditor]);
        let names = vec!["admin".to_string(), "kw-sign".to_string()];
        let groups = vec!["treasury".to_string()];
        assert_eq!(
            map_roles(&names, &groups, &map),
            vec![Role::Approver, Role::Auditor, Role::Signer]
        );
        assert_eq!(
            map_roles(&names, &groups, &BTreeMap::new()),
            vec![Role::Admin]
        );
    }

    #[test]
    fn times_must_be_numbers_and_not_in_the_future() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(check_times(&json!({"exp": now + 60}), 0).is_ok());
        assert!(check_times(&json!({"exp": (now + 60).to_string()}), 0).is_err());
        assert!(check_times(&json!({"exp": now + 60, "nbf": "0"}), 0).is_err());
        assert!(check_times(&json!({"exp": now + 60, "iat": now + 600}), 60).is_err());
        assert!(check_times(&json!({"exp": now + 60, "iat": now + 30}), 60).is_ok());
        assert!(check_times(&json!({"exp": now - 120}), 60).is_err());
        assert!(check_times(&json!({}), 60).is_err());
    }
}

//! `[auth]` and `[[auth.issuers]]`: the token issuers Keyward trusts, how their keys are found
//! and how their claims map to Keyward roles. Never accepts a symmetric (HS*) algorithm.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, http_url, invalid};
use crate::auth::{IssuerSettings, Role};

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Clock leeway for `exp` and `nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Run the development issuer (as `keyward dev` does). Off in production.
    #[serde(default)]
    pub dev_issuer: bool,
    /// Trusted token issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerSection>,
    /// Lifetime of a fetched JWKS whose response has no `Cache-Control: max-age`, seconds.
    #[serde(default = "default_jwks_cache")]
    pub jwks_cache_seconds: u64,
    /// Shortest lifetime of a fetched JWKS, whatever `max-age` says, seconds.
    #[serde(default = "default_jwks_min_cache")]
    pub jwks_min_cache_seconds: u64,
    /// Longest lifetime of a fetched JWKS, whatever `max-age` says, seconds.
    #[serde(default = "default_jwks_max_cache")]
    pub jwks_max_cache_seconds: u64,
    /// Least time between two JWKS fetches caused by unknown `kid`s or failures, seconds.
    #[serde(default = "default_refetch_cooldown")]
    pub jwks_refetch_cooldown_seconds: u64,
    /// Timeout of each discovery or JWKS request, seconds.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_seconds: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            leeway_seconds: default_leeway(),
            dev_issuer: false,
            issuers: Vec::new(),
            jwks_cache_seconds: default_jwks_cache(),
            jwks_min_cache_seconds: default_jwks_min_cache(),
            jwks_max_cache_seconds: default_jwks_max_cache(),
            jwks_refetch_cooldown_seconds: default_refetch_cooldown(),
            fetch_timeout_seconds: default_fetch_timeout(),
        }
    }
}

fn default_jwks_cache() -> u64 {
    300
}
fn default_jwks_min_cache() -> u64 {
    60
}
fn default_jwks_max_cache() -> u64 {
    86_400
}
fn default_refetch_cooldown() -> u64 {
    30
}
fn default_fetch_timeout() -> u64 {
    5
}

fn default_leeway() -> u64 {
    60
}

/// `[[auth.issuers]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Where to fetch the issuer's keys (default: the `jwks_uri` of its discovery document).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// A JWKS file with the issuer's public keys, instead of fetching them.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Allowed algorithms (default: RS256, PS256, ES256, EdDSA).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// JSON pointer to the roles claim.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// JSON pointer to the groups claim (optional).
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// IdP role or group name -> Keyward role name, or a list of them.
    #[serde(default)]
    pub role_map: BTreeMap<String, RoleNames>,
}

/// One Keyward role name or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RoleNames {
    /// One role.
    One(String),
    /// Several roles.
    Many(Vec<String>),
}

impl RoleNames {
    fn names(&self) -> Vec<&str> {
        match self {
            RoleNames::One(n) => vec![n.as_str()],
            RoleNames::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

fn default_roles_claim() -> String {
    "/roles".into()
}

/// Where a configured issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerKeys {
    /// A JWKS file read at start-up.
    File(PathBuf),
    /// Fetched from `jwks_uri`, or discovered when `None`.
    Remote(Option<String>),
}

/// A configured issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Verification settings.
    pub settings: IssuerSettings,
    /// Where its keys come from.
    pub keys: IssuerKeys,
}

/// Validates `[[auth.issuers]]`: at least one issuer unless the development issuer runs,
/// http(s) issuer and JWKS URLs, JSON pointers for the claims, Keyward role names in role
/// maps, and asymmetric algorithms only.
pub(super) fn validate_issuers(
    auth: &AuthSection,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Vec<IssuerConfig>, ConfigError> {
    if !auth.dev_issuer && auth.issuers.is_empty() {
        return Err(invalid(
            "auth.issuers",
            "[]",
            "no token issuer is configured; add an [[auth.issuers]] entry",
        ));
    }
    let mut issuers = Vec::new();
    for (i, section) in auth.issuers.iter().enumerate() {
        let key = |k: &str| format!("auth.issuers[{i}].{k}");
        http_url(&key("issuer"), &section.issuer)?;
        if section.audiences.is_empty() {
            return Err(invalid(
                &key("audiences"),
                "[]",
                "at least one audience is required",
            ));
        }
        if !section.roles_claim.starts_with('/') {
            return Err(invalid(
                &key("roles_claim"),
                &section.roles_claim,
                "must be a JSON pointer such as /roles",
            ));
        }
        if let Some(g) = &section.groups_claim
            && !g.starts_with('/')
        {
            return Err(invalid(
                &key("groups_claim"),
                g,
                "must be a JSON pointer such as /groups",
            ));
        }
        let mut role_map = BTreeMap::new();
        for (idp_name, names) in &section.role_map {
            let mut roles = Vec::new();
            for name in names.names() {
                let role = Role::parse(name).ok_or_else(|| {
                    invalid(
                        &key(&format!("role_map.{idp_name}")),
                        name,
                        "not a Keyward role (admin, key-admin, policy-admin, signer, \
                         approver, auditor)",
                    )
                })?;
                roles.push(role);
            }
            role_map.insert(idp_name.clone(), roles);
        }
        let keys = match (&section.jwks_file, &section.jwks_uri) {
            (Some(_), Some(uri)) => {
                return Err(invalid(
                    &key("jwks_uri"),
                    uri,
                    "give jwks_file or jwks_uri, not both",
                ));
            }
            (Some(file), None) => IssuerKeys::File(resolve(file)),
            (None, Some(uri)) => {
                http_url(&key("jwks_uri"), uri)?;
                IssuerKeys::Remote(Some(uri.clone()))
            }
            (None, None) => IssuerKeys::Remote(None),
        };
        let names = if section.algorithms.is_empty() {
            vec![
                "RS256".to_string(),
                "PS256".into(),
                "ES256".into(),
                "EdDSA".into(),
            ]
        } else {
            section.algorithms.clone()
        };
        let mut algorithms = Vec::new();
        for name in &names {
            let alg: jsonwebtoken::Algorithm = name
                .parse()
                .map_err(|_| invalid(&key("algorithms"), name, "unknown JWS algorithm"))?;
            if matches!(
                alg,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            ) {
                return Err(invalid(
                    &key("algorithms"),
                    name,
                    "symmetric algorithms are not accepted; use RS*, PS*, ES* or EdDSA",
                ));
            }
            algorithms.push(alg);
        }
        issuers.push(IssuerConfig {
            settings: IssuerSettings {
                issuer: section.issuer.clone(),
                audiences: section.audiences.clone(),
                algorithms,
                roles_claim: section.roles_claim.clone(),
                groups_claim: section.groups_claim.clone(),
                role_map,
                leeway_seconds: auth.leeway_seconds,
            },
            keys,
        });
    }
    Ok(issuers)
}

//! Authentication and roles.
//!
//! Every `/v1` route needs a bearer JWT from a configured issuer. `Authenticator::verify`
//! turns a token into a `Principal` or refuses it; nothing else in the server reads tokens.
//! It never fetches keys from a URL named inside a token.
//!
//! Parts: `jwt` (per-issuer verification: header, signature, claims, roles), `jwks` (where
//! an issuer's keys come from: a fixed set, or discovery and a cached remote JWKS),
//! `signers` (per-key access control lists), `dev_issuer` (the development issuer of
//! `keyward dev`, which mints tokens and serves its discovery document and JWKS).

pub mod dev_issuer;
pub mod dev_login;
mod jwks;
mod jwt;
mod keyset;
pub mod signers;
pub mod verified;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;

pub use jwks::{IssuerStatus, JwksCacheSettings, MAX_DOCUMENT_BYTES};
pub use jwt::{IssuerSettings, IssuerVerifier};

/// Tokens longer than this are refused before parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Errors of the authentication layer. Messages are safe to show to the caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token was sent.
    #[error("a bearer token is required (Authorization: Bearer <JWT>)")]
    Missing,
    /// The token was refused.
    #[error("the bearer token was refused: {0}")]
    Invalid(String),
    /// The issuer's configuration is unusable.
    #[error("issuer configuration error: {0}")]
    Config(String),
}

/// Result alias of the authentication layer.
pub type Result<T, E = AuthError> = std::result::Result<T, E>;

/// A Keyward role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including every other role's rights.
    Admin,
    /// Creates, imports and disables keys.
    KeyAdmin,
    /// Uploads policies.
    PolicyAdmin,
    /// Signs with keys.
    Signer,
    /// Approves pending requests.
    Approver,
    /// Reads the audit log.
    Auditor,
}

impl Role {
    /// Every role.
    pub const ALL: &'static [Role] = &[
        Role::Admin,
        Role::KeyAdmin,
        Role::PolicyAdmin,
        Role::Signer,
        Role::Approver,
        Role::Auditor,
    ];

    /// The role's name in tokens and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::KeyAdmin => "key-admin",
            Role::PolicyAdmin => "policy-admin",
            Role::Signer => "signer",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.as_str() == name)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Principal {
    /// Token issuer.
    pub issuer: String,
    /// Token subject.
    pub subject: String,
    /// Keyward roles held (after the issuer's `role_map`).
    pub roles: Vec<Role>,
    /// Other role names from the token (e.g. `treasury`), for policies and approver rules.
    pub other_roles: Vec<String>,
    /// Group names from the issuer's `groups_claim`, as the IdP names them.
    pub groups: Vec<String>,
    /// `email` claim.
    pub email: Option<String>,
    /// `name` claim.
    pub name: Option<String>,
    /// `acr` claim (authentication context class).
    pub acr: Option<String>,
    /// `amr` claim (authentication methods).
    pub amr: Vec<String>,
}

impl Principal {
    /// Whether the caller holds `role` (an `admin` holds every role).
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role) || self.roles.contains(&Role::Admin)
    }

    /// Whether the caller holds any of `roles`.
    pub fn has_any_role(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has_role(*r))
    }

    /// Whether the caller holds the role named `name`: a Keyward role (with `admin` implying
    /// all of them), another role name carried by the token, or a group.
    pub fn has_named_role(&self, name: &str) -> bool {
        match Role::parse(name) {
            Some(role) => self.has_role(role),
            None => self
                .other_roles
                .iter()
                .chain(&self.groups)
                .any(|r| r == name),
        }
    }

    /// Whether this is the same caller as `issuer`/`subject`.
    pub fn is(&self, issuer: &str, subject: &str) -> bool {
        self.issuer == issuer && self.subject == subject
    }

    /// `issuer|subject`, as recorded in `created_by` fields.
    pub fn display_id(&self) -> String {
        format!("{}|{}", self.issuer, self.subject)
    }

    /// The wire form handed to policies.
    pub fn to_wire(&self) -> keyward_policy::Principal {
        keyward_policy::Principal {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            roles: self
                .roles
                .iter()
                .map(|r| r.as_str().to_string())
                .chain(self.other_roles.iter().cloned())
                .collect(),
            groups: self.groups.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            acr: self.acr.clone(),
            amr: self.amr.clone(),
        }
    }
}

/// Verifies bearer tokens from the configured issuers.
#[derive(Clone, Default)]
pub struct Authenticator {
    issuers: HashMap<String, Arc<IssuerVerifier>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Authenticator {
    /// A verifier whose keys are fetched from `jwks_uri`, or through discovery without one.
    pub fn remote_issuer(
        settings: IssuerSettings,
        jwks_uri: Option<String>,
        cache: JwksCacheSettings,
    ) -> Result<IssuerVerifier> {
        let remote = jwks::RemoteKeys::new(
            &settings.issuer,
            jwks_uri,
            settings.algorithms.clone(),
            cache,
        )?;
        IssuerVerifier::with_source(settings, jwks::KeySource::Remote(Box::new(remote)))
    }

    /// An authenticator trusting `issuers`.
    pub fn new(issuers: Vec<IssuerVerifier>) -> Self {
        Authenticator {
            issuers: issuers
                .into_iter()
                .map(|v| (v.issuer().to_string(), Arc::new(v)))
                .collect(),
        }
    }

    /// The configured issuer identifiers.
    pub fn issuer_names(&self) -> Vec<&str> {
        self.issuers.keys().map(String::as_str).collect()
    }

    /// Issuers whose keys are fetched, with their state (for `/health/ready`).
    pub fn remote_status(&self) -> Vec<IssuerStatus> {
        let mut out: Vec<IssuerStatus> = self
            .issuers
            .values()
            .filter_map(|v| match v.source() {
                jwks::KeySource::Remote(r) => Some(r.status()),
                jwks::KeySource::Static(_) => None,
            })
            .collect();
        out.sort_by(|a, b| a.issuer.cmp(&b.issuer));
        out
    }

    /// Tries to load the keys of remote issuers that have none yet (each within its
    /// cooldown). Called at start-up and by readiness checks.
    pub async fn load_missing_keys(&self) {
        for v in self.issuers.values() {
            if let jwks::KeySource::Remote(r) = v.source()
                && !r.status().loaded
            {
                r.refresh(r.generation()).await;
            }
        }
    }

    /// Key-set fetches attempted per remote issuer (for tests and metrics).
    pub fn fetch_counts(&self) -> Vec<(String, u64)> {
        self.issuers
            .values()
            .filter_map(|v| match v.source() {
                jwks::KeySource::Remote(r) => Some((v.issuer().to_string(), r.fetch_count())),
                jwks::KeySource::Static(_) => None,
            })
            .collect()
    }

    /// Verifies `token` and returns the caller.
    pub async fn verify(&self, token: &str) -> Result<Principal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid(format!(
                "the token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let issuer = unverified_issuer(token)?;
        let verifier = self
            .issuers
            .get(&issuer)
            .ok_or_else(|| AuthError::Invalid("the token's issuer is not trusted here".into()))?;
        verifier.verify(token).await
    }
}

/// Reads `iss` from the payload without checking anything else, only to pick the issuer
/// whose keys will then verify the whole token.
fn unverified_issuer(token: &str) -> Result<String> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Invalid("not a JWS compact token".into()));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::Invalid("the payload is not base64url".into()))?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Invalid("the payload is not JSON".into()))?;
    match claims.get("iss") {
        Some(serde_json::Value::String(iss)) => Ok(iss.clone()),
        Some(_) => Err(AuthError::Invalid("iss must be a string".into())),
        None => Err(AuthError::Invalid("the token has no iss claim".into())),
    }
}

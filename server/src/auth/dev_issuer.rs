//! The development token issuer of `keyward dev`.
//!
//! Its Ed25519 key lives in the data directory (`dev-issuer-key.pem`, mode 0600) with its
//! identity (`dev-issuer.json`: issuer URL and audience), so tokens stay valid across
//! restarts. The server publishes its discovery document and JWKS, and verifies its tokens
//! through the same `IssuerVerifier` as any other issuer. Never enabled by `keyward serve`
//! unless the configuration asks for it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{EncodingKey, Header};
use pkcs8::EncodePrivateKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::{AuthError, IssuerSettings, IssuerVerifier, Result, Role};

const KEY_FILE: &str = "dev-issuer-key.pem";
const IDENTITY_FILE: &str = "dev-issuer.json";

/// Default audience of development tokens.
pub const DEV_AUDIENCE: &str = "keyward";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    issuer: String,
    audience: String,
}

/// The development issuer.
pub struct DevIssuer {
    identity: Identity,
    encoding: EncodingKey,
    public: [u8; 32],
    kid: String,
    logins: super::dev_login::DevLogins,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.identity.issuer)
            .field("kid", &self.kid)
            .finish()
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> AuthError {
    AuthError::Config(format!("{}: {e}", path.display()))
}

impl DevIssuer {
    /// Loads the issuer from `data_dir`, creating it with `issuer_url` on first start.
    pub fn load_or_create(data_dir: &Path, issuer_url: &str) -> Result<Self> {
        let key_path = data_dir.join(KEY_FILE);
        if !key_path.exists() {
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            crate::keys::fill_random_bytes(seed.as_mut());
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let pem = key
                .to_pkcs8_pem(pkcs8::LineEnding::LF)
                .map_err(|e| AuthError::Config(format!("cannot encode the issuer key: {e}")))?;
            crate::files::write_private_file(&key_path, pem.as_bytes())
                .map_err(|e| io_err(&key_path, e))?;
            let identity = Identity {
                issuer: issuer_url.trim_end_matches('/').to_string(),
                audience: DEV_AUDIENCE.to_string(),
            };
            let json = serde_json::to_vec_pretty(&identity)
                .map_err(|e| AuthError::Config(e.to_string()))?;
            let id_path = data_dir.join(IDENTITY_FILE);
            std::fs::write(&id_path, json).map_err(|e| io_err(&id_path, e))?;
        }
        Self::load(data_dir)
    }

    /// Loads an existing issuer from `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self> {
        let key_path: PathBuf = data_dir.join(KEY_FILE);
        let id_path = data_dir.join(IDENTITY_FILE);
        if !key_path.exists() || !id_path.exists() {
            return Err(AuthError::Config(format!(
                "no development issuer in {}; start `keyward dev --data-dir {}` once first",
                data_dir.display(),
                data_dir.display()
            )));
        }
        let pem = std::fs::read_to_string(&key_path).map_err(|e| io_err(&key_path, e))?;
        let identity: Identity =
            serde_json::from_slice(&std::fs::read(&id_path).map_err(|e| io_err(&id_path, e))?)
                .map_err(|e| io_err(&id_path, e))?;
        use pkcs8::DecodePrivateKey;
        let key =
            ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|e| io_err(&key_path, e))?;
        let public = key.verifying_key().to_bytes();
        let encoding =
            EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| io_err(&key_path, e))?;
        let kid = hex::encode(&sha2::Sha256::digest(public)[..8]);
        Ok(DevIssuer {
            identity,
            encoding,
            public,
            kid,
            logins: Default::default(),
        })
    }

    /// The issuer identifier (`iss`).
    pub fn issuer(&self) -> &str {
        &self.identity.issuer
    }

    /// The audience its tokens carry.
    pub fn audience(&self) -> &str {
        &self.identity.audience
    }

    /// Mints a token for `subject` with `roles`, valid for `ttl`.
    pub fn mint(&self, subject: &str, roles: &[Role], ttl: Duration) -> Result<String> {
        let names: Vec<String> = roles.iter().map(|r| r.as_str().to_string()).collect();
        self.mint_named(subject, &names, ttl)
    }

    /// Mints a token whose roles claim holds `roles` as given (Keyward roles and others,
    /// such as `treasury` for approver rules).
    pub fn mint_named(&self, subject: &str, roles: &[String], ttl: Duration) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| AuthError::Config(e.to_string()))?
            .as_secs();
        let claims = json!({
            "iss": self.identity.issuer,
            "aud": self.identity.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl.as_secs(),
            "roles": roles,
        });
        let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| AuthError::Config(format!("cannot sign the token: {e}")))
    }

    /// The web page's sign-ins in progress.
    pub fn logins(&self) -> &super::dev_login::DevLogins {
        &self.logins
    }

    /// The issuer's public keys as a JWKS document.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.public),
        }]})
    }

    /// The OpenID discovery document.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.identity.issuer,
            "jwks_uri": format!("{}/.well-known/jwks.json", self.identity.issuer),
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_endpoint": format!("{}/ui/dev/authorize", self.identity.issuer),
            "token_endpoint": format!("{}/ui/dev/token", self.identity.issuer),
            "token_endpoint_auth_methods_supported": ["none"],
        })
    }

    /// A verifier for this issuer's tokens.
    pub fn verifier(&self, leeway_seconds: u64) -> Result<IssuerVerifier> {
        let jwks: JwkSet = serde_json::from_value(self.jwks())
            .map_err(|e| AuthError::Config(format!("development JWKS: {e}")))?;
        IssuerVerifier::new(
            IssuerSettings {
                issuer: self.identity.issuer.clone(),
                audiences: vec![self.identity.audience.clone()],
                algorithms: vec![jsonwebtoken::Algorithm::EdDSA],
                roles_claim: "/roles".into(),
                groups_claim: Some("/groups".into()),
                role_map: Default::default(),
                leeway_seconds,
            },
            &jwks,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn minted_tokens_verify_and_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = DevIssuer::load_or_create(dir.path(), "http://127.0.0.1:1").unwrap();
        let token = issuer
            .mint("alice", &[Role::Signer], Duration::from_secs(60))
            .unwrap();
        let again = DevIssuer::load_or_create(dir.path(), "http://other:2").unwrap();
        assert_eq!(again.issuer(), "http://127.0.0.1:1");
        let p = again.verifier(0).unwrap().verify(&token).await.unwrap();
        assert_eq!(p.subject, "alice");
        assert_eq!(p.roles, vec![Role::Signer]);
    }
}

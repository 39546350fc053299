//! The development issuer's sign-in for the web page: the authorization code flow with PKCE
//! (RFC 6749, RFC 7636, S256 only), in memory. A developer picks a subject and roles on a
//! form; the page exchanges the one-time code, with its verifier, for a token minted by the
//! development issuer. Only `keyward dev` (or `auth.dev_issuer = true`) serves it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

/// The client id of Keyward's own page.
pub const UI_CLIENT_ID: &str = "keyward-ui";
/// How long a code may wait for its exchange.
pub const CODE_TTL: Duration = Duration::from_secs(60);
/// Most codes waiting at once (older ones are dropped first).
const MAX_CODES: usize = 1024;

/// An authorization request, as the page sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// Must be [`UI_CLIENT_ID`].
    pub client_id: String,
    /// Where the code goes: this server's `/ui/` (checked against the issuer URL).
    pub redirect_uri: String,
    /// The page's `state`, returned as given.
    pub state: String,
    /// BASE64URL(SHA-256(verifier)).
    pub code_challenge: String,
}

/// Why a sign-in step was refused (the OAuth `error` codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// A parameter is missing or wrong (`invalid_request`).
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// The client is not Keyward's page (`unauthorized_client`).
    #[error("unauthorized_client: the development issuer signs in only client_id {UI_CLIENT_ID:?}")]
    UnauthorizedClient,
    /// The code is unknown, used, expired, or its verifier or redirect does not match
    /// (`invalid_grant`).
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
}

impl LoginError {
    /// The OAuth error code.
    pub fn code(&self) -> &'static str {
        match self {
            LoginError::InvalidRequest(_) => "invalid_request",
            LoginError::UnauthorizedClient => "unauthorized_client",
            LoginError::InvalidGrant(_) => "invalid_grant",
        }
    }
}

struct Pending {
    request: AuthorizeRequest,
    subject: String,
    roles: Vec<String>,
    made: Instant,
}

/// Codes issued and not yet exchanged.
#[derive(Default)]
pub struct DevLogins {
    codes: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for DevLogins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevLogins").finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks an authorization request against the issuer's URL: Keyward's page, a redirect to
/// the issuer's own `/ui/`, a 43-character S256 challenge and a state.
pub fn check_request(
    issuer: &str,
    req: &AuthorizeRequest,
    response_type: &str,
    method: &str,
) -> Result<(), LoginError> {
    if req.client_id != UI_CLIENT_ID {
        return Err(LoginError::UnauthorizedClient);
    }
    if response_type != "code" {
        return Err(LoginError::InvalidRequest(
            "response_type must be code".into(),
        ));
    }
    let ui = format!("{}/ui/", issuer.trim_end_matches('/'));
    if req.redirect_uri != ui {
        return Err(LoginError::InvalidRequest(format!(
            "redirect_uri must be {ui}"
        )));
    }
    if method != "S256" {
        return Err(LoginError::InvalidRequest(
            "code_challenge_method must be S256".into(),
        ));
    }
    let b64url_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if req.code_challenge.len() != 43 || !req.code_challenge.chars().all(b64url_char) {
        return Err(LoginError::InvalidRequest(
            "code_challenge must be BASE64URL(SHA-256(code_verifier)), 43 characters".into(),
        ));
    }
    if req.state.is_empty() || req.state.len() > 256 {
        return Err(LoginError::InvalidRequest(
            "state must be 1 to 256 characters".into(),
        ));
    }
    Ok(())
}

/// A subject and roles typed into the login form, checked.
pub fn check_identity(subject: &str, roles: &[String]) -> Result<(), LoginError> {
    let ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@:".contains(c))
    };
    if !ok(subject, 128) {
        return Err(LoginError::InvalidRequest(
            "subject must be 1 to 128 characters of A-Z, a-z, 0-9 and . _ - @ :".into(),
        ));
    }
    if roles.len() > 32 || !roles.iter().all(|r| ok(r, 64)) {
        return Err(LoginError::InvalidRequest(
            "roles must be at most 32 names of 1 to 64 such characters".into(),
        ));
    }
    Ok(())
}

impl DevLogins {
    /// Issues a one-time code for `subject` with `roles` (both checked).
    pub fn issue(
        &self,
        request: AuthorizeRequest,
        subject: String,
        roles: Vec<String>,
    ) -> Result<String, LoginError> {
        check_identity(&subject, &roles)?;
        let mut raw = [0u8; 32];
        crate::keys::fill_random_bytes(&mut raw);
        let code = b64url(&raw);
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|_, p| p.made.elapsed() < CODE_TTL);
        if codes.len() >= MAX_CODES
            && let Some(oldest) = codes
                .iter()
                .min_by_key(|(_, p)| p.made)
                .map(|(c, _)| c.clone())
        {
            codes.remove(&oldest);
        }
        codes.insert(
            code.clone(),
            Pending {
                request,
                subject,
                roles,
                made: Instant::now(),
            },
        );
        Ok(code)
    }

    /// Exchanges a code (once) for the subject and roles it was issued to.
    pub fn redeem(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<(String, Vec<String>), LoginError> {
        // Removed before any check: a code is tried once, right or wrong.
        let pending = self
            .codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(code)
            .ok_or_else(|| LoginError::InvalidGrant("unknown or used code".into()))?;
        if pending.made.elapsed() >= CODE_TTL {
            return Err(LoginError::InvalidGrant("the code expired".into()));
        }
        if client_id != pending.request.client_id || redirect_uri != pending.request.redirect_uri {
            return Err(LoginError::InvalidGrant(
                "client_id or redirect_uri differ from the authorization request".into(),
            ));
        }
        let verifier_char = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        if !(43..=128).contains(&verifier.len()) || !verifier.chars().all(verifier_char) {
            return Err(LoginError::InvalidGrant(
                "code_verifier must be 43 to 128 unreserved characters".into(),
            ));
        }
        if b64url(&sha2::Sha256::digest(verifier.as_bytes())) != pending.request.code_challenge {
            return Err(LoginError::InvalidGrant(
                "code_verifier does not match the code_challenge".into(),
            ));
        }
        Ok((pending.subject, pending.roles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "http://127.0.0.1:8080";

    fn request(verifier: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            client_id: UI_CLIENT_ID.into(),
            redirect_uri: format!("{ISSUER}/ui/"),
            state: "s1".into(),
            code_challenge: b64url(&sha2::Sha256::digest(verifier.as_bytes())),
        }
    }

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    #[test]
    fn the_rfc_7636_example_challenge_is_what_the_verifier_hashes_to() {
        assert_eq!(
            request(VERIFIER).code_challenge,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_code_is_exchanged_once_with_its_verifier() {
        let logins = DevLogins::default();
        let req = request(VERIFIER);
        check_request(ISSUER, &req, "code", "S256").unwrap();
        let code = logins
            .issue(req.clone(), "alice".into(), vec!["approver".into()])
            .unwrap();
        let redirect = format!("{ISSUER}/ui/");
        assert_eq!(
            logins.redeem(&code, UI_CLIENT_ID, &redirect, VERIFIER),
            Ok(("alice".into(), vec!["approver".into()]))
        );
        assert!(matches!(
            logins.redeem(&code, UI_CLIENT_ID, &redirect, VERIFIER),
            Err(LoginError::InvalidGrant(_))
        ));
        // A wrong verifier spends the code too.
        let code = logins.issue(req, "bob".into(), vec![]).unwrap();
        let wrong = "x".repeat(43);
        assert!(matches!(
            logins.redeem(&code, UI_CLIENT_ID, &redirect, &wrong),
            Err(LoginError::InvalidGrant(_))
        ));
        assert!(
            logins
                .redeem(&code, UI_CLIENT_ID, &redirect, VERIFIER)
                .is_err()
        );
    }

    #[test]
    fn requests_and_identities_are_checked() {
        let ok = request(VERIFIER);
        let other_client = AuthorizeRequest {
            client_id: "evil".into(),
            ..ok.clone()
        };
        assert_eq!(
            check_request(ISSUER, &other_client, "code", "S256"),
            Err(LoginError::UnauthorizedClient)
        );
        let elsewhere = AuthorizeRequest {
            redirect_uri: "https://evil.example/ui/".into(),
            ..ok.clone()
        };
        assert!(check_request(ISSUER, &elsewhere, "code", "S256").is_err());
        assert!(check_request(ISSUER, &ok, "token", "S256").is_err());
        assert!(check_request(ISSUER, &ok, "code", "plain").is_err());
        assert!(check_identity("alice<script>", &[]).is_err());
        assert!(check_identity("alice", &["a b".into()]).is_err());
        assert!(check_identity("", &[]).is_err());
    }
}

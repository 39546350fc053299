//! The Cloud Signature Consortium (CSC) API's logic: credentials, SADs and `signHash`.
//!
//! A *credential* is a Keyward key of purpose `document` that has a certificate, seen only by
//! callers who may sign with it (the role `signer` and the key's `signers` list). Parts:
//! - `algorithms`: the OIDs of key, signature and hash algorithms and how they map to keys;
//! - `credentials`: `credentials/list` and `credentials/info` as typed results;
//! - `sad`: `credentials/authorize`, `credentials/authorizeCheck` and `signatures/signHash`.
//!
//! How a signature activation is decided: `credentials/authorize` runs the key's policies on
//! a `document` intent per hash (`SigningPath::authorize`), without signing. Allow issues a SAD
//! at once. Require-approval stores an approval request per hash whose operation is
//! `csc.authorize`: when its quorum is reached nothing is signed, and the SAD is issued only
//! when every request of the authorization is approved (`credentials/authorizeCheck`). Deny
//! refuses. `signatures/signHash` consumes the SAD (a conditional update, so it is used at
//! most once), then signs each hash through the pipeline: an allowed hash with
//! `SigningPath::submit` (the policies run again), an approved hash with
//! `SigningPath::sign_authorized`, which signs the exact bytes the approvers saw, once.
//!
//! This module never signs by itself and never stores a SAD, only its SHA-256.

pub mod algorithms;
pub mod credentials;
pub mod sad;
mod sign_checks;

use crate::audit::AuditError;
use crate::documents::DocumentError;
use crate::pipeline::PipelineError;
use crate::store::StoreError;

/// Errors of the CSC API; each is one CSC error code (see `api::error` for the HTTP status).
#[derive(Debug, Clone, thiserror::Error)]
pub enum CscError {
    /// `invalid_request`: a missing or bad parameter, an unknown credential, a bad SAD.
    #[error("{0}")]
    InvalidRequest(String),
    /// `invalid_token`: no bearer token, or a refused one.
    #[error("{0}")]
    InvalidToken(String),
    /// `access_denied`: the caller may not, or a policy denied.
    #[error("{0}")]
    AccessDenied(String),
    /// `authorization_pending`: approvers have not completed the authorization yet.
    #[error("{0}")]
    AuthorizationPending(String),
    /// `temporarily_unavailable`: the database, audit log or key backend is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// `server_error`: a bug or corrupt state.
    #[error("{0}")]
    Internal(String),
}

/// Result alias of this module.
pub type Result<T, E = CscError> = std::result::Result<T, E>;

impl From<StoreError> for CscError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(_) => {
                tracing::error!(error = %e, "database error");
                CscError::Unavailable("the database is unavailable; nothing was signed".into())
            }
            StoreError::Conflict(m) => CscError::InvalidRequest(m),
            other => {
                tracing::error!(error = %other, "storage error");
                CscError::Internal("storage error".into())
            }
        }
    }
}

impl From<AuditError> for CscError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Rejected(inner) => inner.into(),
            AuditError::Unavailable(_) => {
                tracing::error!(error = %e, "audit append failed");
                CscError::Unavailable(
                    "the audit log could not record this operation, so its result is withheld"
                        .into(),
                )
            }
        }
    }
}

impl From<PipelineError> for CscError {
    fn from(e: PipelineError) -> Self {
        use PipelineError as P;
        match e {
            P::KeyNotFound(_) => CscError::InvalidRequest("Invalid parameter credentialID".into()),
            P::KeyDisabled(id) => CscError::AccessDenied(format!("credential {id} is disabled")),
            P::Forbidden(m) => CscError::AccessDenied(m),
            P::WrongPurpose { .. } => {
                CscError::InvalidRequest("Invalid parameter credentialID".into())
            }
            P::Invalid(m) => CscError::InvalidRequest(m),
            P::PolicyDenied { reason, .. } => {
                CscError::AccessDenied(format!("denied by policy: {reason}"))
            }
            P::BadApprovalRequirement(m) => CscError::AccessDenied(format!(
                "a policy asked for an approval this server cannot hold: {m}"
            )),
            P::IdempotencyMismatch => CscError::InvalidRequest("idempotency key reused".into()),
            P::Key(k) => match k {
                crate::keys::KeyError::InvalidInput(m) => CscError::InvalidRequest(m),
                other => {
                    tracing::error!(error = %other, "key backend error");
                    CscError::Unavailable(
                        "the key backend is unavailable; nothing was signed".into(),
                    )
                }
            },
            P::Audit(e) => e.into(),
            P::Store(e) => e.into(),
        }
    }
}

impl From<DocumentError> for CscError {
    fn from(e: DocumentError) -> Self {
        use DocumentError as D;
        match e {
            D::CertificateRevoked { .. } | D::CertificateExpired { .. } | D::KeyDisabled(_) => {
                CscError::AccessDenied(e.to_string())
            }
            D::NotFound(_) | D::NotDocumentKey { .. } | D::NoCertificate(_) => {
                CscError::InvalidRequest("Invalid parameter credentialID".into())
            }
            D::Malformed(m) | D::Invalid(m) | D::Unsupported(m) => CscError::InvalidRequest(m),
            D::Pipeline(p) => p.into(),
            D::Store(s) => s.into(),
            D::Audit(a) => a.into(),
            other => {
                tracing::error!(error = %other, "document layer error");
                CscError::Internal("the credential's certificate could not be read".into())
            }
        }
    }
}

//! The one signing path: authenticate -> resolve -> authorize -> policies -> sign -> audit.
//!
//! Every route that produces a signature builds a `SignCall` and calls `SigningPath::submit`; no route
//! signs by itself. The guarantees live here:
//! - a disabled key, a missing role or a key of another purpose stops the request before the
//!   policy stage;
//! - the policy verdict decides; anything but an explicit allow gives no signature now: a
//!   require-approval verdict stores the exact bytes to sign as a pending request, and
//!   `sign_approved` makes that signature once, after the approvers' quorum;
//! - only the digest or message crosses into the backend, off the async runtime;
//! - the outcome (signed, denied, failed) is recorded in the hash-chained audit log in the
//!   same transaction as the request row, and a signature is returned only after that
//!   transaction committed;
//! - an `Idempotency-Key` replays the stored outcome for the same body and is refused for
//!   another body;
//! - `authorize` judges a signature to be made later (CSC `credentials/authorize`) without
//!   signing; its approval requests are never signed on approval, only by `sign_authorized`
//!   when the requester signs with the SAD.
//!
//! Authentication happens before `submit` (the caller arrives as a `Principal`).
//!
//! Parts: this file (the call, `submit`, dry runs), `path` (the `SigningPath` handle),
//! `access` (who may sign with which key, refusals), `judge` (intent, purpose, policies),
//! `sign` (the backend call, the receipt and the changes a signature lands with, shared by
//! both ways of signing), `outcome` (recording how a request ended: signed, refused, failed or
//! pending, each with its audit record), `approved` (signatures made later: after approval, or
//! with a CSC authorization), `replay` (idempotent replay), `stored` (the exact bytes to sign,
//! as kept with a pending request).

mod access;
mod approved;
mod judge;
mod outcome;
mod path;
mod replay;
mod sign;
mod stored;

use access::admit;
pub use approved::{AUTHORIZATION_OPERATIONS, Authorization, signs_on_approval};
use judge::{Judged, judge, judge_admitted};
pub use path::{SigningParts, SigningPath};
pub use replay::pending_receipt;
use replay::replay;
pub use stored::stored_sign_options;

use keyward_policy::Decision;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest as _;

use crate::audit::{Actor, AuditError, AuditEvent};
use crate::auth::Principal;
use crate::chains::ChainError;
use crate::error_code::ErrorCode;
use crate::intent::SignIntent;
use crate::keys::{Algorithm, KeyError, ResolveError, SignOptions};
use crate::policy::Verdict;
use crate::store::{SignStatus, StoreError};

/// Errors of the signing path.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// No such key.
    #[error("no key {0}")]
    KeyNotFound(String),
    /// The key is disabled.
    #[error("key {0} is disabled")]
    KeyDisabled(String),
    /// The caller may not sign with this key.
    #[error("{0}")]
    Forbidden(String),
    /// The key's purpose does not allow this kind of signing.
    #[error("key purpose {key_purpose} cannot sign {wanted}")]
    WrongPurpose {
        /// The key's purpose.
        key_purpose: String,
        /// What was asked.
        wanted: String,
    },
    /// The request does not fit the key.
    #[error("{0}")]
    Invalid(String),
    /// A policy (or the default decision) denied the request.
    #[error("denied: {reason}")]
    PolicyDenied {
        /// Why.
        reason: String,
        /// The verdict.
        verdict: Box<Verdict>,
    },
    /// A policy asked for approval with parameters the server cannot honour.
    #[error("invalid approval requirement: {0}")]
    BadApprovalRequirement(String),
    /// The idempotency key was used with another request.
    #[error("idempotency key reused with another request")]
    IdempotencyMismatch,
    /// The key backend failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The audit log failed: no signature is returned.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ChainError> for PipelineError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Intent(e) => PipelineError::Invalid(e.to_string()),
            ChainError::Invalid(m) => PipelineError::Invalid(m),
            ChainError::BadSignature(m) => PipelineError::Key(KeyError::Unavailable(m)),
            ChainError::Corrupt(m) => PipelineError::Store(StoreError::Corrupt(m)),
        }
    }
}

impl From<ResolveError> for PipelineError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Store(e) => PipelineError::Store(e),
            ResolveError::Key(e) => PipelineError::Key(e),
        }
    }
}

/// A caller's idempotency key with the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The `Idempotency-Key` header.
    pub key: String,
    /// SHA-256 of the operation, key id and request body.
    pub body_hash: [u8; 32],
}

impl Idempotency {
    /// Binds `key` to the operation, key id and body.
    pub fn new(key: String, operation: &str, key_id: &str, body: &impl Serialize) -> Self {
        let mut h = sha2::Sha256::new();
        h.update(operation.as_bytes());
        h.update([0]);
        h.update(key_id.as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(body).unwrap_or_default());
        Idempotency {
            key,
            body_hash: h.finalize().into(),
        }
    }
}

/// Turns a route's input into the intent and options for a key of the given algorithm.
pub type BuildIntent =
    Box<dyn FnOnce(Algorithm) -> Result<(SignIntent, SignOptions), PipelineError> + Send>;

/// One sign request on its way through the pipeline.
pub struct SignCall {
    /// The authenticated caller.
    pub principal: Principal,
    /// The key asked to sign.
    pub key_id: String,
    /// The route, e.g. `raw.sign`.
    pub operation: &'static str,
    /// Decodes the request into an intent and signature options once the key (and so its
    /// algorithm) is known.
    pub build: BuildIntent,
    /// Idempotency, when the caller sent a key.
    pub idempotency: Option<Idempotency>,
    /// The request id.
    pub request_id: String,
}

/// A signature that made it through, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignReceipt {
    /// Request id.
    pub request_id: String,
    /// Key id.
    pub key_id: String,
    /// Key algorithm.
    pub algorithm: String,
    /// Signature bytes, base64.
    pub signature: String,
    /// secp256k1 recovery id.
    pub recovery_id: Option<u8>,
    /// For a batch (several digests signed under one decision, e.g. the inputs of a PSBT):
    /// every signature, base64, in the order of the parts; `signature` is the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
    /// When it was recorded.
    pub signed_at: String,
    /// The policy verdict.
    pub verdict: Verdict,
}

/// What a dry run found: the verdict the request would get. Nothing was signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRunReport {
    /// Request id.
    pub request_id: String,
    /// Key id.
    pub key_id: String,
    /// The policy verdict.
    pub verdict: Verdict,
}

impl SigningPath {
    /// Runs a sign request up to the policy stage and reports the verdict, without signing and
    /// without recording a sign request (the dry run itself is audited as `sign.dry_run`).
    /// The same checks as `submit` apply: an unknown or disabled key, a missing role or the
    /// wrong purpose are errors, not verdicts.
    pub async fn dry_run(&self, call: SignCall) -> Result<DryRunReport, PipelineError> {
        let judged = judge(self, call).await?;
        // A dry run signs nothing: its reservation is given back before it answers, or the
        // caller's next request could find it still counted (PostgreSQL keeps it in a table).
        release(judged.reservation).await;
        let judged = judged.case;
        let event = AuditEvent {
            action: "sign.dry_run",
            outcome: "ok",
            actor: Actor {
                issuer: judged.principal.issuer.clone(),
                subject: judged.principal.subject.clone(),
            },
            key_id: Some(judged.key.meta.id.clone()),
            request_id: Some(judged.request_id.clone()),
            details: json!({
                "operation": judged.operation,
                "intent": judged.intent.intent,
                "policy": judged.verdict,
            }),
        };
        self.audit().append(Vec::new(), event).await?;
        Ok(DryRunReport {
            request_id: judged.request_id,
            key_id: judged.key.meta.id.clone(),
            verdict: judged.verdict,
        })
    }
}

/// A request that is waiting for approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReceipt {
    /// Request id (poll `/v1/requests/{id}`).
    pub request_id: String,
    /// Key id.
    pub key_id: String,
    /// Why approval is needed.
    pub reason: String,
    /// Distinct approvals needed.
    pub approvals: u32,
    /// Roles an approver may hold.
    pub approver_roles: Vec<String>,
    /// When the request expires.
    pub expires_at: String,
    /// The policy verdict.
    pub verdict: Verdict,
}

/// How a request that passed the pipeline ended: signed now, or waiting for approvers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Signed and recorded.
    Signed(SignReceipt),
    /// Stored; approvers decide.
    Pending(PendingReceipt),
}

impl SigningPath {
    /// Runs a sign request through the whole path.
    pub async fn submit(&self, call: SignCall) -> Result<Submitted, PipelineError> {
        // The caller's rights are checked before a stored outcome is replayed: a caller removed
        // from the signers, or a key disabled since, gets no stored signature either.
        let admitted = admit(
            self,
            &call.principal,
            &call.key_id,
            call.operation,
            &call.request_id,
        )
        .await?;
        if let Some(idem) = &call.idempotency
            && let Some(previous) = replay(self, &call.principal, idem).await?
        {
            return previous;
        }

        let Judged {
            case,
            signer,
            options,
            reservation,
        } = judge_admitted(self, call, admitted).await?;
        let outcome = case.outcome(self);
        match &case.verdict.decision {
            Decision::Allow => {}
            Decision::Deny { reason } => {
                let reason = reason.clone();
                release(reservation).await;
                outcome
                    .record_refusal(SignStatus::Denied, ErrorCode::PolicyDenied, &reason)
                    .await?;
                return Err(PipelineError::PolicyDenied {
                    reason,
                    verdict: Box::new(case.verdict),
                });
            }
            Decision::RequireApproval { .. } => {
                release(reservation).await;
                return outcome
                    .record_pending(&case.intent.to_sign, options)
                    .await
                    .map(Submitted::Pending);
            }
        }

        // Sign (inline for fast software keys, else on the blocking pool).
        let signed = sign::make_signatures(signer, case.intent.to_sign.clone(), options).await;
        let signature = match signed {
            Ok(s) => s,
            Err(err) => {
                let code = match &err {
                    KeyError::InvalidInput(_) => ErrorCode::InvalidRequest,
                    _ => ErrorCode::BackendUnavailable,
                };
                release(reservation).await;
                outcome
                    .record_refusal(SignStatus::Failed, code, &err.to_string())
                    .await?;
                return Err(err.into());
            }
        };

        // Audit, then answer.
        outcome
            .record_signature(signature, reservation)
            .await
            .map(Submitted::Signed)
    }
}

/// Gives back the usage a request reserved when it ends without a signature, before its
/// answer leaves: the caller's next request must not find it still counted.
async fn release(reservation: Option<crate::store::pending::Reservation>) {
    if let Some(r) = reservation {
        r.release().await;
    }
}

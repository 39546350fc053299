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
//! Parts: this file (the call, `judge`, `submit`, dry runs, idempotent replay), `outcome`
//! (recording how a request ended: signed, refused, failed or pending, each with its audit
//! record), `approved` (signatures made later: after approval, or with a CSC authorization),
//! `stored` (the exact bytes to sign, as kept with a pending request).

mod access;
mod approved;
mod outcome;
mod path;
mod stored;

use access::{admit, signer_grant, usage_of};
pub(crate) use access::{gate_refusal, record_refused_attempt};
pub use approved::{AUTHORIZATION_OPERATIONS, Authorization, signs_on_approval};
use outcome::Outcome;
pub use path::SigningPath;
pub use stored::stored_sign_options;

use std::sync::Arc;

use keyward_policy::{Decision, Intent, SignRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest as _;

use crate::audit::{Actor, AuditError, AuditEvent};
use crate::auth::{Principal, Role};
use crate::chains::ChainError;
use crate::error_code::ErrorCode;
use crate::intent::SignIntent;
use crate::keys::{Algorithm, KeyError, LoadedKey, ResolveError, SignOptions, Signature, ToSign};
use crate::policy::Verdict;
use crate::store::approvals::{ApprovalRequestRow, ApprovalStatus};
use crate::store::pending::Reservation;
use crate::store::{SignRequestRow, SignStatus, StateChange, StoreError};

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

/// A request that passed resolve and authorize, with the policy verdict.
struct Judged {
    principal: Principal,
    key: Arc<LoadedKey>,
    signer: Arc<dyn crate::keys::SigningKey>,
    intent: SignIntent,
    options: SignOptions,
    verdict: Verdict,
    request_id: String,
    operation: &'static str,
    idempotency: Option<Idempotency>,
    time: (String, i64),
    /// The usage this request reserved while its context was read (given back on drop).
    reservation: Option<Reservation>,
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

/// Resolve, authorize, build the intent and run the policy stage.
async fn judge(path: &SigningPath, call: SignCall) -> Result<Judged, PipelineError> {
    let admitted = admit(
        path,
        &call.principal,
        &call.key_id,
        call.operation,
        &call.request_id,
    )
    .await?;
    judge_admitted(path, call, admitted).await
}

/// The rest of `judge` for a caller `admit` let through.
async fn judge_admitted(
    path: &SigningPath,
    call: SignCall,
    (key, signer): (Arc<LoadedKey>, Arc<dyn crate::keys::SigningKey>),
) -> Result<Judged, PipelineError> {
    let SignCall {
        principal,
        build,
        idempotency,
        request_id,
        operation,
        ..
    } = call;
    let (intent, options) = build(key.meta.algorithm)?;
    if intent.purpose != key.meta.purpose {
        let e = PipelineError::WrongPurpose {
            key_purpose: key.meta.purpose.to_string(),
            wanted: intent.purpose.to_string(),
        };
        record_refused_attempt(path, &principal, &key.meta.id, operation, &request_id, &e).await;
        return Err(e);
    }

    // Policies.
    let (time, unix_time) = crate::clock::now();
    let request = SignRequest {
        request_id: request_id.clone(),
        principal: principal.to_wire(),
        key: key.meta.to_wire(),
        intent: intent.intent.clone(),
        time: time.clone(),
        unix_time,
        context: Default::default(),
    };
    let usage = usage_of(&principal, &key.meta.id, &intent.intent, unix_time);
    let (verdict, reservation) = path
        .policy()
        .evaluate_reserving(&key.meta, &request, usage)
        .await;
    Ok(Judged {
        principal,
        key,
        signer,
        intent,
        options,
        verdict,
        request_id,
        operation,
        idempotency,
        time: (time, unix_time),
        reservation,
    })
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
            principal,
            key,
            signer,
            intent,
            options,
            verdict,
            request_id,
            operation,
            idempotency,
            time: (time, unix_time),
            reservation,
        } = judge_admitted(self, call, admitted).await?;

        let outcome = Outcome {
            path: self,
            principal: &principal,
            key: &key,
            operation,
            intent: &intent.intent,
            verdict: &verdict,
            request_id: &request_id,
            idempotency: idempotency.as_ref(),
            time: (time, unix_time),
        };
        match &verdict.decision {
            Decision::Allow => {}
            Decision::Deny { reason } => {
                let reason = reason.clone();
                outcome
                    .record_refusal(SignStatus::Denied, ErrorCode::PolicyDenied, &reason)
                    .await?;
                return Err(PipelineError::PolicyDenied {
                    reason,
                    verdict: Box::new(verdict),
                });
            }
            Decision::RequireApproval { .. } => {
                return outcome
                    .record_pending(&intent.to_sign, options)
                    .await
                    .map(Submitted::Pending);
            }
        }

        // Sign, off the async runtime.
        let to_sign = intent.to_sign.clone();
        let signed =
            tokio::task::spawn_blocking(move || sign_parts(signer.as_ref(), &to_sign, options))
                .await
                .map_err(|e| KeyError::Unavailable(format!("signing task failed: {e}")))
                .and_then(|r| r);
        let signature = match signed {
            Ok(s) => s,
            Err(err) => {
                let code = match &err {
                    KeyError::InvalidInput(_) => ErrorCode::InvalidRequest,
                    _ => ErrorCode::BackendUnavailable,
                };
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

/// Signs `to_sign` with `signer`: one signature, or one per part of a batch (in order, all
/// or none).
fn sign_parts(
    signer: &dyn crate::keys::SigningKey,
    to_sign: &ToSign,
    options: SignOptions,
) -> Result<Vec<Signature>, KeyError> {
    match to_sign {
        ToSign::Batch(parts) if parts.is_empty() => {
            Err(KeyError::InvalidInput("nothing to sign".into()))
        }
        ToSign::Batch(parts) => parts
            .iter()
            .map(|part| match part {
                ToSign::Batch(_) => Err(KeyError::InvalidInput("nested batch".into())),
                part => signer.sign(part, options),
            })
            .collect(),
        single => Ok(vec![signer.sign(single, options)?]),
    }
}

/// The receipt fields of the signatures of one request: the first signature, its recovery
/// id, all of them when there are several, and the SHA-256 the audit record keeps.
fn receipt_parts(signatures: &[Signature]) -> (String, Option<u8>, Vec<String>, String) {
    use base64::Engine as _;
    let b64 = |s: &Signature| base64::engine::general_purpose::STANDARD.encode(&s.bytes);
    let first = signatures.first();
    let mut hash = sha2::Sha256::new();
    for s in signatures {
        hash.update(&s.bytes);
    }
    let all = if signatures.len() > 1 {
        signatures.iter().map(b64).collect()
    } else {
        Vec::new()
    };
    (
        first.map(b64).unwrap_or_default(),
        first.and_then(|s| s.recovery_id),
        all,
        hex::encode(hash.finalize()),
    )
}

/// Looks for an earlier request with the same idempotency key.
async fn replay(
    path: &SigningPath,
    principal: &Principal,
    idem: &Idempotency,
) -> Result<Option<Result<Submitted, PipelineError>>, PipelineError> {
    if let Some(pending) = path
        .store()
        .approval_request_by_idempotency_key(&principal.issuer, &principal.subject, &idem.key)
        .await?
    {
        if pending.body_hash.as_deref() != Some(&idem.body_hash[..]) {
            return Err(PipelineError::IdempotencyMismatch);
        }
        if let (ApprovalStatus::Signed, Some(result)) = (pending.status, &pending.result) {
            let receipt: SignReceipt = serde_json::from_str(result)
                .map_err(|e| StoreError::Corrupt(format!("request {} result: {e}", pending.id)))?;
            return Ok(Some(Ok(Submitted::Signed(receipt))));
        }
        return Ok(Some(Ok(Submitted::Pending(pending_receipt(&pending)?))));
    }
    let Some(row) = path
        .store()
        .request_by_idempotency_key(&principal.issuer, &principal.subject, &idem.key)
        .await?
    else {
        return Ok(None);
    };
    if row.body_hash.as_deref() != Some(&idem.body_hash[..]) {
        return Err(PipelineError::IdempotencyMismatch);
    }
    let verdict: Verdict = serde_json::from_str(&row.decision)
        .map_err(|e| StoreError::Corrupt(format!("request {} verdict: {e}", row.id)))?;
    Ok(Some(match row.status {
        SignStatus::Signed => {
            let receipt: SignReceipt = serde_json::from_str(row.response.as_deref().unwrap_or(""))
                .map_err(|e| StoreError::Corrupt(format!("request {} response: {e}", row.id)))?;
            Ok(Submitted::Signed(receipt))
        }
        _ => Err(PipelineError::PolicyDenied {
            reason: row.error_message.unwrap_or_default(),
            verdict: Box::new(verdict),
        }),
    }))
}

/// The pending receipt of a stored approval request.
pub fn pending_receipt(row: &ApprovalRequestRow) -> Result<PendingReceipt, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("request {}: {e}", row.id));
    Ok(PendingReceipt {
        request_id: row.id.clone(),
        key_id: row.key_id.clone(),
        reason: row.reason.clone(),
        approvals: u32::try_from(row.quorum).unwrap_or(u32::MAX),
        approver_roles: serde_json::from_str(&row.approver_roles).map_err(corrupt)?,
        expires_at: row.expires_at.clone(),
        verdict: serde_json::from_str(&row.verdict).map_err(corrupt)?,
    })
}

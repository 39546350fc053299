//! The one signing path: authenticate -> resolve -> authorize -> policies -> sign -> audit.
//!
//! Every route that produces a signature builds a `SignCall` and calls `submit`; no route
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

use std::sync::Arc;

use keyward_policy::{Decision, Intent, SignRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest as _;

use crate::app::AppState;
use crate::audit::{Actor, AuditError, AuditEvent};
use crate::auth::{Principal, Role};
use crate::intent::SignIntent;
use crate::keys::{Algorithm, KeyError, LoadedKey, ResolveError, SignOptions, Signature, ToSign};
use crate::policy::Verdict;
use crate::store::approvals::{ApprovalRequestRow, ApprovalStatus};
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

/// Runs a sign request up to the policy stage and reports the verdict, without signing and
/// without recording a sign request (the dry run itself is audited as `sign.dry_run`).
/// The same checks as `submit` apply: an unknown or disabled key, a missing role or the
/// wrong purpose are errors, not verdicts.
pub async fn dry_run(state: &AppState, call: SignCall) -> Result<DryRunReport, PipelineError> {
    let judged = judge(state, call).await?;
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
    state.audit().append(Vec::new(), event).await?;
    Ok(DryRunReport {
        request_id: judged.request_id,
        key_id: judged.key.meta.id.clone(),
        verdict: judged.verdict,
    })
}

/// Operations whose approval requests authorize a later signature rather than ask for one:
/// when their quorum is reached nothing is signed; the signature is made only when the
/// requester comes back with the credential's SAD (CSC `signatures/signHash`), through
/// `sign_authorized`.
pub const AUTHORIZATION_OPERATIONS: &[&str] = &["csc.authorize"];

/// Whether an approved request of `operation` is signed as soon as its quorum is reached.
pub fn signs_on_approval(operation: &str) -> bool {
    !AUTHORIZATION_OPERATIONS.contains(&operation)
}

/// How the policy stage judged a signature that is to be made later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The policies allow it now; `submit` will run them again when it is signed.
    Allowed(Verdict),
    /// Approvers decide; the exact bytes are stored and `sign_authorized` signs them once.
    Pending(PendingReceipt),
}

/// Runs a future signature through resolve, authorize and the policy stage without signing
/// (CSC `credentials/authorize`). `call.operation` must be one of `AUTHORIZATION_OPERATIONS`.
/// A denial is recorded as a denied sign request and returned as `PolicyDenied`; a
/// require-approval verdict stores the exact bytes to sign as a pending request, which is
/// *not* signed when approved (see `signs_on_approval`); an allow is audited as
/// `sign.authorize`.
pub async fn authorize(state: &AppState, call: SignCall) -> Result<Authorization, PipelineError> {
    if signs_on_approval(call.operation) {
        return Err(PipelineError::Invalid(format!(
            "{} is not an authorization operation",
            call.operation
        )));
    }
    let Judged {
        principal,
        key,
        intent,
        options,
        verdict,
        request_id,
        operation,
        idempotency,
        time: (time, unix_time),
        ..
    } = judge(state, call).await?;
    let outcome = Outcome {
        state,
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
        Decision::Allow => {
            let event = AuditEvent {
                action: "sign.authorize",
                ..outcome.event("allowed", json!({}))
            };
            state.audit().append(Vec::new(), event).await?;
            Ok(Authorization::Allowed(verdict))
        }
        Decision::Deny { reason } => {
            let reason = reason.clone();
            outcome
                .record_refusal(SignStatus::Denied, "POLICY_DENIED", &reason)
                .await?;
            Err(PipelineError::PolicyDenied {
                reason,
                verdict: Box::new(verdict),
            })
        }
        Decision::RequireApproval { .. } => outcome
            .record_pending(&intent.to_sign, options)
            .await
            .map(Authorization::Pending),
    }
}

/// Resolve, authorize, build the intent and run the policy stage.
async fn judge(state: &AppState, call: SignCall) -> Result<Judged, PipelineError> {
    // Resolve.
    let key = state
        .keys()
        .resolve(&call.key_id)
        .await?
        .ok_or_else(|| PipelineError::KeyNotFound(call.key_id.clone()))?;
    let Some(signer) = key.signer.clone() else {
        return Err(PipelineError::KeyDisabled(key.meta.id.clone()));
    };

    // Authorize.
    if !call.principal.has_role(Role::Signer) {
        return Err(PipelineError::Forbidden(
            "signing needs the role signer".into(),
        ));
    }
    if !crate::auth::signers::admits(&key.meta.signers, &call.principal) {
        return Err(PipelineError::Forbidden(format!(
            "{} is not among the signers of key {}",
            call.principal.subject, key.meta.id
        )));
    }
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
        return Err(PipelineError::WrongPurpose {
            key_purpose: key.meta.purpose.to_string(),
            wanted: intent.purpose.to_string(),
        });
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
    let verdict = state.policy().evaluate(&key.meta, &request).await;
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

/// The bytes and options to sign, as stored with a pending request.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToSign {
    kind: String,
    hash: Option<String>,
    bytes: String,
    scheme: String,
    format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tweak: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<StoredToSign>,
}

fn encode_to_sign(to_sign: &ToSign, options: SignOptions) -> String {
    serde_json::to_string(&stored_to_sign(to_sign, options)).unwrap_or_default()
}

fn stored_to_sign(to_sign: &ToSign, options: SignOptions) -> StoredToSign {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let part = |kind: &str, hash: Option<String>, bytes: &[u8]| StoredToSign {
        kind: kind.into(),
        hash,
        bytes: b64(bytes),
        scheme: options.scheme.to_string(),
        format: options.format.to_string(),
        tweak: None,
        parts: Vec::new(),
    };
    match to_sign {
        ToSign::Digest { hash, digest } => part("digest", Some(hash.to_string()), digest),
        ToSign::Message(m) => part("message", None, m),
        ToSign::Schnorr { digest, tweak } => StoredToSign {
            tweak: tweak.as_deref().map(b64),
            ..part("schnorr", None, digest)
        },
        ToSign::Batch(parts) => StoredToSign {
            parts: parts.iter().map(|p| stored_to_sign(p, options)).collect(),
            ..part("batch", None, &[])
        },
    }
}

fn decode_to_sign(text: &str) -> Result<(ToSign, SignOptions), StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("stored bytes to sign: {e}"));
    let stored: StoredToSign = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    from_stored(stored)
}

fn from_stored(stored: StoredToSign) -> Result<(ToSign, SignOptions), StoreError> {
    use base64::Engine as _;
    let corrupt = |e: String| StoreError::Corrupt(format!("stored bytes to sign: {e}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&stored.bytes)
        .map_err(|e| corrupt(e.to_string()))?;
    let options = SignOptions {
        scheme: stored.scheme.parse().map_err(corrupt)?,
        format: stored.format.parse().map_err(corrupt)?,
    };
    let to_sign = match (stored.kind.as_str(), stored.hash) {
        ("digest", Some(hash)) => ToSign::Digest {
            hash: hash.parse().map_err(corrupt)?,
            digest: bytes,
        },
        ("message", None) => ToSign::Message(bytes),
        ("schnorr", None) => ToSign::Schnorr {
            digest: bytes,
            tweak: match &stored.tweak {
                Some(t) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(t)
                        .map_err(|e| corrupt(e.to_string()))?,
                ),
                None => None,
            },
        },
        ("batch", None) => ToSign::Batch(
            stored
                .parts
                .into_iter()
                .map(|p| from_stored(p).map(|(t, _)| t))
                .collect::<Result<_, _>>()?,
        ),
        (kind, _) => return Err(corrupt(format!("unknown kind {kind}"))),
    };
    Ok((to_sign, options))
}

/// The signature options stored with a pending request (its `to_sign` column).
pub fn stored_sign_options(to_sign: &str) -> Result<SignOptions, StoreError> {
    decode_to_sign(to_sign).map(|(_, options)| options)
}

/// Runs a sign request through the whole path.
pub async fn submit(state: &AppState, call: SignCall) -> Result<Submitted, PipelineError> {
    if let Some(idem) = &call.idempotency
        && let Some(previous) = replay(state, &call.principal, idem).await?
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
    } = judge(state, call).await?;

    let outcome = Outcome {
        state,
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
                .record_refusal(SignStatus::Denied, "POLICY_DENIED", &reason)
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
                KeyError::InvalidInput(_) => "INVALID_REQUEST",
                _ => "BACKEND_UNAVAILABLE",
            };
            outcome
                .record_refusal(SignStatus::Failed, code, &err.to_string())
                .await?;
            return Err(err.into());
        }
    };

    // Audit, then answer.
    outcome
        .record_signature(signature)
        .await
        .map(Submitted::Signed)
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
    state: &AppState,
    principal: &Principal,
    idem: &Idempotency,
) -> Result<Option<Result<Submitted, PipelineError>>, PipelineError> {
    if let Some(pending) = state
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
    let Some(row) = state
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

/// Everything needed to record how a request ended.
struct Outcome<'a> {
    state: &'a AppState,
    principal: &'a Principal,
    key: &'a Arc<LoadedKey>,
    operation: &'static str,
    intent: &'a Intent,
    verdict: &'a Verdict,
    request_id: &'a str,
    idempotency: Option<&'a Idempotency>,
    time: (String, i64),
}

impl Outcome<'_> {
    fn row(&self, status: SignStatus) -> SignRequestRow {
        // Failures are not replayed: a retry with the same key may succeed.
        let idem = self.idempotency.filter(|_| status != SignStatus::Failed);
        SignRequestRow {
            id: self.request_id.to_string(),
            key_id: self.key.meta.id.clone(),
            issuer: self.principal.issuer.clone(),
            subject: self.principal.subject.clone(),
            operation: self.operation.to_string(),
            status,
            intent: serde_json::to_string(self.intent).unwrap_or_default(),
            decision: serde_json::to_string(self.verdict).unwrap_or_default(),
            idempotency_key: idem.map(|i| i.key.clone()),
            body_hash: idem.map(|i| i.body_hash.to_vec()),
            response: None,
            error_code: None,
            error_message: None,
            created_at: self.time.0.clone(),
            created_unix: self.time.1,
        }
    }

    fn event(&self, outcome: &'static str, extra: serde_json::Value) -> AuditEvent {
        let mut details = json!({
            "operation": self.operation,
            "algorithm": self.key.meta.algorithm.as_str(),
            "purpose": self.key.meta.purpose.as_str(),
            "intent": self.intent,
            "policy": self.verdict,
        });
        if let (Some(map), serde_json::Value::Object(extra)) = (details.as_object_mut(), extra) {
            map.extend(extra);
        }
        AuditEvent {
            action: "sign",
            outcome,
            actor: Actor {
                issuer: self.principal.issuer.clone(),
                subject: self.principal.subject.clone(),
            },
            key_id: Some(self.key.meta.id.clone()),
            request_id: Some(self.request_id.to_string()),
            details,
        }
    }

    async fn record_refusal(
        &self,
        status: SignStatus,
        code: &str,
        message: &str,
    ) -> Result<(), PipelineError> {
        let mut row = self.row(status);
        row.error_code = Some(code.to_string());
        row.error_message = Some(message.to_string());
        let event = self.event(
            status.as_str(),
            json!({"error_code": code, "error": message}),
        );
        match self
            .state
            .audit()
            .append(vec![StateChange::InsertSignRequest(Box::new(row))], event)
            .await
        {
            Ok(_) => Ok(()),
            // A concurrent request with the same idempotency key got there first.
            Err(AuditError::Rejected(StoreError::Conflict(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn record_pending(
        &self,
        to_sign: &ToSign,
        options: SignOptions,
    ) -> Result<PendingReceipt, PipelineError> {
        let Decision::RequireApproval {
            reason,
            approvals,
            approver_roles,
            ttl_seconds,
        } = &self.verdict.decision
        else {
            return Err(PipelineError::BadApprovalRequirement(
                "not an approval verdict".into(),
            ));
        };
        let limits = &self.state.config().approvals;
        if *approvals == 0 || *approvals > limits.max_quorum {
            let message = format!(
                "a policy asked for {approvals} approvals; this server allows 1 to {}",
                limits.max_quorum
            );
            self.record_refusal(SignStatus::Denied, "POLICY_DENIED", &message)
                .await?;
            return Err(PipelineError::BadApprovalRequirement(message));
        }
        let ttl = (*ttl_seconds).clamp(1, limits.max_ttl_seconds);
        let expires_unix = self
            .time
            .1
            .saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
        let expires_at = time::OffsetDateTime::from_unix_timestamp(expires_unix)
            .map(crate::clock::format)
            .map_err(|e| PipelineError::BadApprovalRequirement(e.to_string()))?;
        let row = ApprovalRequestRow {
            id: self.request_id.to_string(),
            key_id: self.key.meta.id.clone(),
            issuer: self.principal.issuer.clone(),
            subject: self.principal.subject.clone(),
            operation: self.operation.to_string(),
            status: ApprovalStatus::PendingApproval,
            intent: serde_json::to_string(self.intent).unwrap_or_default(),
            verdict: serde_json::to_string(self.verdict).unwrap_or_default(),
            to_sign: encode_to_sign(to_sign, options),
            options: serde_json::to_string(
                &json!({"scheme": options.scheme.as_str(), "format": options.format.as_str()}),
            )
            .unwrap_or_default(),
            quorum: i64::from(*approvals),
            approver_roles: serde_json::to_string(approver_roles).unwrap_or_else(|_| "[]".into()),
            reason: reason.clone(),
            expires_at,
            expires_unix,
            idempotency_key: self.idempotency.map(|i| i.key.clone()),
            body_hash: self.idempotency.map(|i| i.body_hash.to_vec()),
            result: None,
            error_code: None,
            error_message: None,
            created_at: self.time.0.clone(),
            updated_at: self.time.0.clone(),
        };
        let receipt = pending_receipt(&row)?;
        let event = self.event(
            "pending_approval",
            json!({"approvals": approvals, "approver_roles": approver_roles, "expires_at": row.expires_at}),
        );
        match self
            .state
            .audit()
            .append(
                vec![StateChange::InsertApprovalRequest(Box::new(row))],
                event,
            )
            .await
        {
            Ok(_) => {
                self.state
                    .approvals()
                    .changed(&receipt.request_id, "pending_approval");
                Ok(receipt)
            }
            Err(AuditError::Rejected(StoreError::Conflict(_))) => {
                let idem = self.idempotency.ok_or(PipelineError::IdempotencyMismatch)?;
                match replay(self.state, self.principal, idem).await? {
                    Some(Ok(Submitted::Pending(p))) => Ok(p),
                    Some(Err(e)) => Err(e),
                    _ => Err(PipelineError::IdempotencyMismatch),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn record_signature(
        &self,
        signatures: Vec<Signature>,
    ) -> Result<SignReceipt, PipelineError> {
        let (signature, recovery_id, signatures, sig_hash) = receipt_parts(&signatures);
        let receipt = SignReceipt {
            request_id: self.request_id.to_string(),
            key_id: self.key.meta.id.clone(),
            algorithm: self.key.meta.algorithm.to_string(),
            signature,
            recovery_id,
            signatures,
            signed_at: self.time.0.clone(),
            verdict: self.verdict.clone(),
        };
        let mut row = self.row(SignStatus::Signed);
        row.response = Some(serde_json::to_string(&receipt).unwrap_or_default());
        let event = self.event("ok", json!({"signature_sha256": sig_hash}));
        let mut changes = vec![StateChange::InsertSignRequest(Box::new(row))];
        let spent = crate::chains::ethereum::spend::usage_deltas(
            &self.key.meta.id,
            self.intent,
            self.time.1,
        );
        if !spent.is_empty() {
            changes.push(StateChange::AddUsage(spent));
        }
        match self.state.audit().append(changes, event).await {
            Ok(_) => Ok(receipt),
            Err(AuditError::Rejected(StoreError::Conflict(_))) => {
                // A concurrent request with the same idempotency key committed first: answer
                // with what it recorded, and drop this signature unseen.
                let idem = self.idempotency.ok_or(PipelineError::IdempotencyMismatch)?;
                match replay(self.state, self.principal, idem).await? {
                    Some(Ok(Submitted::Signed(receipt))) => Ok(receipt),
                    Some(Err(e)) => Err(e),
                    _ => Err(PipelineError::IdempotencyMismatch),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Makes the signature of an approved request, exactly once: from the bytes stored when it was
/// requested, after checking that the key can still sign. The request becomes `signed` (with
/// the receipt) or `failed` in the same transaction as its audit record. Only the caller whose
/// vote completed the quorum (or start-up recovery) calls this.
pub async fn sign_approved(state: &AppState, id: &str) -> Result<SignReceipt, PipelineError> {
    let row = state
        .store()
        .approval_request(id)
        .await?
        .ok_or_else(|| PipelineError::Invalid(format!("no approval request {id}")))?;
    if !signs_on_approval(&row.operation) {
        return Err(PipelineError::Invalid(format!(
            "request {id} authorizes a later signature; only its requester's signHash signs it"
        )));
    }
    sign_stored(state, row).await
}

/// Makes the signature of an approved *authorization* request (CSC: `signHash` with the SAD
/// issued for it), exactly once, from the bytes stored when it was authorized. Only the
/// requester may; the request moves `approved` -> `signed` in the same transaction as its
/// audit record, so a second call is refused.
pub async fn sign_authorized(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<SignReceipt, PipelineError> {
    let row = state
        .store()
        .approval_request(id)
        .await?
        .ok_or_else(|| PipelineError::Invalid(format!("no approval request {id}")))?;
    if signs_on_approval(&row.operation) {
        return Err(PipelineError::Invalid(format!(
            "request {id} is not an authorization"
        )));
    }
    if !principal.is(&row.issuer, &row.subject) {
        return Err(PipelineError::Forbidden(format!(
            "request {id} was made by someone else"
        )));
    }
    sign_stored(state, row).await
}

async fn sign_stored(
    state: &AppState,
    row: ApprovalRequestRow,
) -> Result<SignReceipt, PipelineError> {
    let id = row.id.clone();
    let id = id.as_str();
    if row.status != ApprovalStatus::Approved {
        return Err(PipelineError::Invalid(format!(
            "request {id} is {}, not approved",
            row.status.as_str()
        )));
    }
    let approvers: Vec<String> = state
        .store()
        .approval_votes(id)
        .await?
        .into_iter()
        .filter(|v| v.decision == "approve")
        .map(|v| v.subject)
        .collect();
    let actor = Actor {
        issuer: row.issuer.clone(),
        subject: row.subject.clone(),
    };
    let (now, _) = crate::clock::now();
    let fail = |code: &str, message: String| {
        let event = AuditEvent {
            action: "sign",
            outcome: "failed",
            actor: actor.clone(),
            key_id: Some(row.key_id.clone()),
            request_id: Some(row.id.clone()),
            details: json!({"operation": row.operation, "approvers": approvers, "error_code": code, "error": message}),
        };
        let change = StateChange::ApprovalTransition {
            id: row.id.clone(),
            from: vec![ApprovalStatus::Approved],
            to: ApprovalStatus::Failed,
            at: now.clone(),
            result: None,
            error: Some((code.to_string(), message)),
        };
        (vec![change], event)
    };
    let (to_sign, options) = decode_to_sign(&row.to_sign)?;
    let key = state.keys().resolve(&row.key_id).await?;
    let signer = match key.as_ref().and_then(|k| k.signer.clone()) {
        Some(signer) => signer,
        None => {
            let (changes, event) = fail(
                "KEY_DISABLED",
                "the key was disabled before the approvals completed".into(),
            );
            state.audit().append(changes, event).await?;
            state.approvals().changed(id, "failed");
            return Err(PipelineError::KeyDisabled(row.key_id.clone()));
        }
    };
    let key = key.ok_or_else(|| PipelineError::KeyNotFound(row.key_id.clone()))?;
    let signed =
        tokio::task::spawn_blocking(move || sign_parts(signer.as_ref(), &to_sign, options))
            .await
            .map_err(|e| KeyError::Unavailable(format!("signing task failed: {e}")))
            .and_then(|r| r);
    let signature = match signed {
        Ok(s) => s,
        Err(err) => {
            let (changes, event) = fail("BACKEND_UNAVAILABLE", err.to_string());
            state.audit().append(changes, event).await?;
            state.approvals().changed(id, "failed");
            return Err(err.into());
        }
    };
    let (signature, recovery_id, signatures, sig_hash) = receipt_parts(&signature);
    let verdict: Verdict = serde_json::from_str(&row.verdict)
        .map_err(|e| StoreError::Corrupt(format!("request {id} verdict: {e}")))?;
    let receipt = SignReceipt {
        request_id: row.id.clone(),
        key_id: row.key_id.clone(),
        algorithm: key.meta.algorithm.to_string(),
        signature,
        recovery_id,
        signatures,
        signed_at: now.clone(),
        verdict,
    };
    let receipt_json = serde_json::to_string(&receipt).unwrap_or_default();
    let (_, unix) = crate::clock::now();
    let request_row = SignRequestRow {
        id: row.id.clone(),
        key_id: row.key_id.clone(),
        issuer: row.issuer.clone(),
        subject: row.subject.clone(),
        operation: row.operation.clone(),
        status: SignStatus::Signed,
        intent: row.intent.clone(),
        decision: row.verdict.clone(),
        idempotency_key: None,
        body_hash: None,
        response: Some(receipt_json.clone()),
        error_code: None,
        error_message: None,
        created_at: now.clone(),
        created_unix: unix,
    };
    let event = AuditEvent {
        action: "sign",
        outcome: "ok",
        actor,
        key_id: Some(row.key_id.clone()),
        request_id: Some(row.id.clone()),
        details: json!({
            "operation": row.operation,
            "algorithm": key.meta.algorithm.as_str(),
            "approvers": approvers,
            "signature_sha256": sig_hash,
        }),
    };
    let changes = vec![
        StateChange::ApprovalTransition {
            id: row.id.clone(),
            from: vec![ApprovalStatus::Approved],
            to: ApprovalStatus::Signed,
            at: now,
            result: Some(receipt_json),
            error: None,
        },
        StateChange::InsertSignRequest(Box::new(request_row)),
    ];
    let mut changes = changes;
    if let Ok(intent) = serde_json::from_str::<Intent>(&row.intent) {
        let spent = crate::chains::ethereum::spend::usage_deltas(&row.key_id, &intent, unix);
        if !spent.is_empty() {
            changes.push(StateChange::AddUsage(spent));
        }
    }
    state.audit().append(changes, event).await?;
    state.approvals().changed(id, "signed");
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::HashAlg;

    #[test]
    fn stored_bytes_to_sign_round_trip_batches_and_schnorr() {
        let batch = ToSign::Batch(vec![
            ToSign::Digest {
                hash: HashAlg::Sha256,
                digest: vec![1; 32],
            },
            ToSign::Schnorr {
                digest: vec![2; 32],
                tweak: Some(vec![3; 32]),
            },
            ToSign::Schnorr {
                digest: vec![4; 32],
                tweak: None,
            },
        ]);
        let options = SignOptions::default();
        let (back, _) = decode_to_sign(&encode_to_sign(&batch, options)).unwrap();
        assert_eq!(back, batch);
        let single = ToSign::Message(b"m".to_vec());
        let (back, _) = decode_to_sign(&encode_to_sign(&single, options)).unwrap();
        assert_eq!(back, single);
    }
}

//! Signatures made later: a request signed once its approvers' quorum is reached
//! (`sign_approved`), and CSC authorizations, judged now and signed only when the requester
//! comes back with the SAD (`authorize`, `sign_authorized`). Never signs anything that was not
//! judged and stored first; each stored request is signed at most once.

use keyward_policy::{Decision, Intent};
use serde_json::json;

use super::access::gate_refusal;
use super::judge::{Judged, judge};
use super::stored::decode_to_sign;
use super::{PendingReceipt, PipelineError, SignCall, SignReceipt, SigningPath, sign};
use crate::audit::{Actor, AuditEvent};
use crate::auth::{Principal, Role};
use crate::error_code::ErrorCode;
use crate::keys::{LoadedKey, Signature};
use crate::policy::Verdict;
use crate::store::approvals::{ApprovalRequestRow, ApprovalStatus};
use crate::store::{SignRequestRow, SignStatus, StateChange, StoreError};

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

impl SigningPath {
    /// Runs a future signature through resolve, authorize and the policy stage without signing
    /// (CSC `credentials/authorize`). `call.operation` must be one of `AUTHORIZATION_OPERATIONS`.
    /// A denial is recorded as a denied sign request and returned as `PolicyDenied`; a
    /// require-approval verdict stores the exact bytes to sign as a pending request, which is
    /// *not* signed when approved (see `signs_on_approval`); an allow is audited as
    /// `sign.authorize`.
    pub async fn authorize(&self, call: SignCall) -> Result<Authorization, PipelineError> {
        if signs_on_approval(call.operation) {
            return Err(PipelineError::Invalid(format!(
                "{} is not an authorization operation",
                call.operation
            )));
        }
        let Judged { case, options, .. } = judge(self, call).await?;
        let outcome = case.outcome(self);
        match &case.verdict.decision {
            Decision::Allow => {
                let event = AuditEvent {
                    action: "sign.authorize",
                    ..outcome.event("allowed", json!({}))
                };
                self.audit().append(Vec::new(), event).await?;
                Ok(Authorization::Allowed(case.verdict))
            }
            Decision::Deny { reason } => {
                let reason = reason.clone();
                outcome
                    .record_refusal(SignStatus::Denied, ErrorCode::PolicyDenied, &reason)
                    .await?;
                Err(PipelineError::PolicyDenied {
                    reason,
                    verdict: Box::new(case.verdict),
                })
            }
            Decision::RequireApproval { .. } => outcome
                .record_pending(&case.intent.to_sign, options)
                .await
                .map(Authorization::Pending),
        }
    }
}

impl SigningPath {
    /// Makes the signature of an approved request, exactly once: from the bytes stored when it was
    /// requested, after checking that the key can still sign. The request becomes `signed` (with
    /// the receipt) or `failed` in the same transaction as its audit record. Only the caller whose
    /// vote completed the quorum (or start-up recovery) calls this.
    pub async fn sign_approved(&self, id: &str) -> Result<SignReceipt, PipelineError> {
        let row = self
            .store()
            .approval_request(id)
            .await?
            .ok_or_else(|| PipelineError::Invalid(format!("no approval request {id}")))?;
        if !signs_on_approval(&row.operation) {
            return Err(PipelineError::Invalid(format!(
                "request {id} authorizes a later signature; only its requester's signHash signs it"
            )));
        }
        sign_stored(self, row).await
    }
}

impl SigningPath {
    /// Makes the signature of an approved *authorization* request (CSC: `signHash` with the SAD
    /// issued for it), exactly once, from the bytes stored when it was authorized. Only the
    /// requester may; the request moves `approved` -> `signed` in the same transaction as its
    /// audit record, so a second call is refused.
    pub async fn sign_authorized(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<SignReceipt, PipelineError> {
        let row = self
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
        sign_stored(self, row).await
    }
}

/// Signs an approved request from its stored bytes and records the end of it: signed, or
/// failed (key disabled, requester no longer a signer, backend failure, the writer's gate).
async fn sign_stored(
    path: &SigningPath,
    row: ApprovalRequestRow,
) -> Result<SignReceipt, PipelineError> {
    if row.status != ApprovalStatus::Approved {
        return Err(PipelineError::Invalid(format!(
            "request {} is {}, not approved",
            row.id,
            row.status.as_str()
        )));
    }
    let stored = Stored::new(path, &row).await?;
    let (to_sign, options) = decode_to_sign(&row.to_sign)?;
    let key = path.keys().resolve(&row.key_id).await?;
    let Some((key, signer)) = key.and_then(|k| k.signer.clone().map(|signer| (k, signer))) else {
        return Err(stored.key_disabled().await);
    };
    // The requester's right to sign with the key is checked again now (and once more by the
    // writer's gate where the signature lands): approvals do not outlive a removal.
    let requester = requester_of(&row)?;
    if !crate::auth::signers::admits(&key.meta.signers, &requester) {
        let message = format!(
            "{} was removed from the signers of key {} before the approvals completed",
            row.subject, row.key_id
        );
        return Err(stored
            .fail(
                ErrorCode::Forbidden,
                message.clone(),
                PipelineError::Forbidden(message),
            )
            .await);
    }
    let signature = match sign::make_signatures(signer, to_sign, options).await {
        Ok(s) => s,
        Err(err) => {
            let message = err.to_string();
            return Err(stored
                .fail(ErrorCode::BackendUnavailable, message, err.into())
                .await);
        }
    };
    stored.record_signed(&key, &requester, &signature).await
}

/// An approved request being signed: what its records name.
struct Stored<'a> {
    path: &'a SigningPath,
    row: &'a ApprovalRequestRow,
    actor: Actor,
    approvers: Vec<String>,
    now: String,
}

impl<'a> Stored<'a> {
    async fn new(
        path: &'a SigningPath,
        row: &'a ApprovalRequestRow,
    ) -> Result<Stored<'a>, PipelineError> {
        let approvers = path
            .store()
            .approval_votes(&row.id)
            .await?
            .into_iter()
            .filter(|v| v.decision == "approve")
            .map(|v| v.subject)
            .collect();
        let actor = Actor {
            issuer: row.issuer.clone(),
            subject: row.subject.clone(),
        };
        Ok(Stored {
            path,
            row,
            actor,
            approvers,
            now: crate::clock::now().0,
        })
    }

    async fn key_disabled(&self) -> PipelineError {
        let message = "the key was disabled before the approvals completed".to_string();
        let err = PipelineError::KeyDisabled(self.row.key_id.clone());
        self.fail(ErrorCode::KeyDisabled, message, err).await
    }

    /// Records that the request failed (`code`, `message`) and tells its waiters; gives back
    /// `err`, or the audit log's error when the failure could not be recorded.
    async fn fail(&self, code: ErrorCode, message: String, err: PipelineError) -> PipelineError {
        let row = self.row;
        let event = AuditEvent {
            action: "sign",
            outcome: "failed",
            actor: self.actor.clone(),
            key_id: Some(row.key_id.clone()),
            request_id: Some(row.id.clone()),
            details: json!({"operation": row.operation, "approvers": self.approvers, "error_code": code, "error": message}),
        };
        let change = StateChange::ApprovalTransition {
            id: row.id.clone(),
            from: vec![ApprovalStatus::Approved],
            to: ApprovalStatus::Failed,
            at: self.now.clone(),
            result: None,
            error: Some((code.as_str().to_string(), message)),
        };
        if let Err(e) = self.path.audit().append(vec![change], event).await {
            return e.into();
        }
        self.path.notify().changed(&row.id, "failed");
        err
    }

    /// Records the signature (the request `signed`, its sign request, the usage it adds)
    /// through the writer's gate, and only then hands back the receipt.
    async fn record_signed(
        &self,
        key: &LoadedKey,
        requester: &Principal,
        signatures: &[Signature],
    ) -> Result<SignReceipt, PipelineError> {
        let row = self.row;
        let verdict: Verdict = serde_json::from_str(&row.verdict)
            .map_err(|e| StoreError::Corrupt(format!("request {} verdict: {e}", row.id)))?;
        let (receipt, sig_hash) = sign::receipt(&row.id, key, signatures, &self.now, verdict);
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
            created_at: self.now.clone(),
            created_unix: unix,
        };
        let event = AuditEvent {
            action: "sign",
            outcome: "ok",
            actor: self.actor.clone(),
            key_id: Some(row.key_id.clone()),
            request_id: Some(row.id.clone()),
            details: json!({
                "operation": row.operation,
                "algorithm": key.meta.algorithm.as_str(),
                "approvers": self.approvers,
                "signature_sha256": sig_hash,
            }),
        };
        let rows = vec![
            StateChange::ApprovalTransition {
                id: row.id.clone(),
                from: vec![ApprovalStatus::Approved],
                to: ApprovalStatus::Signed,
                at: self.now.clone(),
                result: Some(receipt_json),
                error: None,
            },
            StateChange::InsertSignRequest(Box::new(request_row)),
        ];
        let intent = serde_json::from_str::<Intent>(&row.intent).ok();
        let changes = sign::changes(requester, &row.key_id, None, rows, intent.as_ref(), unix);
        if let Err(e) = self.path.audit().append(changes, event).await {
            let Some((code, err)) = gate_refusal(&e, &row.key_id) else {
                return Err(e.into());
            };
            return Err(self.fail(code, err.to_string(), err).await);
        }
        self.path.notify().changed(&row.id, "signed");
        Ok(receipt)
    }
}

/// The requester of a stored request with the rights they held when it was made (subject
/// only for requests stored before rights were kept).
pub(crate) fn requester_of(row: &ApprovalRequestRow) -> Result<Principal, PipelineError> {
    let rights: crate::store::approvals::RequesterRights = match &row.requester {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("request {} requester: {e}", row.id)))?,
        None => Default::default(),
    };
    Ok(Principal {
        issuer: row.issuer.clone(),
        subject: row.subject.clone(),
        roles: rights.roles.iter().filter_map(|r| Role::parse(r)).collect(),
        other_roles: rights.other_roles,
        groups: rights.groups,
        ..Default::default()
    })
}

//! Recording how a request ended: signed, refused, failed, or waiting for approvers. Each
//! outcome is one audit append with its request row, so a signature is never returned before
//! its record committed, and a refusal is never lost.

use std::sync::Arc;

use keyward_policy::{Decision, Intent};
use serde_json::json;

use super::access::gate_refusal;
use super::replay::{pending_receipt, replay};
use super::stored::encode_to_sign;
use super::{
    Idempotency, PendingReceipt, PipelineError, SignReceipt, SigningPath, Submitted, sign,
};
use crate::audit::{Actor, AuditError, AuditEvent};
use crate::auth::Principal;
use crate::error_code::ErrorCode;
use crate::keys::{LoadedKey, SignOptions, Signature, ToSign};
use crate::policy::Verdict;
use crate::store::approvals::{ApprovalRequestRow, ApprovalStatus};
use crate::store::pending::Reservation;
use crate::store::{SignRequestRow, SignStatus, StateChange, StoreError};

/// Everything needed to record how a request ended.
pub(super) struct Outcome<'a> {
    pub(super) path: &'a SigningPath,
    pub(super) principal: &'a Principal,
    pub(super) key: &'a Arc<LoadedKey>,
    pub(super) operation: &'static str,
    pub(super) intent: &'a Intent,
    pub(super) verdict: &'a Verdict,
    pub(super) request_id: &'a str,
    pub(super) idempotency: Option<&'a Idempotency>,
    pub(super) time: &'a (String, i64),
}

impl Outcome<'_> {
    pub(super) fn row(&self, status: SignStatus) -> SignRequestRow {
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

    /// The input the key's policies judged this request with, to keep for replays (none when
    /// no policy ran, or inputs are not kept).
    pub(super) fn kept_input(&self) -> Option<StateChange> {
        let request = self.verdict.input.clone()?;
        Some(StateChange::InsertPolicyInput(Box::new(
            crate::store::inputs::PolicyInputRow {
                request_id: self.request_id.to_string(),
                key_id: self.key.meta.id.clone(),
                operation: self.operation.to_string(),
                created_unix: self.time.1,
                request,
                decision: self.verdict.decision.name().to_string(),
                reason: self.verdict.decision.reason().map(str::to_string),
            },
        )))
    }

    pub(super) fn event(&self, outcome: &'static str, extra: serde_json::Value) -> AuditEvent {
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

    pub(super) async fn record_refusal(
        &self,
        status: SignStatus,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), PipelineError> {
        let mut row = self.row(status);
        row.error_code = Some(code.as_str().to_string());
        row.error_message = Some(message.to_string());
        let event = self.event(
            status.as_str(),
            json!({"error_code": code, "error": message}),
        );
        match self
            .path
            .audit()
            .append(
                std::iter::once(StateChange::InsertSignRequest(Box::new(row)))
                    .chain(self.kept_input())
                    .collect(),
                event,
            )
            .await
        {
            Ok(_) => Ok(()),
            // A concurrent request with the same idempotency key got there first.
            Err(AuditError::Rejected(StoreError::Conflict(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn record_pending(
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
        let limits = &self.path.approval_limits();
        let asked = self
            .verdict
            .requirements
            .iter()
            .map(|r| r.approvals)
            .chain(std::iter::once(*approvals));
        if let Some(bad) = asked
            .into_iter()
            .find(|n| *n == 0 || *n > limits.max_quorum)
        {
            let message = format!(
                "a policy asked for {bad} approvals; this server allows 1 to {}",
                limits.max_quorum
            );
            self.record_refusal(SignStatus::Denied, ErrorCode::PolicyDenied, &message)
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
            requirements: (!self.verdict.requirements.is_empty())
                .then(|| serde_json::to_string(&self.verdict.requirements).unwrap_or_default()),
            requester: Some(
                serde_json::to_string(&requester_rights(self.principal)).unwrap_or_default(),
            ),
        };
        let receipt = pending_receipt(&row)?;
        let event = self.event(
            "pending_approval",
            json!({"approvals": approvals, "approver_roles": approver_roles, "expires_at": row.expires_at}),
        );
        match self
            .path
            .audit()
            .append(
                std::iter::once(StateChange::InsertApprovalRequest(Box::new(row)))
                    .chain(self.kept_input())
                    .collect(),
                event,
            )
            .await
        {
            Ok(_) => {
                self.path
                    .notify()
                    .changed(&receipt.request_id, "pending_approval");
                Ok(receipt)
            }
            Err(AuditError::Rejected(StoreError::Conflict(_))) => {
                let idem = self.idempotency.ok_or(PipelineError::IdempotencyMismatch)?;
                match replay(self.path, self.principal, idem).await? {
                    Some(Ok(Submitted::Pending(p))) => Ok(p),
                    Some(Err(e)) => Err(e),
                    _ => Err(PipelineError::IdempotencyMismatch),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records a signature and answers with its receipt, only if the key is still active and
    /// the requester still among its signers where the record lands in the chain (the writer's
    /// gate); otherwise the signature is dropped unseen and the refusal recorded.
    pub(super) async fn record_signature(
        &self,
        signatures: Vec<Signature>,
        reservation: Option<Reservation>,
    ) -> Result<SignReceipt, PipelineError> {
        let (receipt, sig_hash) = sign::receipt(
            self.request_id,
            self.key,
            &signatures,
            &self.time.0,
            self.verdict.clone(),
        );
        let mut row = self.row(SignStatus::Signed);
        row.response = Some(serde_json::to_string(&receipt).unwrap_or_default());
        let event = self.event("ok", json!({"signature_sha256": sig_hash}));
        let changes = sign::changes(
            self.principal,
            &self.key.meta.id,
            self.verdict.policies_version,
            std::iter::once(StateChange::InsertSignRequest(Box::new(row)))
                .chain(self.kept_input())
                .collect(),
            Some(self.intent),
            self.time.1,
        );
        match self
            .path
            .audit()
            .append_reserved(changes, event, reservation)
            .await
        {
            Ok(_) => Ok(receipt),
            Err(AuditError::Rejected(StoreError::Conflict(_))) => {
                // A concurrent request with the same idempotency key committed first: answer
                // with what it recorded, and drop this signature unseen.
                let idem = self.idempotency.ok_or(PipelineError::IdempotencyMismatch)?;
                match replay(self.path, self.principal, idem).await? {
                    Some(Ok(Submitted::Signed(receipt))) => Ok(receipt),
                    Some(Err(e)) => Err(e),
                    _ => Err(PipelineError::IdempotencyMismatch),
                }
            }
            Err(e) => match gate_refusal(&e, &self.key.meta.id) {
                // The key was disabled, or the requester removed, before this landed (on this
                // node or another one): what this node holds of the key is stale.
                Some((code, err)) => {
                    self.path.keys().invalidate(&self.key.meta.id);
                    self.path
                        .policy()
                        .registry()
                        .invalidate_key(&self.key.meta.id);
                    self.record_refusal(SignStatus::Failed, code, &err.to_string())
                        .await?;
                    Err(err)
                }
                None => Err(e.into()),
            },
        }
    }
}

/// What of the requester's rights a pending request keeps, to check them again when it is
/// signed.
pub(super) fn requester_rights(principal: &Principal) -> crate::store::approvals::RequesterRights {
    crate::store::approvals::RequesterRights {
        roles: principal
            .roles
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
        other_roles: principal.other_roles.clone(),
        groups: principal.groups.clone(),
    }
}

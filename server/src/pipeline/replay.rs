//! Idempotent replay: an `Idempotency-Key` used again with the same body answers what the first
//! request got (its signature, its pending request, or its denial); with another body it is
//! refused.

use super::{Idempotency, PendingReceipt, PipelineError, SignReceipt, Submitted};
use crate::auth::Principal;
use crate::pipeline::SigningPath;
use crate::policy::Verdict;
use crate::store::approvals::{ApprovalRequestRow, ApprovalStatus};
use crate::store::{SignStatus, StoreError};

/// Looks for an earlier request with the same idempotency key.
pub(super) async fn replay(
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

//! The approval workflow: a request that a policy sent for approval waits, survives restarts,
//! collects distinct approvals from eligible approvers, and is then signed exactly once, or is
//! rejected, cancelled or expires.
//!
//! Every vote and transition goes through the audit writer as a conditional state change, so
//! concurrent approvers are serialised: only the vote that completes the quorum moves the
//! request to `approved`, and only that caller (or start-up recovery) asks the pipeline for the
//! signature. Nothing here signs by itself.
//!
//! Parts: `rules` (who may see and act on a request). Long-polls and the webhook hear of
//! changes through `crate::notify`.

pub mod labels;
mod rules;

use std::time::Duration;

use serde_json::json;

pub use crate::notify::webhook_signature;
pub use rules::{can_act, can_view, requirements};

use crate::audit::{Actor, AuditError, AuditEvent};
use crate::auth::Principal;
use crate::pipeline::SigningPath;
use crate::pipeline::{self, PipelineError};
use crate::store::approvals::{ApprovalRequestRow, ApprovalStatus, VoteRow};
use crate::store::{StateChange, StoreError};

/// Errors of the approval workflow.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such request (or not visible to the caller).
    #[error("no request {0}")]
    NotFound(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request's state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// The signing path failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl From<StoreError> for ApprovalError {
    fn from(e: StoreError) -> Self {
        ApprovalError::Pipeline(e.into())
    }
}

impl From<AuditError> for ApprovalError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Rejected(StoreError::Conflict(m)) => ApprovalError::Conflict(m),
            other => ApprovalError::Pipeline(other.into()),
        }
    }
}

fn actor(p: &Principal) -> Actor {
    Actor {
        issuer: p.issuer.clone(),
        subject: p.subject.clone(),
    }
}

async fn load(path: &SigningPath, id: &str) -> Result<ApprovalRequestRow, ApprovalError> {
    path.store()
        .approval_request(id)
        .await?
        .ok_or_else(|| ApprovalError::NotFound(id.to_string()))
}

/// A request as `principal` may see it, first moving it to `expired` if its time is up.
pub async fn get(
    path: &SigningPath,
    principal: &Principal,
    id: &str,
) -> Result<ApprovalRequestRow, ApprovalError> {
    let mut row = load(path, id).await?;
    if !may_view(path, principal, &row).await {
        return Err(ApprovalError::NotFound(id.to_string()));
    }
    if expire_if_due(path, &row).await? {
        row = load(path, id).await?;
    }
    Ok(row)
}

/// Whether `principal` may see `row` now: `can_view`, and a requester who is neither an
/// auditor nor an approver of it only while still among the key's signers (a requester
/// removed from the signers loses sight of the request, as of the key).
pub async fn may_view(path: &SigningPath, principal: &Principal, row: &ApprovalRequestRow) -> bool {
    if !can_view(principal, row) {
        return false;
    }
    if !principal.is(&row.issuer, &row.subject)
        || principal.has_role(crate::auth::Role::Auditor)
        || can_act(principal, row)
    {
        return true;
    }
    match path.keys().resolve(&row.key_id).await {
        Ok(Some(key)) => crate::auth::signers::admits(&key.meta.signers, principal),
        _ => false,
    }
}

/// Waits up to `wait` for the request's status to change (past the transient `approved`);
/// returns the request then, or as it is when the wait is over.
pub async fn wait_for_change(
    path: &SigningPath,
    principal: &Principal,
    id: &str,
    wait: Duration,
) -> Result<ApprovalRequestRow, ApprovalError> {
    let mut rx = path.notify().subscribe();
    let first = get(path, principal, id).await?;
    if !matches!(
        first.status,
        ApprovalStatus::PendingApproval | ApprovalStatus::Approved
    ) || wait.is_zero()
    {
        return Ok(first);
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let timeout = tokio::time::sleep_until(deadline);
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return get(path, principal, id).await;
                }
                let now = get(path, principal, id).await?;
                // `approved` is transient (the signature is being made): wait for its outcome,
                // except for an authorization, which stays approved until its requester signs.
                let settled = now.status != ApprovalStatus::Approved
                    || !pipeline::signs_on_approval(&now.operation);
                if now.status != first.status && settled {
                    return Ok(now);
                }
            }
            _ = timeout => return get(path, principal, id).await,
        }
    }
}

/// Moves a pending request past its expiry to `expired` (audited). Returns whether it did.
async fn expire_if_due(
    path: &SigningPath,
    row: &ApprovalRequestRow,
) -> Result<bool, ApprovalError> {
    let (now, unix) = crate::clock::now();
    if row.status != ApprovalStatus::PendingApproval || row.expires_unix > unix {
        return Ok(false);
    }
    let event = AuditEvent {
        action: "approval.expire",
        outcome: "ok",
        actor: Actor {
            issuer: "keyward".into(),
            subject: "keyward".into(),
        },
        key_id: Some(row.key_id.clone()),
        request_id: Some(row.id.clone()),
        details: json!({"expires_at": row.expires_at}),
    };
    let change = StateChange::ApprovalTransition {
        id: row.id.clone(),
        from: vec![ApprovalStatus::PendingApproval],
        to: ApprovalStatus::Expired,
        at: now,
        result: None,
        error: None,
    };
    match path.audit().append(vec![change], event).await {
        Ok(_) => {
            path.notify().changed(&row.id, "expired");
            Ok(true)
        }
        // Someone else moved it first.
        Err(AuditError::Rejected(StoreError::Conflict(_))) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Approves (or, with `approve == false`, rejects) a request. When this approval completes the
/// quorum, the signature is made before this returns.
pub async fn vote(
    path: &SigningPath,
    principal: &Principal,
    id: &str,
    approve: bool,
    comment: Option<String>,
) -> Result<ApprovalRequestRow, ApprovalError> {
    let row = get(path, principal, id).await?;
    if row.status == ApprovalStatus::Expired {
        return Err(ApprovalError::Conflict(format!(
            "request {id} expired at {}",
            row.expires_at
        )));
    }
    if row.status != ApprovalStatus::PendingApproval {
        return Err(ApprovalError::Conflict(format!(
            "request {id} is {}, not pending",
            row.status.as_str()
        )));
    }
    if principal.is(&row.issuer, &row.subject) {
        return Err(ApprovalError::Forbidden(
            "the requester cannot approve or reject their own request".into(),
        ));
    }
    if !can_act(principal, &row) {
        return Err(ApprovalError::Forbidden(
            "approving needs the role approver and one of the request's approver roles".into(),
        ));
    }
    if let Some(c) = &comment
        && c.len() > 1000
    {
        return Err(ApprovalError::Forbidden(
            "comments are limited to 1000 characters".into(),
        ));
    }
    let (now, unix) = crate::clock::now();
    let decision = if approve { "approve" } else { "reject" };
    let event = AuditEvent {
        action: if approve {
            "approval.approve"
        } else {
            "approval.reject"
        },
        outcome: "ok",
        actor: actor(principal),
        key_id: Some(row.key_id.clone()),
        request_id: Some(row.id.clone()),
        details: json!({"comment": comment, "quorum": row.quorum}),
    };
    let change = StateChange::Vote {
        vote: VoteRow {
            request_id: row.id.clone(),
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
            decision: decision.into(),
            comment,
            created_at: now,
            roles: Some(rules::held_roles(principal, &row)),
        },
        now_unix: unix,
    };
    if let Err(err) = path.audit().append(vec![change], event).await {
        // Tell the caller why precisely: expired, already voted, or no longer pending.
        let err: ApprovalError = err.into();
        let current = load(path, id).await?;
        if expire_if_due(path, &current).await? {
            return Err(ApprovalError::Conflict(format!(
                "request {id} expired at {}",
                current.expires_at
            )));
        }
        return Err(err);
    }
    let after = load(path, id).await?;
    path.notify().changed(id, after.status.as_str());
    if after.status == ApprovalStatus::Approved && pipeline::signs_on_approval(&after.operation) {
        // This vote completed the quorum: make the signature now. (An approved authorization,
        // e.g. CSC `credentials/authorize`, stays `approved`: its requester signs it later.) A failure is recorded on
        // the request (`failed`); the vote itself stands.
        if let Err(e) = path.sign_approved(id).await {
            tracing::warn!(request = id, error = %e, "approved request could not be signed");
        }
        return load(path, id).await;
    }
    Ok(after)
}

/// The requester withdraws a pending request.
pub async fn cancel(
    path: &SigningPath,
    principal: &Principal,
    id: &str,
) -> Result<ApprovalRequestRow, ApprovalError> {
    let row = get(path, principal, id).await?;
    if !principal.is(&row.issuer, &row.subject) {
        return Err(ApprovalError::Forbidden(
            "only the requester can cancel a request".into(),
        ));
    }
    if row.status != ApprovalStatus::PendingApproval {
        return Err(ApprovalError::Conflict(format!(
            "request {id} is {}, not pending",
            row.status.as_str()
        )));
    }
    let (now, _) = crate::clock::now();
    let event = AuditEvent {
        action: "approval.cancel",
        outcome: "ok",
        actor: actor(principal),
        key_id: Some(row.key_id.clone()),
        request_id: Some(row.id.clone()),
        details: json!({}),
    };
    let change = StateChange::ApprovalTransition {
        id: row.id.clone(),
        from: vec![ApprovalStatus::PendingApproval],
        to: ApprovalStatus::Cancelled,
        at: now,
        result: None,
        error: None,
    };
    path.audit().append(vec![change], event).await?;
    path.notify().changed(id, "cancelled");
    load(path, id).await
}

/// Background work: sign requests left `approved` by a crash, then sweep expiries forever.
pub fn spawn_background(path: SigningPath) {
    tokio::spawn(async move {
        match path
            .store()
            .approval_request_ids(ApprovalStatus::Approved, None)
            .await
        {
            Ok(ids) => {
                for id in ids {
                    let authorization = matches!(
                        path.store().approval_request(&id).await,
                        Ok(Some(row)) if !pipeline::signs_on_approval(&row.operation)
                    );
                    if authorization {
                        continue;
                    }
                    if let Err(e) = path.sign_approved(&id).await {
                        tracing::warn!(request = %id, error = %e, "resuming an approved request failed");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list approved requests"),
        }
        let every = Duration::from_secs(path.approval_limits().sweep_interval_seconds);
        loop {
            tokio::time::sleep(every).await;
            let (_, unix) = crate::clock::now();
            let ids = match path
                .store()
                .approval_request_ids(ApprovalStatus::PendingApproval, Some(unix))
                .await
            {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "expiry sweep failed");
                    continue;
                }
            };
            for id in ids {
                if let Ok(Some(row)) = path.store().approval_request(&id).await
                    && let Err(e) = expire_if_due(&path, &row).await
                {
                    tracing::warn!(request = %id, error = %e, "expiring a request failed");
                }
            }
        }
    });
}

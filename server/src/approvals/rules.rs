//! Who may see and who may act on an approval request, and what a vote counts toward.

use crate::auth::{Principal, Role};
use crate::store::approvals::{ApprovalRequestRow, Requirement, requirements_of};

/// The request's requirements (one per asking policy; a single one for older requests).
pub fn requirements(row: &ApprovalRequestRow) -> Vec<Requirement> {
    requirements_of(
        row.requirements.as_deref(),
        row.quorum,
        &row.approver_roles,
        &row.reason,
    )
    .unwrap_or_default()
}

/// Whether `p` may approve or reject: role `approver` and, for at least one requirement, one
/// of its approver roles (any approver for a requirement that names none), and never the
/// requester.
pub fn can_act(p: &Principal, row: &ApprovalRequestRow) -> bool {
    if p.is(&row.issuer, &row.subject) || !p.has_role(Role::Approver) {
        return false;
    }
    requirements(row).iter().any(|r| {
        r.approver_roles.is_empty() || r.approver_roles.iter().any(|n| p.has_named_role(n))
    })
}

/// The approver roles of the request that `p` holds: what `p`'s vote counts toward (see
/// `store::approvals::progress`).
pub fn held_roles(p: &Principal, row: &ApprovalRequestRow) -> Vec<String> {
    let mut held: Vec<String> = Vec::new();
    for r in requirements(row) {
        for name in r.approver_roles {
            if p.has_named_role(&name) && !held.contains(&name) {
                held.push(name);
            }
        }
    }
    held
}

/// Whether `p` may see the request: its requester, an approver who may act on it, auditors
/// and admins.
pub fn can_view(p: &Principal, row: &ApprovalRequestRow) -> bool {
    p.is(&row.issuer, &row.subject) || p.has_role(Role::Auditor) || can_act(p, row)
}

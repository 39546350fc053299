//! Who may see and who may act on an approval request.

use crate::auth::{Principal, Role};
use crate::store::approvals::ApprovalRequestRow;

fn approver_roles(row: &ApprovalRequestRow) -> Vec<String> {
    serde_json::from_str(&row.approver_roles).unwrap_or_default()
}

/// Whether `p` may approve or reject: role `approver` and one of the request's approver roles
/// (any approver when the policy named none), and never the requester.
pub fn can_act(p: &Principal, row: &ApprovalRequestRow) -> bool {
    if p.is(&row.issuer, &row.subject) || !p.has_role(Role::Approver) {
        return false;
    }
    let roles = approver_roles(row);
    roles.is_empty() || roles.iter().any(|r| p.has_named_role(r))
}

/// Whether `p` may see the request: its requester, an approver who may act on it, auditors
/// and admins.
pub fn can_view(p: &Principal, row: &ApprovalRequestRow) -> bool {
    p.is(&row.issuer, &row.subject) || p.has_role(Role::Auditor) || can_act(p, row)
}

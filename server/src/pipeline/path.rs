//! The handle of the signing path: what `submit`, `dry_run`, `authorize` and `sign_approved`
//! need, and nothing else. Everything that signs or records on behalf of a caller (document
//! signing, CSC, wallets, key and policy administration, the approval workflow) takes this
//! handle plus its own parts, never the whole server.

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::config::ApprovalsConfig;
use crate::keys::KeyRegistry;
use crate::notify::ApprovalHub;
use crate::policy::PolicyStage;
use crate::store::Store;

/// What the signing path is made of.
pub struct SigningParts {
    /// The database (reads; every write goes through `audit`).
    pub store: Store,
    /// The audit writer.
    pub audit: AuditLog,
    /// Loaded keys and their backends.
    pub keys: KeyRegistry,
    /// The policy stage.
    pub policy: PolicyStage,
    /// Approval notices (long-poll and webhook).
    pub notify: ApprovalHub,
    /// Approval limits.
    pub approvals: ApprovalsConfig,
}

/// The signing path's parts. Cheap to clone.
#[derive(Clone)]
pub struct SigningPath(Arc<SigningParts>);

impl SigningPath {
    /// Puts the parts together.
    pub fn new(parts: SigningParts) -> Self {
        SigningPath(Arc::new(parts))
    }

    /// The database (reads; every write goes through `audit`).
    pub fn store(&self) -> &Store {
        &self.0.store
    }
    /// The audit writer: every state change and its record.
    pub fn audit(&self) -> &AuditLog {
        &self.0.audit
    }
    /// Loaded keys and their backends.
    pub fn keys(&self) -> &KeyRegistry {
        &self.0.keys
    }
    /// The policy stage.
    pub fn policy(&self) -> &PolicyStage {
        &self.0.policy
    }
    /// Where changes of requests are announced (long-polls, the webhook).
    pub fn notify(&self) -> &ApprovalHub {
        &self.0.notify
    }
    /// The limits of approval requests (quorum, lifetime, long-poll, sweep).
    pub fn approval_limits(&self) -> &ApprovalsConfig {
        &self.0.approvals
    }
}

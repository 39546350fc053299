//! The hash-chained audit log.
//!
//! Every sign outcome and every administrative change is an `AuditEvent`. The `AuditLog`
//! writer appends events in order, each record's hash covering its fields and the previous
//! record's hash, and applies the state change that goes with each event (a key row, a sign
//! request row) in the same database transaction. Nothing that depends on an event (a
//! signature, a new key) may be returned to a caller unless `append` succeeded.
//!
//! Parts: `chain` (record hashing and verification), `writer` (the group-committing writer),
//! `refusals` (refused attempts, recorded at a bounded rate).

mod chain;
pub mod refusals;
mod writer;

pub use chain::{GENESIS_HASH, VerifyReport, record_hash, verify};
pub use writer::{Appended, AuditLog};

use serde_json::Value;

use crate::store::StoreError;

/// Errors of the audit layer.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The record could not be made durable; nothing that depends on it may be returned.
    #[error("the audit log is unavailable: {0}")]
    Unavailable(String),
    /// The state change that goes with the record was refused (e.g. a unique name taken).
    #[error(transparent)]
    Rejected(StoreError),
}

/// Result alias of the audit layer.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Token issuer (or `keyward` for the server itself).
    pub issuer: String,
    /// Subject.
    pub subject: String,
}

/// Something to record.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// What happened, e.g. `key.create`, `key.disable`, `sign`.
    pub action: &'static str,
    /// How it ended: `ok`, `denied`, `failed`.
    pub outcome: &'static str,
    /// Who.
    pub actor: Actor,
    /// The key concerned.
    pub key_id: Option<String>,
    /// The request concerned.
    pub request_id: Option<String>,
    /// Details (a JSON object).
    pub details: Value,
}

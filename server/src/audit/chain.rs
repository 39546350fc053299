//! Record hashing and chain verification.
//!
//! `hash = SHA-256("keyward-audit-v1" || field...)` where each field is an 8-byte big-endian
//! length followed by its bytes (absent optional fields use the length `u64::MAX` and no
//! bytes), over: seq (decimal), ts, action, outcome, actor issuer, actor subject, key id,
//! request id, details (exact stored text) and the previous hash; then, for records that name
//! the node that wrote them (every record since nodes were recorded), the node id. A record
//! without a node hashes as records always did, so older chains keep verifying, and a node id
//! removed from or added to a stored record breaks its hash like any other edit.

use std::ops::ControlFlow;

use sha2::{Digest, Sha256};

use crate::store::audit::AuditRow;
use crate::store::{Store, StoreError};

pub use crate::store::audit::GENESIS_HASH;

/// Computes a record's hash from its fields (its own `hash` field is ignored).
pub fn record_hash(row: &AuditRow) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"keyward-audit-v1");
    let mut field = |bytes: Option<&[u8]>| match bytes {
        Some(b) => {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        }
        None => h.update(u64::MAX.to_be_bytes()),
    };
    field(Some(row.seq.to_string().as_bytes()));
    field(Some(row.ts.as_bytes()));
    field(Some(row.action.as_bytes()));
    field(Some(row.outcome.as_bytes()));
    field(Some(row.actor_issuer.as_bytes()));
    field(Some(row.actor_subject.as_bytes()));
    field(row.key_id.as_deref().map(str::as_bytes));
    field(row.request_id.as_deref().map(str::as_bytes));
    field(Some(row.details.as_bytes()));
    field(Some(&row.prev_hash));
    if let Some(node) = &row.node_id {
        field(Some(node.as_bytes()));
    }
    h.finalize().into()
}

/// The outcome of verifying the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read.
    pub records: u64,
    /// The first broken record: its `seq` and why. `None` when the chain is intact.
    pub broken: Option<(i64, String)>,
}

impl VerifyReport {
    /// Whether the chain is intact.
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Verifies the whole chain in `seq` order against the recorded head.
pub async fn verify(store: &Store) -> Result<VerifyReport, StoreError> {
    let mut records = 0u64;
    let mut expected_seq = 1i64;
    let mut prev: Vec<u8> = GENESIS_HASH.to_vec();
    let mut broken: Option<(i64, String)> = None;
    store
        .audit_scan(|row| {
            records += 1;
            let problem = if row.seq != expected_seq {
                Some((
                    expected_seq,
                    format!(
                        "record {expected_seq} is missing (next record is {})",
                        row.seq
                    ),
                ))
            } else if row.prev_hash != prev {
                Some((
                    row.seq,
                    "prev_hash does not match the previous record's hash".to_string(),
                ))
            } else if row.hash != record_hash(&row) {
                Some((
                    row.seq,
                    "hash does not match the record's contents (edited)".to_string(),
                ))
            } else {
                None
            };
            if problem.is_some() {
                broken = problem;
                return ControlFlow::Break(());
            }
            prev = row.hash.clone();
            expected_seq += 1;
            ControlFlow::Continue(())
        })
        .await?;
    if broken.is_none() {
        let last = expected_seq - 1;
        match store.audit_head().await? {
            None if last == 0 => {}
            None => broken = Some((1, "the chain head record is missing".into())),
            Some((seq, _)) if seq > last => {
                broken = Some((
                    last + 1,
                    format!("records {} to {seq} are missing", last + 1),
                ));
            }
            Some((seq, hash)) if seq != last || hash != prev => {
                broken = Some((seq, "the chain head does not match the last record".into()));
            }
            Some(_) => {}
        }
    }
    Ok(VerifyReport { records, broken })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, prev: Vec<u8>) -> AuditRow {
        let mut r = AuditRow {
            seq,
            ts: "2026-01-01T00:00:00.000Z".into(),
            action: "sign".into(),
            outcome: "ok".into(),
            actor_issuer: "i".into(),
            actor_subject: "s".into(),
            key_id: None,
            request_id: Some("r".into()),
            details: "{}".into(),
            prev_hash: prev,
            node_id: Some("node-a".into()),
            hash: vec![],
        };
        r.hash = record_hash(&r).to_vec();
        r
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = row(1, GENESIS_HASH.to_vec());
        let h = record_hash(&base);
        let mut variants = vec![];
        let mut r = base.clone();
        r.seq = 2;
        variants.push(r);
        let mut r = base.clone();
        r.details = "{\"a\":1}".into();
        variants.push(r);
        let mut r = base.clone();
        r.key_id = Some(String::new());
        variants.push(r);
        let mut r = base.clone();
        r.request_id = None;
        variants.push(r);
        let mut r = base.clone();
        r.prev_hash = vec![1; 32];
        variants.push(r);
        let mut r = base.clone();
        r.actor_subject = "x".into();
        variants.push(r);
        let mut r = base.clone();
        r.node_id = Some("node-b".into());
        variants.push(r);
        let mut r = base.clone();
        r.node_id = None;
        variants.push(r);
        let mut r = base.clone();
        r.node_id = Some(String::new());
        variants.push(r);
        for v in variants {
            assert_ne!(record_hash(&v), h, "{v:?}");
        }
    }
}

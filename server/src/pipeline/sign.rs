//! Signing and what lands with a signature, written once for both ways a signature is made
//! (`SigningPath::submit` now, `sign_approved` / `sign_authorized` later from stored bytes):
//! the backend call off the async runtime, the receipt, and the state changes recorded in the
//! same transaction (the writer's gate for the requester, the request rows, the usage).

use std::sync::Arc;

use keyward_policy::Intent;
use sha2::Digest as _;

use super::SignReceipt;
use super::access::signer_grant;
use crate::auth::Principal;
use crate::keys::{KeyError, LoadedKey, SignOptions, Signature, SigningKey, ToSign};
use crate::policy::Verdict;
use crate::store::StateChange;

/// Signs `to_sign` with `signer`: one signature, or one per part of a batch (in order, all or
/// none). On the blocking pool when the key says one signature may block (RSA, HSM), or when
/// a batch has more than a few parts; inline otherwise, where the hand-off to another thread
/// would cost more than the signature.
pub(super) async fn make_signatures(
    signer: Arc<dyn SigningKey>,
    to_sign: ToSign,
    options: SignOptions,
) -> Result<Vec<Signature>, KeyError> {
    let parts = match &to_sign {
        ToSign::Batch(parts) => parts.len(),
        _ => 1,
    };
    if !signer.blocks() && parts <= INLINE_PARTS {
        return sign_parts(signer.as_ref(), &to_sign, options);
    }
    tokio::task::spawn_blocking(move || sign_parts(signer.as_ref(), &to_sign, options))
        .await
        .map_err(|e| KeyError::Unavailable(format!("signing task failed: {e}")))
        .and_then(|r| r)
}

/// The most signatures of a non-blocking key made inline, on the async worker.
const INLINE_PARTS: usize = 4;

fn sign_parts(
    signer: &dyn SigningKey,
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

/// The receipt of the signatures of request `request_id` with `key`, and the SHA-256 of the
/// signatures that the audit record keeps: the first signature, its recovery id, and all of
/// them when there are several.
pub(super) fn receipt(
    request_id: &str,
    key: &LoadedKey,
    signatures: &[Signature],
    signed_at: &str,
    verdict: Verdict,
) -> (SignReceipt, String) {
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
    let receipt = SignReceipt {
        request_id: request_id.to_string(),
        key_id: key.meta.id.clone(),
        algorithm: key.meta.algorithm.to_string(),
        signature: first.map(b64).unwrap_or_default(),
        recovery_id: first.and_then(|s| s.recovery_id),
        signatures: all,
        signed_at: signed_at.to_string(),
        verdict,
    };
    (receipt, hex::encode(hash.finalize()))
}

/// The state changes a signature lands with: first the writer's gate (the key still active,
/// `requester` still among its signers), then `rows`, then what `intent` adds to the usage
/// counters (when it is known).
pub(super) fn changes(
    requester: &Principal,
    key_id: &str,
    policies_version: Option<i64>,
    rows: Vec<StateChange>,
    intent: Option<&Intent>,
    at_unix: i64,
) -> Vec<StateChange> {
    let mut changes = vec![StateChange::RequireSigner(signer_grant(
        requester,
        key_id,
        policies_version,
    ))];
    changes.extend(rows);
    if let Some(intent) = intent {
        let spent = crate::chains::usage_deltas(key_id, intent, at_unix);
        if !spent.is_empty() {
            changes.push(StateChange::AddUsage(spent));
        }
    }
    changes
}

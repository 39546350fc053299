//! What every sign route shares, written once: the `Idempotency-Key` (bound to the operation,
//! key and body; ignored by dry runs), the access check of an account key before its input is
//! decoded (role first, in `SigningPath::check_access`, so a caller who may not sign learns
//! nothing about the key), running the `SignCall` or its dry run, and the receipt's signatures.
//! Each route maps `Routed` to its own answer.

use std::sync::Arc;

use super::BearerAuth;
use super::error::{ApiError, ApiResult};
use super::signing::{DryRunResult, PolicyView};
use crate::app::AppState;
use crate::keys::{LoadedKey, Purpose};
use crate::pipeline::{
    DryRunReport, Idempotency, PendingReceipt, PipelineError, SignCall, SignReceipt, SigningPath,
    Submitted,
};

/// How a sign request ended.
pub(crate) enum Routed {
    /// Signed and recorded.
    Signed(SignReceipt),
    /// Waiting for approvers.
    Pending(PendingReceipt),
    /// A dry run: the policies' decision; nothing was signed.
    DryRun(DryRunResult),
}

/// The idempotency of a sign request: `None` without a header or for a dry run (which
/// records no sign request to replay); 422 for a malformed key.
pub(crate) fn idempotency(
    header: Option<String>,
    dry_run: bool,
    operation: &str,
    key_id: &str,
    body: &impl serde::Serialize,
) -> ApiResult<Option<Idempotency>> {
    super::idempotency(header.filter(|_| !dry_run), operation, key_id, body)
}

/// Runs `call` through the signing path, or only up to the policy stage when `dry_run`.
pub(crate) async fn run(
    path: &SigningPath,
    call: SignCall,
    dry_run: bool,
) -> Result<Routed, PipelineError> {
    if dry_run {
        return Ok(Routed::DryRun(path.dry_run(call).await?.into()));
    }
    Ok(match path.submit(call).await? {
        Submitted::Signed(receipt) => Routed::Signed(receipt),
        Submitted::Pending(pending) => Routed::Pending(pending),
    })
}

impl From<DryRunReport> for DryRunResult {
    fn from(report: DryRunReport) -> Self {
        DryRunResult {
            dry_run: true,
            policy: PolicyView::with_logs(&report.verdict),
            key_id: report.key_id,
            request_id: report.request_id,
        }
    }
}

/// Resolves an account key of `purpose` for the sign route `operation` before its input is
/// decoded (the input needs the key: its address, its scripts).
pub(crate) async fn account_key(
    state: &AppState,
    auth: &BearerAuth,
    key_id: &str,
    purpose: Purpose,
    operation: &'static str,
) -> ApiResult<Arc<LoadedKey>> {
    Ok(state
        .signing()
        .check_access(
            &auth.0,
            key_id,
            purpose,
            operation,
            &crate::request_id::current(),
        )
        .await?)
}

/// Every signature of a receipt, decoded: one, or one per part of a batch, in order.
pub(crate) fn receipt_signatures(receipt: &SignReceipt) -> ApiResult<Vec<Vec<u8>>> {
    let all = if receipt.signatures.is_empty() {
        vec![receipt.signature.clone()]
    } else {
        receipt.signatures.clone()
    };
    all.iter()
        .map(|s| {
            crate::intent::raw::decode_b64("signature", s)
                .map_err(|e| ApiError::internal("receipt", e))
        })
        .collect()
}

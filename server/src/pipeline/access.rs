//! Who may sign with a key, checked the same way on every route: the role `signer`, the key,
//! the caller among its signers, then its status or purpose; and what the audit writer checks
//! again where the signature lands (`store::gate`), with the usage the request reserves.

use std::sync::Arc;

use keyward_policy::Intent;
use serde_json::json;

use super::PipelineError;
use super::SigningPath;
use crate::audit::{Actor, AuditError, AuditEvent};
use crate::auth::{Principal, Role};
use crate::error_code::ErrorCode;
use crate::keys::LoadedKey;
use crate::store::StoreError;
use crate::store::usage::UsageDelta;
/// Resolve and authorize: the role `signer` first (so that a caller without it learns nothing
/// about the key), then the key, the caller among its signers, and the key active. Every
/// refusal here is recorded (at a bounded rate, see `audit::refusals`).
pub(super) async fn admit(
    path: &SigningPath,
    principal: &Principal,
    key_id: &str,
    operation: &'static str,
    request_id: &str,
) -> Result<(Arc<LoadedKey>, Arc<dyn crate::keys::SigningKey>), PipelineError> {
    let admitted = async {
        let key = signer_of_key(path, principal, key_id).await?;
        let Some(signer) = key.signer.clone() else {
            return Err(PipelineError::KeyDisabled(key.meta.id.clone()));
        };
        Ok((key, signer))
    }
    .await;
    if let Err(e) = &admitted {
        record_refused_attempt(path, principal, key_id, operation, request_id, e).await;
    }
    admitted
}

impl SigningPath {
    /// The access checks a route makes before it builds its intent, in the pipeline's order: the
    /// role `signer` first, then the key (404), the caller among its signers (403), then its
    /// purpose (403 `WRONG_KEY_PURPOSE`), so a caller who may not sign learns nothing about the key
    /// and a stranger never learns its purpose. Refusals are audited like the pipeline's own. The
    /// pipeline checks everything again (and the key's status) when the route submits.
    pub async fn check_access(
        &self,
        principal: &Principal,
        key_id: &str,
        purpose: crate::keys::Purpose,
        operation: &'static str,
        request_id: &str,
    ) -> Result<Arc<LoadedKey>, PipelineError> {
        let checked = async {
            let key = signer_of_key(self, principal, key_id).await?;
            if key.meta.purpose != purpose {
                return Err(PipelineError::WrongPurpose {
                    key_purpose: key.meta.purpose.to_string(),
                    wanted: purpose.to_string(),
                });
            }
            Ok(key)
        }
        .await;
        if let Err(e) = &checked {
            record_refused_attempt(self, principal, key_id, operation, request_id, e).await;
        }
        checked
    }
}

/// The role `signer`, then the key, then the caller among its signers.
async fn signer_of_key(
    path: &SigningPath,
    principal: &Principal,
    key_id: &str,
) -> Result<Arc<LoadedKey>, PipelineError> {
    if !principal.has_role(Role::Signer) {
        return Err(PipelineError::Forbidden(
            "signing needs the role signer".into(),
        ));
    }
    let key = path
        .keys()
        .resolve(key_id)
        .await?
        .ok_or_else(|| PipelineError::KeyNotFound(key_id.to_string()))?;
    if !crate::auth::signers::admits(&key.meta.signers, principal) {
        return Err(PipelineError::Forbidden(format!(
            "{} is not among the signers of key {}",
            principal.subject, key.meta.id
        )));
    }
    Ok(key)
}

/// The code and error of a signature the writer's gate refused (`store::gate`), or `None` for
/// any other audit error.
pub(crate) fn gate_refusal(err: &AuditError, key_id: &str) -> Option<(ErrorCode, PipelineError)> {
    match err {
        AuditError::Rejected(StoreError::KeyInactive(_)) => Some((
            ErrorCode::KeyDisabled,
            PipelineError::KeyDisabled(key_id.to_string()),
        )),
        AuditError::Rejected(e @ StoreError::SignerRemoved(_)) => Some((
            ErrorCode::Forbidden,
            PipelineError::Forbidden(e.to_string()),
        )),
        AuditError::Rejected(StoreError::PoliciesChanged(m)) => Some((
            ErrorCode::Conflict,
            PipelineError::Store(StoreError::PoliciesChanged(m.clone())),
        )),
        _ => None,
    }
}

/// Records a refusal made before the policy stage (rate-limited per caller and reason).
pub(crate) async fn record_refused_attempt(
    path: &SigningPath,
    principal: &Principal,
    key_id: &str,
    operation: &str,
    request_id: &str,
    error: &PipelineError,
) {
    let code = match error {
        PipelineError::KeyNotFound(_) => ErrorCode::NotFound,
        PipelineError::KeyDisabled(_) => ErrorCode::KeyDisabled,
        PipelineError::Forbidden(_) => ErrorCode::Forbidden,
        PipelineError::WrongPurpose { .. } => ErrorCode::WrongKeyPurpose,
        _ => return,
    };
    let event = AuditEvent {
        action: "sign",
        outcome: "refused",
        actor: Actor {
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
        },
        key_id: Some(key_id.to_string()),
        request_id: Some(request_id.to_string()),
        details: json!({"operation": operation, "error_code": code, "error": error.to_string()}),
    };
    let caller = format!("{}\n{}", principal.issuer, principal.subject);
    path.audit().record_refusal(&caller, code, event).await;
}

/// The writer's last check for a signature by `principal` with `key_id` (see `store::gate`).
pub(super) fn signer_grant(
    principal: &Principal,
    key_id: &str,
    policies_version: Option<i64>,
) -> crate::store::gate::SignerGrant {
    let who = principal.clone();
    crate::store::gate::SignerGrant {
        key_id: key_id.to_string(),
        requester: principal.subject.clone(),
        admits: Arc::new(move |signers: &[String]| crate::auth::signers::admits(signers, &who)),
        policies_version,
    }
}

/// What a signed request adds to the usage counters: one signature for its key and for its
/// principal (as `store::requests::insert` records), and what its intent spends.
pub(super) fn usage_of(
    principal: &Principal,
    key_id: &str,
    intent: &Intent,
    at: i64,
) -> Vec<UsageDelta> {
    let one = |scope: String| UsageDelta {
        scope,
        metric: crate::store::usage::SIGNATURES.to_string(),
        at_unix: at,
        count: 1,
        amount: Default::default(),
    };
    let mut out = vec![
        one(crate::store::usage::key_scope(key_id)),
        one(crate::store::usage::principal_scope(
            &principal.issuer,
            &principal.subject,
        )),
    ];
    out.extend(crate::chains::usage_deltas(key_id, intent, at));
    out
}

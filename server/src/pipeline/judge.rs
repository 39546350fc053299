//! Judging a sign request: resolve and authorize (`access::admit`), build the intent once the
//! key's algorithm is known, check the purpose, and run the policy stage with usage reserved.

use std::sync::Arc;

use keyward_policy::SignRequest;

use super::access::{admit, record_refused_attempt, usage_of};
use super::outcome::Outcome;
use super::{Idempotency, PipelineError, SignCall, SigningPath};
use crate::auth::Principal;
use crate::intent::SignIntent;
use crate::keys::{LoadedKey, SignOptions};
use crate::policy::Verdict;
use crate::store::pending::Reservation;

/// A request that passed resolve and authorize, with the policy verdict.
pub(super) struct Judged {
    /// What its outcome is recorded with.
    pub(super) case: Case,
    /// The key's signer.
    pub(super) signer: Arc<dyn crate::keys::SigningKey>,
    /// The signature options.
    pub(super) options: SignOptions,
    /// The usage this request reserved while its context was read (given back on drop).
    pub(super) reservation: Option<Reservation>,
}

/// The facts of a judged request that its outcome is recorded with.
pub(super) struct Case {
    pub(super) principal: Principal,
    pub(super) key: Arc<LoadedKey>,
    pub(super) intent: SignIntent,
    pub(super) verdict: Verdict,
    pub(super) request_id: String,
    pub(super) operation: &'static str,
    pub(super) idempotency: Option<Idempotency>,
    pub(super) time: (String, i64),
}

impl Case {
    /// What records how this request ended.
    pub(super) fn outcome<'a>(&'a self, path: &'a SigningPath) -> Outcome<'a> {
        Outcome {
            path,
            principal: &self.principal,
            key: &self.key,
            operation: self.operation,
            intent: &self.intent.intent,
            verdict: &self.verdict,
            request_id: &self.request_id,
            idempotency: self.idempotency.as_ref(),
            time: &self.time,
        }
    }
}

/// Resolve, authorize, build the intent and run the policy stage.
pub(super) async fn judge(path: &SigningPath, call: SignCall) -> Result<Judged, PipelineError> {
    let admitted = admit(
        path,
        &call.principal,
        &call.key_id,
        call.operation,
        &call.request_id,
    )
    .await?;
    judge_admitted(path, call, admitted).await
}

/// The rest of `judge` for a caller `admit` let through.
pub(super) async fn judge_admitted(
    path: &SigningPath,
    call: SignCall,
    (key, signer): (Arc<LoadedKey>, Arc<dyn crate::keys::SigningKey>),
) -> Result<Judged, PipelineError> {
    let SignCall {
        principal,
        build,
        idempotency,
        request_id,
        operation,
        ..
    } = call;
    let (intent, options) = build(key.meta.algorithm)?;
    if intent.purpose != key.meta.purpose {
        let e = PipelineError::WrongPurpose {
            key_purpose: key.meta.purpose.to_string(),
            wanted: intent.purpose.to_string(),
        };
        record_refused_attempt(path, &principal, &key.meta.id, operation, &request_id, &e).await;
        return Err(e);
    }

    // Policies.
    let (time, unix_time) = crate::clock::now();
    let request = SignRequest {
        request_id: request_id.clone(),
        principal: principal.to_wire(),
        key: key.meta.to_wire(),
        intent: intent.intent.clone(),
        time: time.clone(),
        unix_time,
        context: Default::default(),
    };
    let usage = usage_of(&principal, &key.meta.id, &intent.intent, unix_time);
    let (verdict, reservation) = path
        .policy()
        .evaluate_reserving(&key.meta, &request, usage)
        .await;
    Ok(Judged {
        case: Case {
            principal,
            key,
            intent,
            verdict,
            request_id,
            operation,
            idempotency,
            time: (time, unix_time),
        },
        signer,
        options,
        reservation,
    })
}

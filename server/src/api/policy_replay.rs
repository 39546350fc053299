//! `POST /v1/policies/{id}/replay`: what a policy, bound or not, would have decided for past
//! sign requests (their kept inputs, host context as it was), against the verdicts they got.
//! Role `policy-admin`; every replay is audited (`policy.replay`).

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::{ApiTags, BearerAuth};
use crate::app::AppState;
use crate::auth::Role;
use crate::policy::replay::{ChangedRequest, DecisionCounts, MAX_REQUESTS, ReplayReport};
use crate::store::inputs::InputFilter;

/// Replay routes.
pub struct PolicyReplayApi;

/// Requests evaluated by a replay that names no `limit`.
const DEFAULT_REQUESTS: u32 = 100;

/// Which past requests to replay a policy on, and with which settings.
#[derive(Debug, Clone, Object)]
pub struct ReplayRequest {
    /// Settings to evaluate with (checked by the policy first, as a bind would).
    pub settings: Option<Value>,
    /// Only requests to this key.
    pub key_id: Option<String>,
    /// Only requests of this operation, e.g. `raw.sign` or `ethereum.sign_transaction`.
    pub operation: Option<String>,
    /// Only requests judged at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only requests judged before this time (RFC 3339).
    pub until: Option<String>,
    /// The newest this many matching requests, 1 to 1000 (default 100).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub limit: Option<u32>,
}

/// How many requests got each decision.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DecisionCountsView {
    /// Allowed.
    pub allow: u32,
    /// Denied.
    pub deny: u32,
    /// Sent to approvers.
    pub require_approval: u32,
}

impl From<DecisionCounts> for DecisionCountsView {
    fn from(c: DecisionCounts) -> Self {
        DecisionCountsView {
            allow: c.allow,
            deny: c.deny,
            require_approval: c.require_approval,
        }
    }
}

/// A past request the policy would decide differently.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ChangedRequestView {
    /// The sign request's id.
    pub request_id: String,
    /// Key id.
    pub key_id: String,
    /// The operation it came through.
    pub operation: String,
    /// When it was judged.
    pub time: String,
    /// The verdict it got then: `allow`, `deny` or `require_approval`.
    pub before: String,
    /// That verdict's reason.
    #[oai(skip_serializing_if_is_none)]
    pub before_reason: Option<String>,
    /// What this policy decides.
    pub after: String,
    /// This policy's reason.
    #[oai(skip_serializing_if_is_none)]
    pub after_reason: Option<String>,
    /// When the evaluation failed, what happened (the decision is then a deny).
    #[oai(skip_serializing_if_is_none)]
    pub failure: Option<String>,
    /// Fuel the evaluation consumed.
    pub fuel: u64,
    /// Lines the policy logged while deciding it.
    pub logs: Vec<String>,
}

impl From<ChangedRequest> for ChangedRequestView {
    fn from(c: ChangedRequest) -> Self {
        ChangedRequestView {
            request_id: c.request_id,
            key_id: c.key_id,
            operation: c.operation,
            time: crate::clock::format_unix(c.unix_time),
            before: c.before,
            before_reason: c.before_reason,
            after: c.after,
            after_reason: c.after_reason,
            failure: c.failure,
            fuel: c.fuel,
            logs: c.logs,
        }
    }
}

/// What a replay found.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ReplayResult {
    /// The replayed policy.
    pub policy_id: String,
    /// Its module's SHA-256, hex.
    pub digest: String,
    /// Requests evaluated.
    pub evaluated: u32,
    /// `false` when the replay stopped at its time budget (20 s) before the last request:
    /// narrow the filter or lower `limit`.
    pub complete: bool,
    /// The verdicts the evaluated requests got then (from all the key's policies).
    pub before: DecisionCountsView,
    /// What this policy decides for them.
    pub after: DecisionCountsView,
    /// Every evaluated request whose decision would change, newest first.
    pub changed: Vec<ChangedRequestView>,
    /// Fuel of all evaluations.
    pub fuel_total: u64,
    /// Fuel of the most expensive evaluation.
    pub fuel_max: u64,
}

fn time_bound(name: &str, value: Option<&str>) -> ApiResult<Option<i64>> {
    value
        .map(|v| crate::clock::parse_unix(v).map_err(|e| ApiError::invalid(format!("{name}: {e}"))))
        .transpose()
}

#[OpenApi]
impl PolicyReplayApi {
    /// Replay a policy against past sign requests (roles: policy-admin, admin): evaluates it,
    /// with the given settings, on the kept inputs of the newest matching requests (the
    /// request and host context exactly as their policies saw them, kept for
    /// `policy.replay_retention_days`), and reports how many would get each decision and
    /// every request whose decision would change. The policy need not be bound. Nothing is
    /// signed or changed; the replay is audited as `policy.replay`.
    #[oai(
        path = "/v1/policies/:id/replay",
        method = "post",
        tag = "ApiTags::Policies"
    )]
    async fn replay(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<ReplayRequest>,
    ) -> ApiResult<Json<ReplayResult>> {
        let principal = auth.require(&[Role::PolicyAdmin])?;
        let Json(body) = body;
        let limit = body.limit.unwrap_or(DEFAULT_REQUESTS);
        if !(1..=MAX_REQUESTS).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit must be between 1 and {MAX_REQUESTS}"
            )));
        }
        let filter = InputFilter {
            key_id: body.key_id,
            operation: body.operation,
            since_unix: time_bound("since", body.since.as_deref())?,
            until_unix: time_bound("until", body.until.as_deref())?,
            limit,
        };
        if let (Some(since), Some(until)) = (filter.since_unix, filter.until_unix)
            && since >= until
        {
            return Err(ApiError::invalid("since must be before until"));
        }
        let (policy, report) = crate::lifecycle::policies::replay(
            state.signing(),
            principal,
            &id.0,
            body.settings.unwrap_or(Value::Null),
            filter,
        )
        .await?;
        let ReplayReport {
            evaluated,
            complete,
            before,
            after,
            changed,
            fuel_total,
            fuel_max,
        } = report;
        Ok(Json(ReplayResult {
            policy_id: policy.id.clone(),
            digest: policy.compiled.digest.clone(),
            evaluated,
            complete,
            before: before.into(),
            after: after.into(),
            changed: changed.into_iter().map(Into::into).collect(),
            fuel_total,
            fuel_max,
        }))
    }
}

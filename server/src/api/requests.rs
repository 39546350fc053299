//! Approval requests: `/v1/requests...`.

use super::one_of::{OneOf, RequestStatuses};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::documents::DocumentSignResult;
use super::error::{ApiError, ApiResult};
use super::signing::{PolicyView, SignResult};
use super::{ApiTags, BearerAuth, page_limit};
use crate::app::AppState;
use crate::approvals::{self, ApprovalError};
use crate::auth::Role;
use crate::documents;
use crate::error_code::ErrorCode;
use crate::pipeline::{self, SignReceipt};
use crate::policy::Verdict;
use crate::store::approvals::{ApprovalRequestRow, ApprovalStatus};
use keyward_policy::Intent;

/// Approval requests.
pub struct RequestsApi;

/// Someone's vote.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VoteView {
    /// Voter's issuer.
    pub issuer: String,
    /// Voter's subject.
    pub subject: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// Their comment.
    #[oai(skip_serializing_if_is_none)]
    pub comment: Option<String>,
    /// When.
    pub at: String,
}

/// One policy's approval requirement and how far it got.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RequirementView {
    /// The policy that asked (empty for requests stored before requirements were kept).
    pub policy: String,
    /// Its reason.
    pub reason: String,
    /// Distinct approvals it needs.
    pub approvals_required: u32,
    /// Roles that count toward it (empty: any approver).
    pub approver_roles: Vec<String>,
    /// Subjects whose approvals count toward it.
    pub approved_by: Vec<String>,
    /// Whether it is met.
    pub met: bool,
}

/// The requester.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RequesterView {
    /// Issuer.
    pub issuer: String,
    /// Subject.
    pub subject: String,
}

/// A request waiting for (or decided by) approvers.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RequestView {
    /// Request id.
    pub id: String,
    /// `pending_approval`, `approved` (transient), `signed`, `rejected`, `expired`,
    /// `cancelled` or `failed`.
    pub status: String,
    /// Key id.
    pub key_id: String,
    /// Route that made it, e.g. `raw.sign`.
    pub operation: String,
    /// Who asked.
    pub requester: RequesterView,
    /// The decoded intent (what would be signed).
    pub intent: serde_json::Value,
    /// Names for addresses in the intent, from the settings of the policies bound to the key
    /// (lower-case address → e.g. `on the allowlist of eth-allowlist`).
    pub address_labels: std::collections::BTreeMap<String, String>,
    /// Why the policy asked for approval.
    pub reason: String,
    /// Distinct approvals needed.
    pub approvals_required: i64,
    /// Roles an approver may hold (empty: any approver).
    pub approver_roles: Vec<String>,
    /// Each asking policy's requirement with its progress: the request is approved when
    /// every one is met on its own (`approvals_required` and `approver_roles` summarise them).
    pub requirements: Vec<RequirementView>,
    /// Votes so far.
    pub votes: Vec<VoteView>,
    /// When it expires.
    pub expires_at: String,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// How the policy stage decided.
    pub policy: PolicyView,
    /// The signature, once `signed`.
    #[oai(skip_serializing_if_is_none)]
    pub result: Option<SignResult>,
    /// For a document request, once `signed`: the document signature (for `cms`, the
    /// SignedData with the certificate chain, as the document route returns it).
    #[oai(skip_serializing_if_is_none)]
    pub document: Option<DocumentSignResult>,
    /// For an Ethereum request, once `signed`: the signed transaction or the 65-byte
    /// signature, as the Ethereum route returns it.
    #[oai(skip_serializing_if_is_none)]
    pub ethereum: Option<super::ethereum::EthSignatureView>,
    /// Why it failed, once `failed`.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

/// A page of requests.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RequestPage {
    /// Requests, newest first.
    pub items: Vec<RequestView>,
    /// Pass as `cursor` for the next page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

/// An optional comment.
#[derive(Debug, Clone, Object)]
pub struct VoteBody {
    /// Why (up to 1000 characters).
    pub comment: Option<String>,
}

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> Self {
        use poem::http::StatusCode;
        match e {
            ApprovalError::NotFound(id) => {
                ApiError::not_found(format!("no request {id:?} that you may see"))
            }
            ApprovalError::Forbidden(m) => ApiError::forbidden(m),
            ApprovalError::Conflict(m) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::RequestStateConflict, m)
            }
            ApprovalError::Pipeline(p) => p.into(),
        }
    }
}

async fn view(state: &AppState, row: ApprovalRequestRow) -> ApiResult<RequestView> {
    let votes = state.signing().store().approval_votes(&row.id).await?;
    let verdict: Verdict =
        serde_json::from_str(&row.verdict).map_err(|e| ApiError::internal("stored verdict", e))?;
    let receipt = match &row.result {
        Some(r) => Some(
            serde_json::from_str::<SignReceipt>(r)
                .map_err(|e| ApiError::internal("stored result", e))?,
        ),
        None => None,
    };
    let document = match (&receipt, serde_json::from_str::<Intent>(&row.intent)) {
        (Some(receipt), Ok(Intent::Document(intent))) => {
            let options = pipeline::stored_sign_options(&row.to_sign)?;
            let signed =
                documents::sign::finish(state.signing(), receipt, &intent, options.scheme).await?;
            Some(DocumentSignResult::from(signed))
        }
        _ => None,
    };
    let ethereum = match (&receipt, serde_json::from_str::<Intent>(&row.intent)) {
        (Some(receipt), Ok(intent)) => super::ethereum_signer::approved_result(receipt, &intent)?
            .map(super::ethereum::EthSignatureView::from),
        _ => None,
    };
    let result = receipt.map(SignResult::from);
    let requirements = crate::store::approvals::progress(&approvals::requirements(&row), &votes)
        .into_iter()
        .map(|p| RequirementView {
            met: p.met(),
            policy: p.requirement.policy,
            reason: p.requirement.reason,
            approvals_required: p.requirement.approvals,
            approver_roles: p.requirement.approver_roles,
            approved_by: p.approved_by,
        })
        .collect();
    let intent: serde_json::Value = serde_json::from_str(&row.intent).unwrap_or_default();
    let address_labels = match state
        .signing()
        .policy()
        .registry()
        .bindings(&row.key_id)
        .await
    {
        Ok(bound) => approvals::labels::address_labels(
            &intent,
            &bound
                .iter()
                .map(|b| (b.policy.name.as_str(), &b.settings))
                .collect::<Vec<_>>(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, key_id = %row.key_id, "no address labels: the key's bindings did not load");
            Default::default()
        }
    };
    Ok(RequestView {
        address_labels,
        requirements,
        policy: PolicyView::from(&verdict),
        status: row.status.as_str().to_string(),
        key_id: row.key_id,
        operation: row.operation,
        requester: RequesterView {
            issuer: row.issuer,
            subject: row.subject,
        },
        intent,
        reason: row.reason,
        approvals_required: row.quorum,
        approver_roles: serde_json::from_str(&row.approver_roles).unwrap_or_default(),
        votes: votes
            .into_iter()
            .map(|v| VoteView {
                issuer: v.issuer,
                subject: v.subject,
                decision: v.decision,
                comment: v.comment,
                at: v.created_at,
            })
            .collect(),
        expires_at: row.expires_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
        error: row.error_message,
        result,
        document,
        ethereum,
        id: row.id,
    })
}

#[OpenApi]
impl RequestsApi {
    /// A request (its requester, approvers who may act on it, auditors, admins). With
    /// `wait=N`, waits up to N seconds (bounded by the server) for its status to change.
    #[oai(path = "/v1/requests/:id", method = "get", tag = "ApiTags::Approvals")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        /// Seconds to wait for a status change (long poll).
        wait: Query<Option<u64>>,
    ) -> ApiResult<Json<RequestView>> {
        let max = state.config().approvals.max_wait_seconds;
        let wait = wait.0.unwrap_or(0);
        if wait > max {
            return Err(ApiError::invalid(format!(
                "wait must be at most {max} seconds"
            )));
        }
        let row = approvals::wait_for_change(
            state.signing(),
            &auth.0,
            &id.0,
            std::time::Duration::from_secs(wait),
        )
        .await?;
        Ok(Json(view(&state, row).await?))
    }

    /// Requests you may see, newest first; `status=pending` shows what is waiting (approvers
    /// see the requests they may approve).
    #[oai(path = "/v1/requests", method = "get", tag = "ApiTags::Approvals")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// `pending` (same as `pending_approval`), `signed`, `rejected`, `expired`, `cancelled`, `failed`.
        status: Query<Option<OneOf<RequestStatuses>>>,
        /// Page size, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<RequestPage>> {
        let limit = page_limit(limit.0)?;
        let status = match status.0.as_deref() {
            None => None,
            Some("pending") => Some(ApprovalStatus::PendingApproval),
            Some(s) => Some(ApprovalStatus::parse(s).map_err(|_| {
                ApiError::invalid(format!(
                    "unknown status {s:?}; use pending, approved, signed, rejected, expired, cancelled or failed"
                ))
            })?),
        };
        let mut before = super::page_cursor(cursor.0.as_deref())?;
        // Visibility is checked per row; scan pages until enough visible rows are found.
        let mut items = Vec::new();
        let mut next_cursor = None;
        'scan: for _ in 0..20 {
            let rows = state
                .signing()
                .store()
                .approval_requests_page(status, before.as_deref(), 200)
                .await?;
            let exhausted = rows.len() < 200;
            for row in rows {
                before = Some(row.id.clone());
                let visible = if status == Some(ApprovalStatus::PendingApproval)
                    && !auth.0.has_role(Role::Auditor)
                {
                    approvals::can_act(&auth.0, &row)
                        || (auth.0.is(&row.issuer, &row.subject)
                            && approvals::may_view(state.signing(), &auth.0, &row).await)
                } else {
                    approvals::may_view(state.signing(), &auth.0, &row).await
                };
                if visible {
                    let id = row.id.clone();
                    items.push(view(&state, row).await?);
                    if items.len() == limit as usize {
                        next_cursor = Some(crate::store::cursor::encode(&id));
                        break 'scan;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(Json(RequestPage { items, next_cursor }))
    }

    /// Approve (role approver and one of the request's approver roles; never your own).
    /// The approval that completes the quorum makes the signature.
    #[oai(
        path = "/v1/requests/:id/approve",
        method = "post",
        tag = "ApiTags::Approvals"
    )]
    async fn approve(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<VoteBody>,
    ) -> ApiResult<Json<RequestView>> {
        let comment = body.0.comment;
        let row = approvals::vote(state.signing(), &auth.0, &id.0, true, comment).await?;
        Ok(Json(view(&state, row).await?))
    }

    /// Reject: one rejection ends the request.
    #[oai(
        path = "/v1/requests/:id/reject",
        method = "post",
        tag = "ApiTags::Approvals"
    )]
    async fn reject(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        body: Json<VoteBody>,
    ) -> ApiResult<Json<RequestView>> {
        let comment = body.0.comment;
        let row = approvals::vote(state.signing(), &auth.0, &id.0, false, comment).await?;
        Ok(Json(view(&state, row).await?))
    }

    /// Cancel your own pending request.
    #[oai(
        path = "/v1/requests/:id/cancel",
        method = "post",
        tag = "ApiTags::Approvals"
    )]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
    ) -> ApiResult<Json<RequestView>> {
        let row = approvals::cancel(state.signing(), &auth.0, &id.0).await?;
        Ok(Json(view(&state, row).await?))
    }
}

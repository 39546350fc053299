//! Approval requests and votes. Every transition is conditional on the current status, so
//! that concurrent approvers cannot move a request twice; the audit writer applies them one
//! at a time in its transaction.

use super::db::{Conn, DbRow, on_conn, on_pool};

use super::{Result, Store, StoreError, conflict_or};

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for approvers.
    PendingApproval,
    /// The quorum was reached; the signature is being made.
    Approved,
    /// Signed; the result is on the request.
    Signed,
    /// An approver rejected it.
    Rejected,
    /// Nobody completed it in time.
    Expired,
    /// The requester withdrew it.
    Cancelled,
    /// It could not be signed (key disabled, backend error).
    Failed,
}

impl ApprovalStatus {
    /// Name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::PendingApproval => "pending_approval",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Signed => "signed",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Cancelled => "cancelled",
            ApprovalStatus::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending_approval" => ApprovalStatus::PendingApproval,
            "approved" => ApprovalStatus::Approved,
            "signed" => ApprovalStatus::Signed,
            "rejected" => ApprovalStatus::Rejected,
            "expired" => ApprovalStatus::Expired,
            "cancelled" => ApprovalStatus::Cancelled,
            "failed" => ApprovalStatus::Failed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown approval status {other:?}"
                )));
            }
        })
    }
}

/// A stored approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequestRow {
    /// Request id (the sign request's id).
    pub id: String,
    /// Key id.
    pub key_id: String,
    /// Requester's issuer.
    pub issuer: String,
    /// Requester's subject.
    pub subject: String,
    /// Route, e.g. `raw.sign`.
    pub operation: String,
    /// Status.
    pub status: ApprovalStatus,
    /// Intent (JSON).
    pub intent: String,
    /// Policy verdict (JSON).
    pub verdict: String,
    /// What to sign (JSON).
    pub to_sign: String,
    /// Signature options (JSON).
    pub options: String,
    /// Distinct approvals needed.
    pub quorum: i64,
    /// Approver roles (JSON array).
    pub approver_roles: String,
    /// The policy's reason.
    pub reason: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// Expiry (Unix seconds).
    pub expires_unix: i64,
    /// Requester's idempotency key.
    pub idempotency_key: Option<String>,
    /// Body hash that came with it.
    pub body_hash: Option<Vec<u8>>,
    /// Sign receipt (JSON), once signed.
    pub result: Option<String>,
    /// Error code, once failed.
    pub error_code: Option<String>,
    /// Error message, once failed.
    pub error_message: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Each policy's requirement (JSON array of [`Requirement`]); `None` for requests made
    /// before requirements were kept apart: one requirement of `quorum` from `approver_roles`.
    pub requirements: Option<String>,
    /// The requester's roles and groups when the request was made (JSON of
    /// [`RequesterRights`]); `None` for older requests.
    pub requester: Option<String>,
}

/// One policy's approval requirement: `approvals` distinct approvers, each holding one of
/// `approver_roles` (any approver when empty).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requirement {
    /// The policy that asked.
    pub policy: String,
    /// Its reason.
    pub reason: String,
    /// Distinct approvals it needs.
    pub approvals: u32,
    /// Roles that count toward it (empty: any approver).
    pub approver_roles: Vec<String>,
}

/// The rights a requester held when the request was made.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequesterRights {
    /// Keyward roles.
    pub roles: Vec<String>,
    /// Other role names of the token.
    pub other_roles: Vec<String>,
    /// Groups.
    pub groups: Vec<String>,
}

/// How far one requirement got: the approvals that count toward it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The requirement.
    pub requirement: Requirement,
    /// Subjects of the approvers counted toward it.
    pub approved_by: Vec<String>,
}

impl Progress {
    /// Whether it is met.
    pub fn met(&self) -> bool {
        self.approved_by.len() as u64 >= u64::from(self.requirement.approvals)
    }
}

/// The requirements of a request, as stored or (for older rows) its single quorum.
pub fn requirements_of(
    requirements: Option<&str>,
    quorum: i64,
    approver_roles: &str,
    reason: &str,
) -> Result<Vec<Requirement>> {
    match requirements {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("approval requirements: {e}"))),
        None => Ok(vec![Requirement {
            policy: String::new(),
            reason: reason.to_string(),
            approvals: u32::try_from(quorum).unwrap_or(u32::MAX),
            approver_roles: serde_json::from_str(approver_roles)
                .map_err(|e| StoreError::Corrupt(format!("approver roles: {e}")))?,
        }]),
    }
}

/// Counts approvals toward each requirement. A vote counts toward every requirement one of
/// whose roles the voter held when voting (so one person holding two requirements' roles
/// counts toward both; a requirement with no roles takes every approver). Votes recorded
/// before roles were kept (`roles` NULL) count toward every requirement.
pub fn progress(requirements: &[Requirement], votes: &[VoteRow]) -> Vec<Progress> {
    requirements
        .iter()
        .map(|r| Progress {
            requirement: r.clone(),
            approved_by: votes
                .iter()
                .filter(|v| v.decision == "approve")
                .filter(|v| {
                    r.approver_roles.is_empty()
                        || v.roles
                            .as_ref()
                            .is_none_or(|held| held.iter().any(|h| r.approver_roles.contains(h)))
                })
                .map(|v| v.subject.clone())
                .collect(),
        })
        .collect()
}

/// One approver's vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRow {
    /// The request.
    pub request_id: String,
    /// Voter's issuer.
    pub issuer: String,
    /// Voter's subject.
    pub subject: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// Optional comment.
    pub comment: Option<String>,
    /// When.
    pub created_at: String,
    /// Which of the request's approver roles the voter held (`None` for older votes).
    pub roles: Option<Vec<String>>,
}

fn from_row(row: &impl DbRow) -> Result<ApprovalRequestRow> {
    let status: String = row.try_get("status")?;
    Ok(ApprovalRequestRow {
        id: row.try_get("id")?,
        key_id: row.try_get("key_id")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        operation: row.try_get("operation")?,
        status: ApprovalStatus::parse(&status)?,
        intent: row.try_get("intent")?,
        verdict: row.try_get("verdict")?,
        to_sign: row.try_get("to_sign")?,
        options: row.try_get("options")?,
        quorum: row.try_get("quorum")?,
        approver_roles: row.try_get("approver_roles")?,
        reason: row.try_get("reason")?,
        expires_at: row.try_get("expires_at")?,
        expires_unix: row.try_get("expires_unix")?,
        idempotency_key: row.try_get("idempotency_key")?,
        body_hash: row.try_get("body_hash")?,
        result: row.try_get("result")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        requirements: row.try_get("requirements")?,
        requester: row.try_get("requester")?,
    })
}

pub(crate) async fn insert(conn: &mut Conn<'_>, r: &ApprovalRequestRow) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query(
        "INSERT INTO approval_requests (id, key_id, issuer, subject, operation, status, intent, \
         verdict, to_sign, options, quorum, approver_roles, reason, expires_at, expires_unix, \
         idempotency_key, body_hash, result, error_code, error_message, created_at, updated_at, \
         requirements, requester) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
    )
    .bind(&r.id)
    .bind(&r.key_id)
    .bind(&r.issuer)
    .bind(&r.subject)
    .bind(&r.operation)
    .bind(r.status.as_str())
    .bind(&r.intent)
    .bind(&r.verdict)
    .bind(&r.to_sign)
    .bind(&r.options)
    .bind(r.quorum)
    .bind(&r.approver_roles)
    .bind(&r.reason)
    .bind(&r.expires_at)
    .bind(r.expires_unix)
    .bind(&r.idempotency_key)
    .bind(&r.body_hash)
    .bind(&r.result)
    .bind(&r.error_code)
    .bind(&r.error_message)
    .bind(&r.created_at)
    .bind(&r.updated_at)
    .bind(&r.requirements)
    .bind(&r.requester)
    .execute(conn)
    .await
    .map_err(|e| conflict_or(e, || "idempotency key already used".into()))?;
        Ok(())
    })
}

/// Records a vote on a pending, unexpired request. An approval that reaches the quorum moves
/// the request to `approved`; a rejection moves it to `rejected`. Refused (Conflict) when the
/// request is no longer pending, has expired, or the voter already voted.
pub(crate) async fn vote(conn: &mut Conn<'_>, vote: &VoteRow, now_unix: i64) -> Result<()> {
    on_conn!(conn, |conn| {
        let open = sqlx::query(
            "SELECT quorum, approver_roles, reason, requirements FROM approval_requests \
         WHERE id = $1 AND status = 'pending_approval' AND expires_unix > $2",
        )
        .bind(&vote.request_id)
        .bind(now_unix)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(open) = open else {
            return Err(StoreError::Conflict(
                "the request is no longer pending".into(),
            ));
        };
        let requirements = requirements_of(
            open.try_get::<Option<String>, _>("requirements")?
                .as_deref(),
            open.try_get("quorum")?,
            &open.try_get::<String, _>("approver_roles")?,
            &open.try_get::<String, _>("reason")?,
        )?;
        let roles = vote
            .roles
            .as_ref()
            .map(|r| serde_json::to_string(r).unwrap_or_else(|_| "[]".into()));
        sqlx::query(
        "INSERT INTO approval_votes (request_id, issuer, subject, decision, comment, created_at, roles) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&vote.request_id)
    .bind(&vote.issuer)
    .bind(&vote.subject)
    .bind(&vote.decision)
    .bind(&vote.comment)
    .bind(&vote.created_at)
    .bind(roles)
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        conflict_or(e, || {
            "this approver has already voted on the request".into()
        })
    })?;
        let next = if vote.decision == "reject" {
            Some(ApprovalStatus::Rejected)
        } else {
            let votes = votes_of(&mut Conn::from(&mut *conn), &vote.request_id).await?;
            progress(&requirements, &votes)
                .iter()
                .all(Progress::met)
                .then_some(ApprovalStatus::Approved)
        };
        if let Some(next) = next {
            set_status(
                &mut Conn::from(conn),
                &vote.request_id,
                &[ApprovalStatus::PendingApproval],
                next,
                &vote.created_at,
                None,
                None,
            )
            .await?;
        }
        Ok(())
    })
}

/// Moves a request from one of `from` to `to`; Conflict when it is in another state.
pub(crate) async fn set_status(
    conn: &mut Conn<'_>,
    id: &str,
    from: &[ApprovalStatus],
    to: ApprovalStatus,
    at: &str,
    result: Option<&str>,
    error: Option<(&str, &str)>,
) -> Result<()> {
    on_conn!(conn, |conn| {
        let mut done = 0;
        for status in from {
            done += sqlx::query(
            "UPDATE approval_requests SET status = $1, updated_at = $2, result = COALESCE($3, result), \
             error_code = COALESCE($4, error_code), error_message = COALESCE($5, error_message) \
             WHERE id = $6 AND status = $7",
        )
        .bind(to.as_str())
        .bind(at)
        .bind(result)
        .bind(error.map(|e| e.0))
        .bind(error.map(|e| e.1))
        .bind(id)
        .bind(status.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        }
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "the request is not in a state that can become {}",
                to.as_str()
            )));
        }
        Ok(())
    })
}

impl Store {
    /// An approval request by id.
    pub async fn approval_request(&self, id: &str) -> Result<Option<ApprovalRequestRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM approval_requests WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(from_row).transpose()
        })
    }

    /// An approval request by its requester's idempotency key.
    pub async fn approval_request_by_idempotency_key(
        &self,
        issuer: &str,
        subject: &str,
        key: &str,
    ) -> Result<Option<ApprovalRequestRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query(
            "SELECT * FROM approval_requests WHERE issuer = $1 AND subject = $2 AND idempotency_key = $3",
        )
        .bind(issuer)
        .bind(subject)
        .bind(key)
        .fetch_optional(pool)
        .await?;
            row.as_ref().map(from_row).transpose()
        })
    }

    /// Requests with `status` (or any), newest first, created before the id `before`.
    pub async fn approval_requests_page(
        &self,
        status: Option<ApprovalStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApprovalRequestRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query(
                "SELECT * FROM approval_requests WHERE ($1 IS NULL OR status = $2) AND id < $3 \
             ORDER BY id DESC LIMIT $4",
            )
            .bind(status.map(|s| s.as_str()))
            .bind(status.map(|s| s.as_str()))
            .bind(before.unwrap_or("\u{10ffff}"))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(from_row).collect()
        })
    }

    /// Ids of requests in `status`; with `expired_by`, only those expiring at or before it.
    pub async fn approval_request_ids(
        &self,
        status: ApprovalStatus,
        expired_by: Option<i64>,
    ) -> Result<Vec<String>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query(
            "SELECT id FROM approval_requests WHERE status = $1 AND ($2 IS NULL OR expires_unix <= $3) ORDER BY id",
        )
        .bind(status.as_str())
        .bind(expired_by)
        .bind(expired_by)
        .fetch_all(pool)
        .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// The votes on a request, oldest first.
    pub async fn approval_votes(&self, request_id: &str) -> Result<Vec<VoteRow>> {
        on_pool!(self.pool(), |pool| {
            let mut conn = pool.acquire().await?;
            votes_of(&mut Conn::from(&mut *conn), request_id).await
        })
    }
}

async fn votes_of(conn: &mut Conn<'_>, request_id: &str) -> Result<Vec<VoteRow>> {
    on_conn!(conn, |conn| {
        let rows = sqlx::query(
            "SELECT * FROM approval_votes WHERE request_id = $1 ORDER BY created_at, subject",
        )
        .bind(request_id)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let roles: Option<String> = r.try_get("roles")?;
                Ok(VoteRow {
                    request_id: r.try_get("request_id")?,
                    issuer: r.try_get("issuer")?,
                    subject: r.try_get("subject")?,
                    decision: r.try_get("decision")?,
                    comment: r.try_get("comment")?,
                    created_at: r.try_get("created_at")?,
                    roles: roles
                        .map(|j| serde_json::from_str(&j))
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(format!("vote roles: {e}")))?,
                })
            })
            .collect()
    })
}

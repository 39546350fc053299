//! The audit log: `/v1/audit`.

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use super::error::{ApiError, ApiResult};
use super::{ApiTags, BearerAuth, page_limit};
use crate::app::AppState;
use crate::auth::Role;
use crate::store::audit::{AuditFilter, AuditRow};

/// Audit log access.
pub struct AuditApi;

/// Who acted.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ActorView {
    /// Token issuer.
    pub issuer: String,
    /// Subject.
    pub subject: String,
}

/// One audit record.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditRecordView {
    /// Position in the chain (from 1, no gaps).
    pub seq: i64,
    /// Time (RFC 3339, UTC).
    pub ts: String,
    /// What happened: `sign`, `key.create`, `key.import`, `key.disable`.
    pub action: String,
    /// How it ended: `ok`, `denied`, `failed`.
    pub outcome: String,
    /// Who.
    pub actor: ActorView,
    /// The key concerned.
    pub key_id: Option<String>,
    /// The request concerned.
    pub request_id: Option<String>,
    /// Details (intent, policy verdict, signature hash...).
    pub details: serde_json::Value,
    /// The node that wrote the record (`[server] node_id`); absent on records written
    /// before nodes were recorded. Covered by the record's hash.
    pub node_id: Option<String>,
    /// Previous record's hash, hex.
    pub prev_hash: String,
    /// This record's hash, hex.
    pub hash: String,
}

impl AuditRecordView {
    fn from_row(row: AuditRow) -> Self {
        AuditRecordView {
            details: serde_json::from_str(&row.details)
                .unwrap_or(serde_json::Value::String(row.details)),
            seq: row.seq,
            ts: row.ts,
            action: row.action,
            outcome: row.outcome,
            actor: ActorView {
                issuer: row.actor_issuer,
                subject: row.actor_subject,
            },
            key_id: row.key_id,
            request_id: row.request_id,
            node_id: row.node_id,
            prev_hash: hex::encode(row.prev_hash),
            hash: hex::encode(row.hash),
        }
    }
}

/// A page of audit records, newest first.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditPage {
    /// Records, newest first.
    pub items: Vec<AuditRecordView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[OpenApi]
impl AuditApi {
    /// Read the audit log, newest first (roles: auditor, admin).
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/v1/audit", method = "get", tag = "ApiTags::Audit")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Only records about this key.
        key_id: Query<Option<String>>,
        /// Only records made by this subject.
        subject: Query<Option<String>>,
        /// Only this action, e.g. `sign` or `key.create`.
        action: Query<Option<String>>,
        /// Only records written by this node (`[server] node_id`).
        node_id: Query<Option<String>>,
        /// At or after this time (RFC 3339).
        since: Query<Option<String>>,
        /// Before this time (RFC 3339).
        until: Query<Option<String>>,
        /// Page size, 1 to 500 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<AuditPage>> {
        auth.require(&[Role::Auditor])?;
        let limit = page_limit(limit.0)?;
        let time = |t: Option<String>| {
            t.map(|t| crate::clock::normalize(&t))
                .transpose()
                .map_err(ApiError::invalid)
        };
        let filter = AuditFilter {
            key_id: key_id.0,
            subject: subject.0,
            action: action.0,
            node_id: node_id.0,
            since: time(since.0)?,
            until: time(until.0)?,
        };
        let before = match super::page_cursor(cursor.0.as_deref())? {
            Some(seq) => Some(
                seq.parse::<i64>()
                    .map_err(|_| ApiError::invalid("cursor is not valid"))?,
            ),
            None => None,
        };
        let rows = state
            .signing()
            .store()
            .audit_page(&filter, before, limit + 1)
            .await?;
        let more = rows.len() > limit as usize;
        let items: Vec<AuditRecordView> = rows
            .into_iter()
            .take(limit as usize)
            .map(AuditRecordView::from_row)
            .collect();
        let next_cursor = if more {
            items
                .last()
                .map(|r| crate::store::cursor::encode(&r.seq.to_string()))
        } else {
            None
        };
        Ok(Json(AuditPage { items, next_cursor }))
    }
}

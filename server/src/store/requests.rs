//! Sign request rows and idempotency look-ups.

use super::db::{Conn, DbRow, on_pool};

use super::batch::DeferredWrites;
use super::{Result, Store, StoreError};

/// How a sign request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignStatus {
    /// A signature was made and returned.
    Signed,
    /// A policy (or the default decision) refused it.
    Denied,
    /// The backend failed; no signature.
    Failed,
}

impl SignStatus {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SignStatus::Signed => "signed",
            SignStatus::Denied => "denied",
            SignStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "signed" => Ok(SignStatus::Signed),
            "denied" => Ok(SignStatus::Denied),
            "failed" => Ok(SignStatus::Failed),
            other => Err(StoreError::Corrupt(format!(
                "unknown request status {other:?}"
            ))),
        }
    }
}

/// A stored sign request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequestRow {
    /// Request id.
    pub id: String,
    /// Key id.
    pub key_id: String,
    /// Caller's issuer.
    pub issuer: String,
    /// Caller's subject.
    pub subject: String,
    /// Which route (e.g. `raw.sign`).
    pub operation: String,
    /// Outcome.
    pub status: SignStatus,
    /// The intent as JSON.
    pub intent: String,
    /// The policy verdict as JSON.
    pub decision: String,
    /// The caller's `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// SHA-256 of the request body, when an idempotency key was given.
    pub body_hash: Option<Vec<u8>>,
    /// The response returned (JSON), for signed requests.
    pub response: Option<String>,
    /// Error code, for refused or failed requests.
    pub error_code: Option<String>,
    /// Error message, for refused or failed requests.
    pub error_message: Option<String>,
    /// When (RFC 3339).
    pub created_at: String,
    /// When (Unix seconds).
    pub created_unix: i64,
}

fn from_row(row: &impl DbRow) -> Result<SignRequestRow> {
    let status: String = row.try_get("status")?;
    Ok(SignRequestRow {
        id: row.try_get("id")?,
        key_id: row.try_get("key_id")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        operation: row.try_get("operation")?,
        status: SignStatus::parse(&status)?,
        intent: row.try_get("intent")?,
        decision: row.try_get("decision")?,
        idempotency_key: row.try_get("idempotency_key")?,
        body_hash: row.try_get("body_hash")?,
        response: row.try_get("response")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        created_at: row.try_get("created_at")?,
        created_unix: row.try_get("created_unix")?,
    })
}

/// Inserts one sign request (and the signature it adds to the usage counters), the way the
/// audit writer writes a whole batch of them.
pub(crate) async fn insert(conn: &mut Conn<'_>, row: &SignRequestRow) -> Result<()> {
    let mut writes = DeferredWrites::default();
    writes.sign_request(row);
    writes.write(conn).await
}

impl Store {
    /// The request a caller made earlier with this idempotency key.
    pub async fn request_by_idempotency_key(
        &self,
        issuer: &str,
        subject: &str,
        key: &str,
    ) -> Result<Option<SignRequestRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query(
            "SELECT * FROM sign_requests WHERE issuer = $1 AND subject = $2 AND idempotency_key = $3",
        )
        .bind(issuer)
        .bind(subject)
        .bind(key)
        .fetch_optional(pool)
        .await?;
            row.as_ref().map(from_row).transpose()
        })
    }

    /// A sign request by id.
    pub async fn sign_request(&self, id: &str) -> Result<Option<SignRequestRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM sign_requests WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(from_row).transpose()
        })
    }
}

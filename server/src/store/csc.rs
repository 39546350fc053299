//! CSC credential authorizations and the hashes of their SADs.
//!
//! A SAD is never stored, only its SHA-256. Issuing and consuming a SAD are conditional
//! updates applied by the audit writer: a SAD is issued once per authorization, and consumed
//! at most once, before its expiry, so two concurrent `signHash` calls cannot both use it.

use super::db::{Conn, DbRow, on_conn, on_pool};

use super::{Result, Store, StoreError, conflict_or};

/// One hash bound to an authorization.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoundHash {
    /// The hash, lower-case hex.
    pub hash: String,
    /// The approval request that holds this hash back, when a policy asked for approval.
    pub approval: Option<String>,
}

/// Where an authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CscAuthorizationStatus {
    /// Waiting for approval requests.
    Pending,
    /// A SAD was issued.
    Issued,
    /// The SAD was consumed by `signHash`.
    Used,
}

impl CscAuthorizationStatus {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CscAuthorizationStatus::Pending => "pending",
            CscAuthorizationStatus::Issued => "issued",
            CscAuthorizationStatus::Used => "used",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(CscAuthorizationStatus::Pending),
            "issued" => Ok(CscAuthorizationStatus::Issued),
            "used" => Ok(CscAuthorizationStatus::Used),
            other => Err(StoreError::Corrupt(format!(
                "unknown CSC authorization status {other:?}"
            ))),
        }
    }
}

/// A stored authorization.
#[derive(Debug, Clone)]
pub struct CscAuthorizationRow {
    /// Id (`csa_...`).
    pub id: String,
    /// Token issuer of the caller it was made for.
    pub issuer: String,
    /// Token subject of the caller it was made for.
    pub subject: String,
    /// The credential (key id).
    pub credential_id: String,
    /// Signatures authorized.
    pub num_signatures: i64,
    /// Hash algorithm of the bound hashes.
    pub hash_algorithm: String,
    /// The bound hashes.
    pub hashes: Vec<BoundHash>,
    /// Status.
    pub status: CscAuthorizationStatus,
    /// SHA-256 of the SAD, once issued.
    pub sad_hash: Option<Vec<u8>>,
    /// When the SAD expires (Unix seconds), once issued.
    pub expires_unix: Option<i64>,
    /// The client's description.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

fn from_row(row: &impl DbRow) -> Result<CscAuthorizationRow> {
    let hashes: String = row.try_get("hashes")?;
    let status: String = row.try_get("status")?;
    Ok(CscAuthorizationRow {
        id: row.try_get("id")?,
        issuer: row.try_get("issuer")?,
        subject: row.try_get("subject")?,
        credential_id: row.try_get("credential_id")?,
        num_signatures: row.try_get("num_signatures")?,
        hash_algorithm: row.try_get("hash_algorithm")?,
        hashes: serde_json::from_str(&hashes)
            .map_err(|e| StoreError::Corrupt(format!("CSC authorization hashes: {e}")))?,
        status: CscAuthorizationStatus::parse(&status)?,
        sad_hash: row.try_get("sad_hash")?,
        expires_unix: row.try_get("expires_unix")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) async fn insert(conn: &mut Conn<'_>, row: &CscAuthorizationRow) -> Result<()> {
    on_conn!(conn, |conn| {
        let hashes = serde_json::to_string(&row.hashes)
            .map_err(|e| StoreError::Corrupt(format!("CSC authorization hashes: {e}")))?;
        sqlx::query(
        "INSERT INTO csc_authorizations (id, issuer, subject, credential_id, num_signatures, \
         hash_algorithm, hashes, status, sad_hash, expires_unix, description, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&row.id)
    .bind(&row.issuer)
    .bind(&row.subject)
    .bind(&row.credential_id)
    .bind(row.num_signatures)
    .bind(&row.hash_algorithm)
    .bind(hashes)
    .bind(row.status.as_str())
    .bind(&row.sad_hash)
    .bind(row.expires_unix)
    .bind(&row.description)
    .bind(&row.created_at)
    .bind(&row.updated_at)
    .execute(&mut *conn)
    .await
    .map_err(|e| conflict_or(e, || format!("CSC authorization {} exists", row.id)))?;
        Ok(())
    })
}

/// `pending` -> `issued` with the SAD's hash and expiry; Conflict when it is not pending.
pub(crate) async fn issue(
    conn: &mut Conn<'_>,
    id: &str,
    sad_hash: &[u8],
    expires_unix: i64,
    at: &str,
) -> Result<()> {
    on_conn!(conn, |conn| {
        let done = sqlx::query(
            "UPDATE csc_authorizations SET status = 'issued', sad_hash = $1, expires_unix = $2, \
         updated_at = $3 WHERE id = $4 AND status = 'pending'",
        )
        .bind(sad_hash)
        .bind(expires_unix)
        .bind(at)
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if done != 1 {
            return Err(StoreError::Conflict(
                "the authorization's SAD was already issued".into(),
            ));
        }
        Ok(())
    })
}

/// `issued` -> `used`, only for this SAD and before its expiry; Conflict otherwise.
pub(crate) async fn consume(
    conn: &mut Conn<'_>,
    id: &str,
    sad_hash: &[u8],
    now_unix: i64,
    at: &str,
) -> Result<()> {
    on_conn!(conn, |conn| {
        let done = sqlx::query(
            "UPDATE csc_authorizations SET status = 'used', updated_at = $1 \
         WHERE id = $2 AND sad_hash = $3 AND status = 'issued' AND expires_unix >= $4",
        )
        .bind(at)
        .bind(id)
        .bind(sad_hash)
        .bind(now_unix)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if done != 1 {
            return Err(StoreError::Conflict(
                "the SAD was already used or has expired".into(),
            ));
        }
        Ok(())
    })
}

impl Store {
    /// The authorization whose SAD hashes to `sad_hash`.
    pub async fn csc_authorization_by_sad(
        &self,
        sad_hash: &[u8],
    ) -> Result<Option<CscAuthorizationRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM csc_authorizations WHERE sad_hash = $1")
                .bind(sad_hash)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(from_row).transpose()
        })
    }

    /// The caller's newest pending authorization for a credential.
    pub async fn csc_pending_authorization(
        &self,
        issuer: &str,
        subject: &str,
        credential_id: &str,
    ) -> Result<Option<CscAuthorizationRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query(
            "SELECT * FROM csc_authorizations WHERE issuer = $1 AND subject = $2 \
             AND credential_id = $3 AND status = 'pending' ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(issuer)
        .bind(subject)
        .bind(credential_id)
        .fetch_optional(pool)
        .await?;
            row.as_ref().map(from_row).transpose()
        })
    }
}

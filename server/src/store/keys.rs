//! Key rows.

use super::db::{Conn, DbRow, on_conn, on_pool};

use super::{Result, Store, StoreError, conflict_or};

/// A key's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Can sign.
    Active,
    /// Refuses to sign.
    Disabled,
}

impl KeyStatus {
    /// Name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(KeyStatus::Active),
            "disabled" => Ok(KeyStatus::Disabled),
            other => Err(StoreError::Corrupt(format!("unknown key status {other:?}"))),
        }
    }
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Key id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Algorithm name.
    pub algorithm: String,
    /// Purpose name.
    pub purpose: String,
    /// Backend name.
    pub backend: String,
    /// Status.
    pub status: KeyStatus,
    /// Labels as a JSON object.
    pub labels: String,
    /// DER SPKI.
    pub public_key: Vec<u8>,
    /// Backend material (sealed blob, HSM reference).
    pub material: Vec<u8>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Who created it (`issuer|subject`).
    pub created_by: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Who may sign with it: a JSON array of `subject:`, `role:` and `group:` entries.
    pub signers: String,
}

fn from_row(row: &impl DbRow) -> Result<KeyRow> {
    let status: String = row.try_get("status")?;
    Ok(KeyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        algorithm: row.try_get("algorithm")?,
        purpose: row.try_get("purpose")?,
        backend: row.try_get("backend")?,
        status: KeyStatus::parse(&status)?,
        labels: row.try_get("labels")?,
        public_key: row.try_get("public_key")?,
        material: row.try_get("material")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        signers: row.try_get("signers")?,
    })
}

pub(crate) async fn insert(conn: &mut Conn<'_>, row: &KeyRow) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query(
            "INSERT INTO keys (id, name, algorithm, purpose, backend, status, labels, public_key, \
         material, created_at, created_by, updated_at, signers) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.algorithm)
        .bind(&row.purpose)
        .bind(&row.backend)
        .bind(row.status.as_str())
        .bind(&row.labels)
        .bind(&row.public_key)
        .bind(&row.material)
        .bind(&row.created_at)
        .bind(&row.created_by)
        .bind(&row.updated_at)
        .bind(&row.signers)
        .execute(conn)
        .await
        .map_err(|e| conflict_or(e, || format!("a key named {:?} already exists", row.name)))?;
        Ok(())
    })
}

pub(crate) async fn set_status(
    conn: &mut Conn<'_>,
    key_id: &str,
    status: KeyStatus,
    at: &str,
) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query("UPDATE keys SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(at)
            .bind(key_id)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub(crate) async fn set_signers(
    conn: &mut Conn<'_>,
    key_id: &str,
    signers: &str,
    at: &str,
) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query("UPDATE keys SET signers = $1, updated_at = $2 WHERE id = $3")
            .bind(signers)
            .bind(at)
            .bind(key_id)
            .execute(conn)
            .await?;
        Ok(())
    })
}

impl Store {
    /// A key by id.
    pub async fn key(&self, id: &str) -> Result<Option<KeyRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM keys WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(from_row).transpose()
        })
    }

    /// Keys ordered by id, after the id `after`, at most `limit`.
    pub async fn keys_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<KeyRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query("SELECT * FROM keys WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(from_row).collect()
        })
    }
}

//! Certificate rows and the internal certificate authority's row.

use super::db::{Conn, DbRow, on_conn, on_pool};

use super::{Result, Store, StoreError, conflict_or};

/// A certificate's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Usable for signing (within its validity).
    Active,
    /// Revoked for good.
    Revoked,
}

impl CertStatus {
    /// Name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Active => "active",
            CertStatus::Revoked => "revoked",
        }
    }

    /// Parses a stored or requested name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(CertStatus::Active),
            "revoked" => Some(CertStatus::Revoked),
            _ => None,
        }
    }
}

/// A stored certificate of a document key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRow {
    /// Id (`crt_...`).
    pub id: String,
    /// The key it certifies.
    pub key_id: String,
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Subject, RFC 4514.
    pub subject: String,
    /// Issuer, RFC 4514.
    pub issuer: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// `internal` (issued by the internal CA) or `imported`.
    pub source: String,
    /// Status.
    pub status: CertStatus,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Why (RFC 5280 reason name).
    pub revocation_reason: Option<String>,
    /// Who the certificate belongs to.
    pub owner: String,
    /// The certificate, DER.
    pub certificate: Vec<u8>,
    /// The issuing chain above it, PEM (may be empty).
    pub chain: Vec<u8>,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Who recorded it (`issuer|subject`).
    pub created_by: String,
}

fn from_row(row: &impl DbRow) -> Result<CertificateRow> {
    let status: String = row.try_get("status")?;
    Ok(CertificateRow {
        id: row.try_get("id")?,
        key_id: row.try_get("key_id")?,
        serial: row.try_get("serial")?,
        subject: row.try_get("subject")?,
        issuer: row.try_get("issuer")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        source: row.try_get("source")?,
        status: CertStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown certificate status {status:?}")))?,
        revoked_at: row.try_get("revoked_at")?,
        revocation_reason: row.try_get("revocation_reason")?,
        owner: row.try_get("owner")?,
        certificate: row.try_get("certificate")?,
        chain: row.try_get("chain")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

/// The internal CA as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRow {
    /// Algorithm of the CA key.
    pub algorithm: String,
    /// CA certificate, DER.
    pub certificate: Vec<u8>,
    /// The sealed CA key.
    pub material: Vec<u8>,
    /// `generated` or `imported`.
    pub source: String,
    /// The current CRL, DER.
    pub crl: Option<Vec<u8>>,
    /// The current CRL's number.
    pub crl_number: i64,
    /// When the CA was set up.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

pub(crate) async fn insert(conn: &mut Conn<'_>, row: &CertificateRow) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query(
        "INSERT INTO certificates (id, key_id, serial, subject, issuer, not_before, not_after, \
         source, status, revoked_at, revocation_reason, owner, certificate, chain, created_at, \
         created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&row.id)
    .bind(&row.key_id)
    .bind(&row.serial)
    .bind(&row.subject)
    .bind(&row.issuer)
    .bind(&row.not_before)
    .bind(&row.not_after)
    .bind(&row.source)
    .bind(row.status.as_str())
    .bind(&row.revoked_at)
    .bind(&row.revocation_reason)
    .bind(&row.owner)
    .bind(&row.certificate)
    .bind(&row.chain)
    .bind(&row.created_at)
    .bind(&row.created_by)
    .execute(conn)
    .await
    .map_err(|e| {
        conflict_or(e, || {
            format!(
                "a certificate with serial {} from this issuer is already recorded",
                row.serial
            )
        })
    })?;
        Ok(())
    })
}

pub(crate) async fn revoke(conn: &mut Conn<'_>, id: &str, at: &str, reason: &str) -> Result<()> {
    on_conn!(conn, |conn| {
        let done = sqlx::query(
            "UPDATE certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2 \
         WHERE id = $3 AND status = 'active'",
        )
        .bind(at)
        .bind(reason)
        .bind(id)
        .execute(conn)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "certificate {id} is already revoked"
            )));
        }
        Ok(())
    })
}

/// Stores the internal CA: replacing the one stored (`replace`, an import) or only when there is
/// none yet (a CA made at first start; `Conflict` when another node made one first).
pub(crate) async fn put_ca(conn: &mut Conn<'_>, row: &CaRow, replace: bool) -> Result<()> {
    macro_rules! insert {
        () => {
            "INSERT INTO certificate_authority (id, algorithm, certificate, material, source, \
             crl, crl_number, created_at, updated_at) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8)"
        };
    }
    let sql = if replace {
        concat!(
            insert!(),
            " ON CONFLICT (id) DO UPDATE SET algorithm = excluded.algorithm, \
             certificate = excluded.certificate, material = excluded.material, \
             source = excluded.source, crl = excluded.crl, crl_number = excluded.crl_number, \
             updated_at = excluded.updated_at"
        )
    } else {
        insert!()
    };
    on_conn!(conn, |conn| {
        sqlx::query(sql)
            .bind(&row.algorithm)
            .bind(&row.certificate)
            .bind(&row.material)
            .bind(&row.source)
            .bind(&row.crl)
            .bind(row.crl_number)
            .bind(&row.created_at)
            .bind(&row.updated_at)
            .execute(conn)
            .await
            .map_err(|e| conflict_or(e, || "an internal CA exists already".into()))?;
        Ok(())
    })
}

pub(crate) async fn set_crl(conn: &mut Conn<'_>, crl: &[u8], number: i64, at: &str) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query(
        "UPDATE certificate_authority SET crl = $1, crl_number = $2, updated_at = $3 WHERE id = 1",
    )
    .bind(crl)
    .bind(number)
    .bind(at)
    .execute(conn)
    .await?;
        Ok(())
    })
}

/// Filters for listing certificates.
#[derive(Debug, Clone, Default)]
pub struct CertificateFilter {
    /// Only this key's.
    pub key_id: Option<String>,
    /// Only this owner's.
    pub owner: Option<String>,
    /// Only this status.
    pub status: Option<CertStatus>,
}

impl Store {
    /// The internal CA, if set up.
    pub async fn certificate_authority(&self) -> Result<Option<CaRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM certificate_authority WHERE id = 1")
                .fetch_optional(pool)
                .await?;
            row.map(|r| {
                Ok(CaRow {
                    algorithm: r.try_get("algorithm")?,
                    certificate: r.try_get("certificate")?,
                    material: r.try_get("material")?,
                    source: r.try_get("source")?,
                    crl: r.try_get("crl")?,
                    crl_number: r.try_get("crl_number")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .transpose()
        })
    }

    /// A certificate by id.
    pub async fn certificate(&self, id: &str) -> Result<Option<CertificateRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM certificates WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(from_row).transpose()
        })
    }

    /// A certificate by issuer (RFC 4514) and serial (hex).
    pub async fn certificate_by_serial(
        &self,
        issuer: &str,
        serial: &str,
    ) -> Result<Option<CertificateRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM certificates WHERE issuer = $1 AND serial = $2")
                .bind(issuer)
                .bind(serial)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(from_row).transpose()
        })
    }

    /// A key's certificates, newest first.
    pub async fn certificates_of_key(&self, key_id: &str) -> Result<Vec<CertificateRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query(
                "SELECT * FROM certificates WHERE key_id = $1 ORDER BY created_at DESC, id DESC",
            )
            .bind(key_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(from_row).collect()
        })
    }

    /// Every revoked certificate issued by the internal CA (for the CRL).
    pub async fn revoked_internal_certificates(&self) -> Result<Vec<CertificateRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query(
                "SELECT * FROM certificates WHERE source = 'internal' AND status = 'revoked' \
             ORDER BY revoked_at, id",
            )
            .fetch_all(pool)
            .await?;
            rows.iter().map(from_row).collect()
        })
    }

    /// Certificates ordered by id, after `after`, at most `limit`, filtered.
    pub async fn certificates_page(
        &self,
        filter: &CertificateFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CertificateRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query(
                "SELECT * FROM certificates WHERE id > $1 AND ($2 IS NULL OR key_id = $3) \
             AND ($4 IS NULL OR owner = $5) AND ($6 IS NULL OR status = $7) ORDER BY id LIMIT $8",
            )
            .bind(after.unwrap_or(""))
            .bind(&filter.key_id)
            .bind(&filter.key_id)
            .bind(&filter.owner)
            .bind(&filter.owner)
            .bind(filter.status.map(CertStatus::as_str))
            .bind(filter.status.map(CertStatus::as_str))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(from_row).collect()
        })
    }
}

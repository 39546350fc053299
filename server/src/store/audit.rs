//! Audit log rows: the head inside the writer's transaction (records are appended by
//! `store::batch`), list with filters, scan for verification.

use super::db::{Conn, DbRow, on_conn, on_pool};
use futures_util::TryStreamExt;

use super::{Result, Store};

/// One stored audit record.
/// The `prev_hash` of the first record.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// Time (RFC 3339, UTC, milliseconds).
    pub ts: String,
    /// What happened, e.g. `key.create`, `sign`.
    pub action: String,
    /// How it ended, e.g. `ok`, `denied`, `failed`.
    pub outcome: String,
    /// Actor's issuer.
    pub actor_issuer: String,
    /// Actor's subject.
    pub actor_subject: String,
    /// The key concerned.
    pub key_id: Option<String>,
    /// The request concerned.
    pub request_id: Option<String>,
    /// Details as a JSON object (exact text, as hashed).
    pub details: String,
    /// The previous record's hash (32 zero bytes for seq 1).
    pub prev_hash: Vec<u8>,
    /// The node that wrote the record (`[server] node_id`); `None` on records written before
    /// nodes were recorded.
    pub node_id: Option<String>,
    /// This record's hash.
    pub hash: Vec<u8>,
}

/// Filters for listing audit records.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this key.
    pub key_id: Option<String>,
    /// Only this actor subject.
    pub subject: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only records written by this node.
    pub node_id: Option<String>,
    /// At or after this time (RFC 3339 UTC, as stored).
    pub since: Option<String>,
    /// Before this time.
    pub until: Option<String>,
}

fn from_row(row: &impl DbRow) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: row.try_get("seq")?,
        ts: row.try_get("ts")?,
        action: row.try_get("action")?,
        outcome: row.try_get("outcome")?,
        actor_issuer: row.try_get("actor_issuer")?,
        actor_subject: row.try_get("actor_subject")?,
        key_id: row.try_get("key_id")?,
        request_id: row.try_get("request_id")?,
        details: row.try_get("details")?,
        prev_hash: row.try_get("prev_hash")?,
        node_id: row.try_get("node_id")?,
        hash: row.try_get("hash")?,
    })
}

pub(crate) async fn set_head(conn: &mut Conn<'_>, seq: i64, hash: &[u8]) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(seq)
        .bind(hash)
        .execute(conn)
        .await?;
        Ok(())
    })
}

/// Locks the chain head row until the transaction ends (PostgreSQL: `FOR UPDATE`) and reads it.
pub(crate) async fn lock_head(conn: &mut Conn<'_>) -> Result<(i64, Vec<u8>)> {
    on_conn!(conn, |conn| {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            .fetch_one(conn)
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    })
}

impl Store {
    /// The recorded head of the chain: `(seq, hash)`, or `None` for an empty log.
    pub async fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| (r.get(0), r.get(1))))
        })
    }

    /// Records matching `filter`, newest first, with `seq` below `before`, at most `limit`.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query(
                "SELECT * FROM audit_log WHERE seq < $1 \
             AND ($2 IS NULL OR key_id = $3) \
             AND ($4 IS NULL OR actor_subject = $5) \
             AND ($6 IS NULL OR action = $7) \
             AND ($8 IS NULL OR ts >= $9) \
             AND ($10 IS NULL OR ts < $11) \
             AND ($12 IS NULL OR node_id = $13) \
             ORDER BY seq DESC LIMIT $14",
            )
            .bind(before.unwrap_or(i64::MAX))
            .bind(&filter.key_id)
            .bind(&filter.key_id)
            .bind(&filter.subject)
            .bind(&filter.subject)
            .bind(&filter.action)
            .bind(&filter.action)
            .bind(&filter.since)
            .bind(&filter.since)
            .bind(&filter.until)
            .bind(&filter.until)
            .bind(&filter.node_id)
            .bind(&filter.node_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(from_row).collect()
        })
    }

    /// Visits every record in `seq` order, streaming (constant memory).
    pub async fn audit_scan<F>(&self, mut visit: F) -> Result<()>
    where
        F: FnMut(AuditRow) -> std::ops::ControlFlow<()>,
    {
        on_pool!(self.pool(), |pool| {
            let mut rows = sqlx::query("SELECT * FROM audit_log ORDER BY seq").fetch(pool);
            while let Some(row) = rows.try_next().await? {
                if visit(from_row(&row)?).is_break() {
                    break;
                }
            }
            Ok(())
        })
    }
}

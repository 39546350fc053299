//! The audit writer's hot path in a few statements: the sign requests, the signature counts
//! and the audit records of a whole batch are written with one multi-row statement each (in
//! chunks), instead of a few statements per job, each a round trip to the database thread.
//!
//! Only changes that nothing later in the same transaction reads are deferred to the end of
//! the batch: inserted sign requests and count-only usage additions (which commute with every
//! other usage change). Every other change is applied in order, as before. The statements are
//! plain multi-row `INSERT ... VALUES` and `ON CONFLICT DO UPDATE`, which PostgreSQL speaks too.

use std::collections::BTreeMap;

use sqlx::QueryBuilder;

use super::db::{Conn, on_conn};

use super::audit::AuditRow;
use super::requests::SignRequestRow;
use super::usage::{self, UsageDelta};
use super::{Result, SignStatus, StateChange, StoreError, conflict_or};

/// Rows a statement carries at most (SQLite allows 32,766 bound values; a sign request has 15).
const CHUNK: usize = 200;

/// A counter bucket: scope, metric, span (seconds) and bucket number.
type Bucket = (String, String, i64, i64);

/// What a batch writes at its end.
#[derive(Default)]
pub(crate) struct DeferredWrites<'a> {
    requests: Vec<&'a SignRequestRow>,
    counts: BTreeMap<Bucket, i64>,
    audit: Vec<AuditRow>,
}

impl<'a> DeferredWrites<'a> {
    /// Takes `change` when it can wait for the end of the batch; `false` when it must be
    /// applied now.
    pub(crate) fn defer(&mut self, change: &'a StateChange) -> bool {
        match change {
            StateChange::InsertSignRequest(row) => {
                self.sign_request(row);
                true
            }
            StateChange::AddUsage(deltas)
                if deltas
                    .iter()
                    .all(|d| d.amount.is_zero() && i64::try_from(d.count).is_ok()) =>
            {
                for delta in deltas {
                    // Checked just above: the count fits.
                    let _ = self.usage_count(delta);
                }
                true
            }
            _ => false,
        }
    }

    /// A sign request to insert, with the signature it adds to the counters of its key and
    /// its principal when it is signed.
    pub(crate) fn sign_request(&mut self, row: &'a SignRequestRow) {
        if row.status == SignStatus::Signed {
            let key = usage::key_scope(&row.key_id);
            let principal = usage::principal_scope(&row.issuer, &row.subject);
            for scope in [key, principal] {
                self.count(scope, usage::SIGNATURES, row.created_unix, 1);
            }
        }
        self.requests.push(row);
    }

    /// A count-only usage addition (`delta.amount` is not looked at).
    pub(crate) fn usage_count(&mut self, delta: &UsageDelta) -> Result<()> {
        let n = i64::try_from(delta.count)
            .map_err(|_| StoreError::Corrupt("usage count out of range".into()))?;
        self.count(delta.scope.clone(), &delta.metric, delta.at_unix, n);
        Ok(())
    }

    fn count(&mut self, scope: String, metric: &str, at_unix: i64, n: i64) {
        for span in [usage::MINUTE, usage::HOUR] {
            let bucket = (
                scope.clone(),
                metric.to_string(),
                span,
                at_unix.div_euclid(span),
            );
            let total = self.counts.entry(bucket).or_default();
            *total = total.saturating_add(n);
        }
    }

    /// Adds an audit record (in chain order).
    pub(crate) fn audit(&mut self, row: AuditRow) {
        self.audit.push(row);
    }

    /// Writes everything deferred. A reused idempotency key fails the whole statement with
    /// `Conflict`; the writer then writes the batch again job by job.
    pub(crate) async fn write(self, conn: &mut Conn<'_>) -> Result<()> {
        for chunk in self.requests.chunks(CHUNK) {
            insert_requests(conn, chunk).await?;
        }
        let counts: Vec<(Bucket, i64)> = self.counts.into_iter().collect();
        for chunk in counts.chunks(CHUNK) {
            add_counts(conn, chunk).await?;
        }
        for chunk in self.audit.chunks(CHUNK) {
            insert_audit(conn, chunk).await?;
        }
        Ok(())
    }
}

async fn insert_requests(conn: &mut Conn<'_>, rows: &[&SignRequestRow]) -> Result<()> {
    on_conn!(conn, |conn| {
        let mut q = QueryBuilder::new(
            "INSERT INTO sign_requests (id, key_id, issuer, subject, operation, status, intent, \
         decision, idempotency_key, body_hash, response, error_code, error_message, created_at, \
         created_unix) ",
        );
        q.push_values(rows, |mut b, row| {
            b.push_bind(&row.id)
                .push_bind(&row.key_id)
                .push_bind(&row.issuer)
                .push_bind(&row.subject)
                .push_bind(&row.operation)
                .push_bind(row.status.as_str())
                .push_bind(&row.intent)
                .push_bind(&row.decision)
                .push_bind(&row.idempotency_key)
                .push_bind(&row.body_hash)
                .push_bind(&row.response)
                .push_bind(&row.error_code)
                .push_bind(&row.error_message)
                .push_bind(&row.created_at)
                .push_bind(row.created_unix);
        });
        q.build()
            .persistent(false)
            .execute(&mut *conn)
            .await
            .map_err(|e| conflict_or(e, || "idempotency key already used".into()))?;
        Ok(())
    })
}

async fn add_counts(conn: &mut Conn<'_>, rows: &[(Bucket, i64)]) -> Result<()> {
    on_conn!(conn, |conn| {
        let mut q =
            QueryBuilder::new("INSERT INTO usage_counters (scope, metric, span, bucket, count) ");
        q.push_values(rows, |mut b, ((scope, metric, span, bucket), n)| {
            b.push_bind(scope)
                .push_bind(metric)
                .push_bind(*span)
                .push_bind(*bucket)
                .push_bind(*n);
        });
        q.push(
        " ON CONFLICT (scope, metric, span, bucket) DO UPDATE SET count = usage_counters.count + excluded.count",
    );
        q.build().persistent(false).execute(&mut *conn).await?;
        Ok(())
    })
}

async fn insert_audit(conn: &mut Conn<'_>, rows: &[AuditRow]) -> Result<()> {
    on_conn!(conn, |conn| {
        let mut q = QueryBuilder::new(
            "INSERT INTO audit_log (seq, ts, action, outcome, actor_issuer, actor_subject, key_id, \
         request_id, details, prev_hash, hash, node_id) ",
        );
        q.push_values(rows, |mut b, row| {
            b.push_bind(row.seq)
                .push_bind(&row.ts)
                .push_bind(&row.action)
                .push_bind(&row.outcome)
                .push_bind(&row.actor_issuer)
                .push_bind(&row.actor_subject)
                .push_bind(&row.key_id)
                .push_bind(&row.request_id)
                .push_bind(&row.details)
                .push_bind(&row.prev_hash)
                .push_bind(&row.hash)
                .push_bind(&row.node_id);
        });
        q.build().persistent(false).execute(&mut *conn).await?;
        Ok(())
    })
}

//! The audit writer's hot path in a few statements: the sign requests, the signature counts
//! and the audit records of a whole batch are written with one multi-row statement each (in
//! chunks), instead of a few statements per job, each a round trip to the database thread.
//!
//! Only changes that nothing later in the same transaction reads are deferred to the end of
//! the batch: inserted sign requests, kept policy inputs and count-only usage additions (which commute with every
//! other usage change). Every other change is applied in order, as before. On SQLite the
//! statements are multi-row `INSERT ... VALUES` (and `ON CONFLICT DO UPDATE`); on PostgreSQL
//! the same inserts take their rows as arrays (see `postgres`).

use std::collections::BTreeMap;

use sqlx::QueryBuilder;

use super::db::{Conn, on_conn};

use super::audit::AuditRow;
use super::inputs::PolicyInputRow;
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
    inputs: Vec<&'a PolicyInputRow>,
    counts: BTreeMap<Bucket, i64>,
    audit: Vec<AuditRow>,
    /// The chain head after the batch, when it is to be written with the rest.
    head: Option<(i64, Vec<u8>)>,
    /// Usage reservation rows (PostgreSQL) the batch's usage takes.
    taken: Vec<i64>,
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
            StateChange::InsertPolicyInput(row) => {
                self.inputs.push(row);
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

    /// Also writes the chain head after the batch, and takes the usage reservation rows
    /// `taken` (see `store::shared`): the whole batch in one statement on PostgreSQL.
    pub(crate) fn finish(&mut self, head: (i64, Vec<u8>), taken: Vec<i64>) {
        self.head = Some(head);
        self.taken = taken;
    }

    /// Writes everything deferred. A reused idempotency key fails the whole statement with
    /// `Conflict`; the writer then writes the batch again job by job.
    pub(crate) async fn write(self, conn: &mut Conn<'_>) -> Result<()> {
        let counts: Vec<(Bucket, i64)> = self.counts.into_iter().collect();
        if let Conn::Postgres(c) = conn {
            return postgres::write(
                c,
                &self.requests,
                &self.inputs,
                &counts,
                &self.audit,
                self.head,
                &self.taken,
            )
            .await;
        }
        for chunk in self.requests.chunks(CHUNK) {
            insert_requests(conn, chunk).await?;
        }
        for chunk in counts.chunks(CHUNK) {
            add_counts(conn, chunk).await?;
        }
        super::inputs::insert(conn, &self.inputs).await?;
        for chunk in self.audit.chunks(CHUNK) {
            insert_audit(conn, chunk).await?;
        }
        if let Some((seq, hash)) = &self.head {
            super::audit::set_head(conn, *seq, hash).await?;
        }
        // Reservations are rows only on PostgreSQL.
        debug_assert!(self.taken.is_empty());
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

/// On PostgreSQL the whole batch is one statement: each table's rows bound as arrays
/// (`UNNEST`) in a data-modifying `WITH` clause each, with the head update and the taking of
/// the reservation rows. The statement text does not depend on the number of rows, so it is
/// prepared once per connection instead of parsed and planned for every batch with hundreds
/// of parameters, and it is one round trip while the chain head lock is held, not five.
mod postgres {
    use sqlx::PgConnection;

    use super::{AuditRow, Bucket, PolicyInputRow, Result, SignRequestRow, conflict_or};

    const BATCH: &str = "WITH \
        requests AS (INSERT INTO sign_requests (id, key_id, issuer, subject, operation, status, \
            intent, decision, idempotency_key, body_hash, response, error_code, error_message, \
            created_at, created_unix) \
            SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
            $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::BYTEA[], $11::TEXT[], \
            $12::TEXT[], $13::TEXT[], $14::TEXT[], $15::BIGINT[])), \
        counts AS (INSERT INTO usage_counters (scope, metric, span, bucket, count) \
            SELECT * FROM UNNEST($16::TEXT[], $17::TEXT[], $18::BIGINT[], $19::BIGINT[], \
            $20::BIGINT[]) \
            ON CONFLICT (scope, metric, span, bucket) \
            DO UPDATE SET count = usage_counters.count + excluded.count), \
        records AS (INSERT INTO audit_log (seq, ts, action, outcome, actor_issuer, \
            actor_subject, key_id, request_id, details, prev_hash, hash, node_id) \
            SELECT * FROM UNNEST($21::BIGINT[], $22::TEXT[], $23::TEXT[], $24::TEXT[], \
            $25::TEXT[], $26::TEXT[], $27::TEXT[], $28::TEXT[], $29::TEXT[], $30::BYTEA[], \
            $31::BYTEA[], $32::TEXT[])), \
        head AS (UPDATE audit_head SET seq = $33, hash = $34 WHERE id = 1 AND $35), \
        taken AS (DELETE FROM usage_reservations WHERE id = ANY($36)), \
        inputs AS (INSERT INTO policy_inputs (request_id, key_id, operation, created_unix, \
            request, decision, reason) \
            SELECT * FROM UNNEST($37::TEXT[], $38::TEXT[], $39::TEXT[], $40::BIGINT[], \
            $41::TEXT[], $42::TEXT[], $43::TEXT[]) \
            ON CONFLICT (request_id) DO NOTHING) \
        SELECT 1";

    pub(super) async fn write(
        conn: &mut PgConnection,
        requests: &[&SignRequestRow],
        inputs: &[&PolicyInputRow],
        counts: &[(Bucket, i64)],
        audit: &[AuditRow],
        head: Option<(i64, Vec<u8>)>,
        taken: &[i64],
    ) -> Result<()> {
        let r = requests;
        let (head_seq, head_hash, set_head) = match head {
            Some((seq, hash)) => (seq, hash, true),
            None => (0, Vec::new(), false),
        };
        sqlx::query(BATCH)
            .bind(column(r, |r| r.id.as_str()))
            .bind(column(r, |r| r.key_id.as_str()))
            .bind(column(r, |r| r.issuer.as_str()))
            .bind(column(r, |r| r.subject.as_str()))
            .bind(column(r, |r| r.operation.as_str()))
            .bind(column(r, |r| r.status.as_str()))
            .bind(column(r, |r| r.intent.as_str()))
            .bind(column(r, |r| r.decision.as_str()))
            .bind(column(r, |r| r.idempotency_key.as_deref()))
            .bind(column(r, |r| r.body_hash.as_deref()))
            .bind(column(r, |r| r.response.as_deref()))
            .bind(column(r, |r| r.error_code.as_deref()))
            .bind(column(r, |r| r.error_message.as_deref()))
            .bind(column(r, |r| r.created_at.as_str()))
            .bind(column(r, |r| r.created_unix))
            .bind(column(counts, |((scope, _, _, _), _)| scope.as_str()))
            .bind(column(counts, |((_, metric, _, _), _)| metric.as_str()))
            .bind(column(counts, |((_, _, span, _), _)| *span))
            .bind(column(counts, |((_, _, _, bucket), _)| *bucket))
            .bind(column(counts, |(_, n)| *n))
            .bind(column(audit, |a| a.seq))
            .bind(column(audit, |a| a.ts.as_str()))
            .bind(column(audit, |a| a.action.as_str()))
            .bind(column(audit, |a| a.outcome.as_str()))
            .bind(column(audit, |a| a.actor_issuer.as_str()))
            .bind(column(audit, |a| a.actor_subject.as_str()))
            .bind(column(audit, |a| a.key_id.as_deref()))
            .bind(column(audit, |a| a.request_id.as_deref()))
            .bind(column(audit, |a| a.details.as_str()))
            .bind(column(audit, |a| a.prev_hash.as_slice()))
            .bind(column(audit, |a| a.hash.as_slice()))
            .bind(column(audit, |a| a.node_id.as_deref()))
            .bind(head_seq)
            .bind(head_hash)
            .bind(set_head)
            .bind(taken)
            .bind(column(inputs, |i| i.request_id.as_str()))
            .bind(column(inputs, |i| i.key_id.as_str()))
            .bind(column(inputs, |i| i.operation.as_str()))
            .bind(column(inputs, |i| i.created_unix))
            .bind(column(inputs, |i| &*i.request))
            .bind(column(inputs, |i| i.decision.as_str()))
            .bind(column(inputs, |i| i.reason.as_deref()))
            .execute(conn)
            .await
            .map_err(|e| conflict_or(e, || "idempotency key already used".into()))?;
        Ok(())
    }

    fn column<'a, R, T>(rows: &'a [R], f: impl Fn(&'a R) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
}

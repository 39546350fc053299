//! Usage counters: how much a key or a principal signed recently, for the policy host context.
//!
//! Every signed request adds to a minute bucket and an hour bucket of its key and of its
//! principal, inside the audit writer's transaction (see `requests::insert`), so reading the
//! context costs a bounded range scan (at most 61 minute rows and 25 hour rows per scope and
//! metric) however large the audit log grows. Windows are conservative: "last hour" is the
//! current minute and the 60 before it, "last day" the current hour and the 24 before it, so a
//! limit is never under-counted.
//!
//! Other modules add their own metrics (for example the value an Ethereum key sent) with
//! [`StateChange::AddUsage`](super::StateChange::AddUsage) in the same append as the request.

use std::collections::BTreeMap;

use super::db::{Conn, DbRow, on_conn, on_pool};
use ruint::aliases::U256;

use super::batch::DeferredWrites;
use super::{Result, Store, StoreError};

/// Minute buckets (the last-hour window).
pub(crate) const MINUTE: i64 = 60;
/// Hour buckets (the last-day window).
pub(crate) const HOUR: i64 = 3600;
/// Buckets older than this are pruned.
const KEEP_SECONDS: i64 = 2 * 86_400;

/// The metric every signed request adds one to.
pub const SIGNATURES: &str = "signatures";

/// The counter scope of a key.
pub fn key_scope(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// The counter scope of a principal (issuer and subject).
pub fn principal_scope(issuer: &str, subject: &str) -> String {
    format!("principal:{issuer}\n{subject}")
}

/// One addition to a counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    /// Whose usage: [`key_scope`] or [`principal_scope`].
    pub scope: String,
    /// What is counted, e.g. `signatures` or `ethereum:native`.
    pub metric: String,
    /// When (Unix seconds).
    pub at_unix: i64,
    /// How many events to add (usually 1).
    pub count: u64,
    /// The value to add to the amount.
    pub amount: U256,
}

/// A metric's totals over the two windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageWindow {
    /// Events in the last hour.
    pub count_hour: u64,
    /// Events in the last day.
    pub count_day: u64,
    /// Amount in the last hour.
    pub amount_hour: U256,
    /// Amount in the last day.
    pub amount_day: U256,
}

impl UsageWindow {
    /// Adds `other` (e.g. what requests in flight reserved), saturating.
    pub fn add(&mut self, other: &UsageWindow) {
        self.count_hour = self.count_hour.saturating_add(other.count_hour);
        self.count_day = self.count_day.saturating_add(other.count_day);
        self.amount_hour = self.amount_hour.saturating_add(other.amount_hour);
        self.amount_day = self.amount_day.saturating_add(other.amount_day);
    }
}

/// Adds `delta` to its minute and hour buckets. Runs inside the writer's transaction, which
/// serialises all writers, so the read-modify-write of the amount cannot lose an update.
pub(crate) async fn add(conn: &mut Conn<'_>, delta: &UsageDelta) -> Result<()> {
    if delta.amount.is_zero() {
        let mut writes = DeferredWrites::default();
        writes.usage_count(delta)?;
        return writes.write(conn).await;
    }
    on_conn!(conn, |conn| {
        let count = i64::try_from(delta.count)
            .map_err(|_| StoreError::Corrupt("usage count out of range".into()))?;
        for span in [MINUTE, HOUR] {
            let bucket = delta.at_unix.div_euclid(span);
            let amount = if delta.amount.is_zero() {
                None
            } else {
                let old: Option<String> = sqlx::query(
                    "SELECT amount FROM usage_counters \
                 WHERE scope = $1 AND metric = $2 AND span = $3 AND bucket = $4",
                )
                .bind(&delta.scope)
                .bind(&delta.metric)
                .bind(span)
                .bind(bucket)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
                let old = old
                    .as_deref()
                    .map(parse_amount)
                    .transpose()?
                    .unwrap_or_default();
                Some(old.saturating_add(delta.amount).to_string())
            };
            sqlx::query(
                "INSERT INTO usage_counters (scope, metric, span, bucket, count, amount) \
             VALUES ($1, $2, $3, $4, $5, COALESCE($6, '0')) \
             ON CONFLICT (scope, metric, span, bucket) DO UPDATE SET \
             count = usage_counters.count + excluded.count, \
             amount = COALESCE($7, usage_counters.amount)",
            )
            .bind(&delta.scope)
            .bind(&delta.metric)
            .bind(span)
            .bind(bucket)
            .bind(count)
            .bind(&amount)
            .bind(&amount)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    })
}

/// Counters read in one SQL statement (one snapshot), with the `seq` of the audit head in that
/// snapshot (0 before the first record): the usage of every record up to `head` is in `value`,
/// and none after it (see `store::pending`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot<T> {
    /// What was read.
    pub value: T,
    /// The audit head's `seq` in the same snapshot.
    pub head: i64,
}

/// The end of the range of metrics starting with `prefix`: a prefix match as a range, so the
/// primary key serves it (metrics are ASCII names).
pub(super) fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// The first minute bucket of the hour window and the first hour bucket of the day window
/// ending at `now` (Unix seconds).
pub(super) fn window_starts(now: i64) -> (i64, i64) {
    (now.div_euclid(MINUTE) - 60, now.div_euclid(HOUR) - 24)
}

pub(super) fn parse_amount(s: &str) -> Result<U256> {
    s.parse::<U256>()
        .map_err(|_| StoreError::Corrupt(format!("usage amount {s:?} is not a number")))
}

impl Store {
    /// Totals of every metric of `scope` starting with `metric_prefix`, over the windows
    /// ending at `now` (Unix seconds). Metrics without recent usage are absent.
    pub async fn usage(
        &self,
        scope: &str,
        metric_prefix: &str,
        now: i64,
    ) -> Result<BTreeMap<String, UsageWindow>> {
        Ok(self.usage_snapshot(scope, metric_prefix, now).await?.value)
    }

    /// Like [`usage`](Self::usage), with the audit head of the snapshot it was read from.
    pub async fn usage_snapshot(
        &self,
        scope: &str,
        metric_prefix: &str,
        now: i64,
    ) -> Result<Snapshot<BTreeMap<String, UsageWindow>>> {
        on_pool!(self.pool(), |pool| {
            let (minute_from, hour_from) = window_starts(now);
            let upper = prefix_end(metric_prefix);
            let rows = sqlx::query(
                "SELECT metric, span, count, amount FROM usage_counters \
             WHERE scope = $1 AND metric >= $2 AND metric < $3 \
             AND ((span = 60 AND bucket >= $4) OR (span = 3600 AND bucket >= $5)) \
             UNION ALL SELECT NULL, NULL, seq, NULL FROM audit_head WHERE id = 1",
            )
            .bind(scope)
            .bind(metric_prefix)
            .bind(&upper)
            .bind(minute_from)
            .bind(hour_from)
            .fetch_all(pool)
            .await?;
            let mut out = Snapshot::<BTreeMap<String, UsageWindow>>::default();
            for row in rows {
                let count: i64 = row.try_get(2)?;
                let Some(metric) = row.try_get::<Option<String>, _>(0)? else {
                    out.head = count;
                    continue;
                };
                let span: i64 = row.try_get(1)?;
                let count = count.max(0) as u64;
                let amount = parse_amount(&row.try_get::<String, _>(3)?)?;
                let w = out.value.entry(metric).or_default();
                if span == MINUTE {
                    w.count_hour += count;
                    w.amount_hour = w.amount_hour.saturating_add(amount);
                } else {
                    w.count_day += count;
                    w.amount_day = w.amount_day.saturating_add(amount);
                }
            }
            Ok(out)
        })
    }

    /// One metric's totals (zero when unused).
    pub async fn usage_of(&self, scope: &str, metric: &str, now: i64) -> Result<UsageWindow> {
        Ok(self
            .usage(scope, metric, now)
            .await?
            .remove(metric)
            .unwrap_or_default())
    }

    /// The event counts (not amounts) of one metric for two scopes, in one query, with the
    /// audit head of the snapshot they were read from.
    pub async fn usage_counts(
        &self,
        scopes: [&str; 2],
        metric: &str,
        now: i64,
    ) -> Result<Snapshot<[UsageWindow; 2]>> {
        on_pool!(self.pool(), |pool| {
            let (minute_from, hour_from) = window_starts(now);
            let rows = sqlx::query(
                "SELECT scope, span, CAST(SUM(count) AS BIGINT) FROM usage_counters \
             WHERE scope IN ($1, $2) AND metric = $3 \
             AND ((span = 60 AND bucket >= $4) OR (span = 3600 AND bucket >= $5)) \
             GROUP BY scope, span \
             UNION ALL SELECT NULL, NULL, seq FROM audit_head WHERE id = 1",
            )
            .bind(scopes[0])
            .bind(scopes[1])
            .bind(metric)
            .bind(minute_from)
            .bind(hour_from)
            .fetch_all(pool)
            .await?;
            let mut out = Snapshot::<[UsageWindow; 2]>::default();
            for row in rows {
                let count: i64 = row.try_get(2)?;
                let Some(scope) = row.try_get::<Option<String>, _>(0)? else {
                    out.head = count;
                    continue;
                };
                let span: i64 = row.try_get(1)?;
                let count = count.max(0) as u64;
                for (i, _) in scopes.iter().enumerate().filter(|(_, s)| **s == scope) {
                    if span == MINUTE {
                        out.value[i].count_hour = count;
                    } else {
                        out.value[i].count_day = count;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Deletes buckets no window can reach any more; returns how many.
    pub async fn prune_usage(&self, now: i64) -> Result<u64> {
        on_pool!(self.pool(), |pool| {
            let done = sqlx::query(
            "DELETE FROM usage_counters WHERE (span = 60 AND bucket < $1) OR (span = 3600 AND bucket < $2)",
        )
        .bind((now - KEEP_SECONDS).div_euclid(MINUTE))
        .bind((now - KEEP_SECONDS).div_euclid(HOUR))
        .execute(pool)
        .await?;
            Ok(done.rows_affected())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SignRequestRow, SignStatus, requests};

    const NOW: i64 = 1_800_000_000;

    async fn store() -> (tempfile::TempDir, Store) {
        let (dir, store) = crate::store::scratch::store().await;
        (dir, store)
    }

    async fn add_at(store: &Store, scope: &str, metric: &str, at: i64, amount: U256) {
        let mut conn = store.pool().acquire().await.expect("conn");
        let delta = UsageDelta {
            scope: scope.into(),
            metric: metric.into(),
            at_unix: at,
            count: 1,
            amount,
        };
        add(&mut conn.conn(), &delta).await.expect("add");
    }

    #[tokio::test]
    async fn windows_count_what_is_recent_and_sum_large_amounts() {
        let (_dir, store) = store().await;
        let big = U256::from(u128::MAX);
        // Now, 59 minutes ago (both windows), 2 hours ago (day only), 26 hours ago (neither).
        for at in [NOW, NOW - 59 * 60, NOW - 2 * 3600, NOW - 26 * 3600] {
            add_at(&store, "key:k", "eth:native", at, big).await;
        }
        add_at(&store, "key:k", "eth:erc20:0xabc", NOW, U256::from(7u8)).await;
        add_at(&store, "key:other", "eth:native", NOW, U256::from(1u8)).await;

        let all = store.usage("key:k", "eth:", NOW).await.expect("usage");
        assert_eq!(all.len(), 2);
        let native = all["eth:native"];
        assert_eq!((native.count_hour, native.count_day), (2, 3));
        assert_eq!(native.amount_hour, big * U256::from(2u8));
        assert_eq!(native.amount_day, big * U256::from(3u8));
        assert_eq!(all["eth:erc20:0xabc"].amount_day, U256::from(7u8));

        let none = store
            .usage_of("key:k", "missing", NOW)
            .await
            .expect("usage");
        assert_eq!(none, UsageWindow::default());
    }

    #[tokio::test]
    async fn signed_requests_count_for_key_and_principal_and_refusals_do_not() {
        let (_dir, store) = store().await;
        let mut conn = store.pool().acquire().await.expect("conn");
        crate::store::scratch::insert_key(&store, "k1", "[]").await;
        for (i, status) in [SignStatus::Signed, SignStatus::Denied, SignStatus::Signed]
            .into_iter()
            .enumerate()
        {
            let row = SignRequestRow {
                id: format!("r{i}"),
                key_id: "k1".into(),
                issuer: "iss".into(),
                subject: "alice".into(),
                operation: "raw.sign".into(),
                status,
                intent: "{}".into(),
                decision: "{}".into(),
                idempotency_key: None,
                body_hash: None,
                response: None,
                error_code: None,
                error_message: None,
                created_at: "t".into(),
                created_unix: NOW - 10,
            };
            requests::insert(&mut conn.conn(), &row)
                .await
                .expect("insert");
        }
        drop(conn);
        let ctx = store
            .signature_context("k1", "iss", "alice", NOW)
            .await
            .expect("context")
            .value;
        assert_eq!(ctx.key_signatures_last_hour, 2);
        assert_eq!(ctx.key_signatures_last_day, 2);
        assert_eq!(ctx.principal_signatures_last_hour, 2);
        assert_eq!(ctx.principal_signatures_last_day, 2);
        let other = store
            .signature_context("k1", "iss", "bob", NOW)
            .await
            .expect("context")
            .value;
        assert_eq!(other.principal_signatures_last_day, 0);
        // An hour and a half later only the day window still sees them.
        let later = store
            .signature_context("k1", "iss", "alice", NOW + 5400)
            .await
            .expect("context")
            .value;
        assert_eq!(
            (
                later.key_signatures_last_hour,
                later.key_signatures_last_day
            ),
            (0, 2)
        );
    }

    #[tokio::test]
    async fn pruning_drops_only_unreachable_buckets() {
        let (_dir, store) = store().await;
        add_at(&store, "key:k", SIGNATURES, NOW - 3 * 86_400, U256::ZERO).await;
        add_at(&store, "key:k", SIGNATURES, NOW - 3600, U256::ZERO).await;
        // Two buckets (minute and hour) per old event.
        assert_eq!(store.prune_usage(NOW).await.expect("prune"), 2);
        let w = store
            .usage_of("key:k", SIGNATURES, NOW)
            .await
            .expect("usage");
        assert_eq!(w.count_day, 1);
    }

    #[tokio::test]
    async fn counters_come_with_the_audit_head_of_their_snapshot() {
        let (_dir, store) = store().await;
        let before = store
            .usage_counts(["key:k", "principal:p"], SIGNATURES, NOW)
            .await
            .expect("counts");
        assert_eq!(before.head, 0, "no record yet");
        add_at(&store, "key:k", SIGNATURES, NOW - 10, U256::ZERO).await;
        add_at(&store, "key:k", "eth:1:native", NOW - 10, U256::from(3)).await;
        let mut conn = store.pool().acquire().await.expect("conn");
        crate::store::audit::set_head(&mut conn.conn(), 42, &[0; 32])
            .await
            .expect("head");
        drop(conn);
        let counts = store
            .usage_counts(["key:k", "principal:p"], SIGNATURES, NOW)
            .await
            .expect("counts");
        assert_eq!((counts.head, counts.value[0].count_hour), (42, 1));
        let spend = store
            .usage_snapshot("key:k", "eth:", NOW)
            .await
            .expect("usage");
        assert_eq!(spend.head, 42);
        assert_eq!(spend.value["eth:1:native"].amount_day, U256::from(3));
        assert_eq!(spend.value.len(), 1, "the head row is not a metric");
    }
}

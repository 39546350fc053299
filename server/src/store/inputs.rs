//! The kept policy inputs of past sign requests: what a key's policies judged each request
//! with (the sign request as policies see it, host context included) and the verdict they
//! reached, so that a draft policy can be replayed against real history
//! (`POST /v1/policies/{id}/replay`, `keyward policy replay`).
//!
//! A row is written by the audit writer in the same transaction as the request's outcome, so
//! a kept input always belongs to a recorded request. Rows are pruned by age and by count
//! (`policy.replay_retention_days`, `policy.replay_max_inputs`); pruning is housekeeping, not
//! a state change, and is not audited.

use super::db::{Conn, DbRow, on_conn, on_pool};
use super::{Result, Store};

/// One kept policy input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInputRow {
    /// The sign request's id.
    pub request_id: String,
    /// Key id.
    pub key_id: String,
    /// The route, e.g. `raw.sign`.
    pub operation: String,
    /// When it was judged (Unix seconds; the request's `unix_time`).
    pub created_unix: i64,
    /// The `SignRequest` JSON exactly as the key's policies were given it (shared with the
    /// verdict that carried it, not copied).
    pub request: std::sync::Arc<str>,
    /// The combined verdict then: `allow`, `deny` or `require_approval`.
    pub decision: String,
    /// The verdict's reason, if any.
    pub reason: Option<String>,
}

/// Which kept inputs to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputFilter {
    /// Only this key's requests.
    pub key_id: Option<String>,
    /// Only this operation's requests.
    pub operation: Option<String>,
    /// Judged at or after (Unix seconds).
    pub since_unix: Option<i64>,
    /// Judged before (Unix seconds).
    pub until_unix: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

fn from_row(row: &impl DbRow) -> Result<PolicyInputRow> {
    Ok(PolicyInputRow {
        request_id: row.try_get("request_id")?,
        key_id: row.try_get("key_id")?,
        operation: row.try_get("operation")?,
        created_unix: row.try_get("created_unix")?,
        request: row.try_get::<String, _>("request")?.into(),
        decision: row.try_get("decision")?,
        reason: row.try_get("reason")?,
    })
}

/// Rows a statement carries at most (7 values each).
const CHUNK: usize = 400;

/// Inserts kept inputs; an input already kept for the same request is left as it is (a
/// request refused where its signature was to land is recorded a second time, as failed).
pub(crate) async fn insert(conn: &mut Conn<'_>, rows: &[&PolicyInputRow]) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        on_conn!(conn, |conn| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO policy_inputs (request_id, key_id, operation, created_unix, \
                 request, decision, reason) ",
            );
            q.push_values(chunk, |mut b, row| {
                b.push_bind(&row.request_id)
                    .push_bind(&row.key_id)
                    .push_bind(&row.operation)
                    .push_bind(row.created_unix)
                    .push_bind(&*row.request)
                    .push_bind(&row.decision)
                    .push_bind(&row.reason);
            });
            q.push(" ON CONFLICT (request_id) DO NOTHING");
            q.build().persistent(false).execute(&mut *conn).await?;
            Ok::<_, super::StoreError>(())
        })?;
    }
    Ok(())
}

impl Store {
    /// Kept inputs matching `filter`, newest first.
    pub async fn policy_inputs(&self, filter: &InputFilter) -> Result<Vec<PolicyInputRow>> {
        on_pool!(self.pool(), |pool| {
            let mut q = sqlx::QueryBuilder::new("SELECT * FROM policy_inputs WHERE TRUE");
            if let Some(key) = &filter.key_id {
                q.push(" AND key_id = ").push_bind(key);
            }
            if let Some(operation) = &filter.operation {
                q.push(" AND operation = ").push_bind(operation);
            }
            if let Some(since) = filter.since_unix {
                q.push(" AND created_unix >= ").push_bind(since);
            }
            if let Some(until) = filter.until_unix {
                q.push(" AND created_unix < ").push_bind(until);
            }
            q.push(" ORDER BY created_unix DESC, request_id DESC LIMIT ")
                .push_bind(i64::from(filter.limit));
            let rows = q.build().fetch_all(pool).await?;
            rows.iter().map(from_row).collect()
        })
    }

    /// Drops kept inputs judged before `before_unix`, and the oldest beyond the newest `keep`.
    /// Returns how many went.
    pub async fn prune_policy_inputs(&self, before_unix: i64, keep: u64) -> Result<u64> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        on_pool!(self.pool(), |pool| {
            let old = sqlx::query("DELETE FROM policy_inputs WHERE created_unix < $1")
                .bind(before_unix)
                .execute(pool)
                .await?
                .rows_affected();
            // The time of the `keep`-th newest row: everything older goes.
            let cut: Option<i64> = sqlx::query_scalar(
                "SELECT created_unix FROM policy_inputs ORDER BY created_unix DESC \
                 LIMIT 1 OFFSET $1",
            )
            .bind(keep)
            .fetch_optional(pool)
            .await?;
            let over = match cut {
                Some(cut) => sqlx::query("DELETE FROM policy_inputs WHERE created_unix <= $1")
                    .bind(cut)
                    .execute(pool)
                    .await?
                    .rows_affected(),
                None => 0,
            };
            Ok(old + over)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, key: &str, at: i64) -> PolicyInputRow {
        PolicyInputRow {
            request_id: id.into(),
            key_id: key.into(),
            operation: "raw.sign".into(),
            created_unix: at,
            request: format!("{{\"request_id\":\"{id}\"}}").into(),
            decision: "allow".into(),
            reason: None,
        }
    }

    async fn kept(store: &Store, filter: InputFilter) -> Vec<String> {
        let rows = store.policy_inputs(&filter).await.expect("read");
        rows.into_iter().map(|r| r.request_id).collect()
    }

    #[tokio::test]
    async fn inputs_are_read_newest_first_by_filter_and_pruned_by_age_and_count() {
        let (_dir, store) = crate::store::scratch::store().await;
        let rows = [
            row("r1", "k1", 100),
            row("r2", "k2", 200),
            row("r3", "k1", 300),
            row("r4", "k1", 400),
        ];
        let mut conn = store.pool().acquire().await.expect("conn");
        insert(&mut conn.conn(), &rows.iter().collect::<Vec<_>>())
            .await
            .expect("insert");
        // Kept once: a second record of the same request does not replace the first.
        let mut again = row("r1", "k1", 100);
        again.decision = "deny".into();
        insert(&mut conn.conn(), &[&again])
            .await
            .expect("insert again");
        drop(conn);
        let all = InputFilter {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(kept(&store, all.clone()).await, ["r4", "r3", "r2", "r1"]);
        let first = store.policy_inputs(&all).await.expect("read");
        assert_eq!(first[3].decision, "allow");
        let k1 = InputFilter {
            key_id: Some("k1".into()),
            since_unix: Some(300),
            ..all.clone()
        };
        assert_eq!(kept(&store, k1).await, ["r4", "r3"]);
        let window = InputFilter {
            since_unix: Some(100),
            until_unix: Some(300),
            limit: 1,
            ..all.clone()
        };
        assert_eq!(kept(&store, window).await, ["r2"]);

        assert_eq!(store.prune_policy_inputs(150, 100).await.expect("prune"), 1);
        assert_eq!(kept(&store, all.clone()).await, ["r4", "r3", "r2"]);
        assert_eq!(store.prune_policy_inputs(0, 2).await.expect("prune"), 1);
        assert_eq!(kept(&store, all).await, ["r4", "r3"]);
    }
}

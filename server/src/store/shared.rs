//! Usage on its way, shared by every node of one PostgreSQL database (the counterpart of
//! `pending`, which keeps it in one process).
//!
//! A request inserts its reservation rows into `usage_reservations` (committed at once), then
//! reads the other requests' rows, then the counters. The audit writer deletes the rows in the
//! transaction that adds the usage to the counters, so a signature is either a row or in the
//! counters at any instant. The reader takes the rows before the counters: a commit between
//! the two reads is counted twice (the reader errs towards a denial), never not at all. Of two
//! requests racing for the last unit of a limit, the later to insert sees the earlier's row, so
//! at most one of them gets it, whichever node each runs on.
//!
//! A request that is denied, fails or waits for approval deletes its rows before it answers
//! (one that fails on the way, when it is dropped, in the background). The
//! rows of a node that died stop counting after [`RESERVATION_TTL`] seconds (longer than any
//! request is in flight) and are removed by the pruning every node runs (an idempotent delete).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{PgPool, QueryBuilder};

use super::db::{Conn, DbRow, Pool};
use super::pending::{InFlight, Reservation};
use super::usage::UsageDelta;
use super::{Result, Store, StoreError};

/// Seconds after which a reservation no longer counts (and may be pruned).
pub const RESERVATION_TTL: i64 = 300;

/// A request's reservation rows.
#[derive(Debug)]
pub struct SharedReservation {
    ids: Vec<i64>,
    pool: PgPool,
    /// Set once the rows were deleted by a committed transaction.
    taken: Arc<AtomicBool>,
}

impl SharedReservation {
    /// The row ids.
    pub(crate) fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// The rows were deleted by the transaction that recorded the usage, which committed.
    pub(crate) fn taken(&self) {
        self.taken.store(true, Ordering::SeqCst);
    }

    /// Deletes the rows now, for a request that ends without a signature: once its answer
    /// is out, the caller's next request finds nothing of it counted.
    pub(crate) async fn release(&mut self) {
        if self.ids.is_empty() || self.taken.load(Ordering::SeqCst) {
            return;
        }
        let ids = std::mem::take(&mut self.ids);
        give_back(&self.pool, &ids).await;
    }
}

/// Deletes reservation rows by id, outside any transaction of the writer.
const DELETE_ROWS: &str = "DELETE FROM usage_reservations WHERE id = ANY($1)";

async fn give_back(pool: &PgPool, ids: &[i64]) {
    if let Err(e) = sqlx::query(DELETE_ROWS).bind(ids).execute(pool).await {
        tracing::warn!(error = %e, "a usage reservation could not be given back; it expires");
    }
}

impl Drop for SharedReservation {
    /// A reservation dropped without `release` (a request that failed on the way) is given
    /// back in the background.
    fn drop(&mut self) {
        if self.ids.is_empty() || self.taken.load(Ordering::SeqCst) {
            return;
        }
        let (pool, ids) = (self.pool.clone(), std::mem::take(&mut self.ids));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move { give_back(&pool, &ids).await });
    }
}

impl Store {
    /// Takes what others reserved in `scopes` and reserves `own`: in this process on SQLite,
    /// in the database on PostgreSQL. Call it *before* reading the counters.
    pub async fn reserve_usage(
        &self,
        scopes: &[&str],
        own: Vec<UsageDelta>,
        now: i64,
    ) -> Result<(InFlight, Reservation)> {
        let Pool::Postgres(pool) = self.pool() else {
            return Ok(self.pending_usage().reserve(scopes, own));
        };
        let mut ids: Vec<i64> = Vec::new();
        if !own.is_empty() {
            let mut q = QueryBuilder::new(
                "INSERT INTO usage_reservations (node_id, scope, metric, count, amount, created_unix) ",
            );
            let mut rows = Vec::with_capacity(own.len());
            for d in &own {
                let count = i64::try_from(d.count)
                    .map_err(|_| StoreError::Corrupt("usage count out of range".into()))?;
                rows.push((d, count, d.amount.to_string()));
            }
            q.push_values(&rows, |mut b, (d, count, amount)| {
                b.push_bind(self.node_id())
                    .push_bind(&d.scope)
                    .push_bind(&d.metric)
                    .push_bind(*count)
                    .push_bind(amount)
                    .push_bind(now);
            });
            q.push(" RETURNING id");
            ids = q
                .build_query_scalar::<i64>()
                .persistent(false)
                .fetch_all(pool)
                .await?;
        }
        let reservation = Reservation::from_shared(SharedReservation {
            ids,
            pool: pool.clone(),
            taken: Default::default(),
        });
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let rows = sqlx::query(
            "SELECT scope, metric, count, amount FROM usage_reservations \
             WHERE scope = ANY($1) AND created_unix >= $2 AND NOT (id = ANY($3))",
        )
        .bind(&scopes)
        .bind(now - RESERVATION_TTL)
        .bind(
            reservation
                .shared()
                .map(|r| r.ids.clone())
                .unwrap_or_default(),
        )
        .fetch_all(pool)
        .await?;
        let mut others = Vec::with_capacity(rows.len());
        for row in rows {
            let count: i64 = row.try_get(2)?;
            let amount: String = row.try_get(3)?;
            others.push(UsageDelta {
                scope: row.try_get(0)?,
                metric: row.try_get(1)?,
                at_unix: now,
                count: count.max(0) as u64,
                amount: super::usage::parse_amount(&amount)?,
            });
        }
        Ok((InFlight::of_rows(others), reservation))
    }

    /// Removes the reservations that expired (every node may run it at any time).
    pub async fn prune_reservations(&self, now: i64) -> Result<u64> {
        let Pool::Postgres(pool) = self.pool() else {
            return Ok(0);
        };
        let done = sqlx::query("DELETE FROM usage_reservations WHERE created_unix < $1")
            .bind(now - RESERVATION_TTL)
            .execute(pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Deletes the reservation rows `ids` inside the transaction that records their usage.
pub(crate) async fn take(conn: &mut Conn<'_>, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    if let Conn::Postgres(c) = conn {
        sqlx::query(DELETE_ROWS).bind(ids).execute(&mut **c).await?;
    }
    Ok(())
}

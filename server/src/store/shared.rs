//! Usage on its way, shared by every node of one PostgreSQL database (the counterpart of
//! `pending`, which keeps it in one process).
//!
//! A request inserts its reservation rows into `usage_reservations` (committed at once), then
//! reads the other requests' rows and the counters in one snapshot (a node groups these steps
//! of its requests in flight, see `usage_read`). The audit writer deletes the rows in the
//! transaction that adds the usage to the counters, so a signature is either a row or in the
//! counters at any instant, and a reader counts it exactly once. Of two requests racing for the
//! last unit of a limit, the later to insert sees the earlier's row, so at most one of them
//! gets it, whichever node each runs on.
//!
//! A request that is denied, fails or waits for approval deletes its rows before it answers
//! (one that fails on the way, when it is dropped, in the background). The
//! rows of a node that died stop counting after [`RESERVATION_TTL`] seconds (longer than any
//! request is in flight) and are removed by the pruning every node runs (an idempotent delete).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ruint::aliases::U256;
use sqlx::PgPool;

use super::db::{Conn, Pool};
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
    /// The reservation of the rows `ids`, given back through `pool` unless taken.
    pub(super) fn new(ids: Vec<i64>, pool: PgPool) -> Self {
        SharedReservation {
            ids,
            pool,
            taken: Default::default(),
        }
    }

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
        if let Some(ids) = self.untaken_rows() {
            give_back(&self.pool, &ids).await;
        }
    }

    /// The rows still to be given back (none once given back or taken), at most once.
    fn untaken_rows(&mut self) -> Option<Vec<i64>> {
        if self.ids.is_empty() || self.taken.load(Ordering::SeqCst) {
            return None;
        }
        Some(std::mem::take(&mut self.ids))
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
        let Some(ids) = self.untaken_rows() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move { give_back(&pool, &ids).await });
    }
}

impl Store {
    /// Vacuums the reservations table (PostgreSQL; nothing on SQLite). Every sign request
    /// inserts and deletes rows there, and a reader of a scope walks every dead row version
    /// still in the table's indexes; autovacuum visits a table at most once per
    /// `autovacuum_naptime` (a minute by default), by which time tens of thousands of dead
    /// versions slow every read. Run every second by each node (`SKIP_LOCKED`: a node that
    /// finds another node's vacuum running skips its turn). `TRUNCATE false` (and the table's
    /// `vacuum_truncate = false`): cutting off the table's empty last pages needs its exclusive
    /// lock, which stalls every sign request while the vacuum waits for and holds it.
    pub async fn vacuum_reservations(&self) -> Result<()> {
        let Pool::Postgres(pool) = self.pool() else {
            return Ok(());
        };
        sqlx::raw_sql("VACUUM (SKIP_LOCKED, TRUNCATE false) usage_reservations")
            .execute(pool)
            .await?;
        Ok(())
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

/// Reads a sum of reserved amounts: a decimal integer, saturated at the largest amount a
/// counter holds (a sum of amounts that each fit may not).
pub(super) fn sum_of_amounts(sum: &str) -> Result<U256> {
    if sum.is_empty() {
        return Err(StoreError::Corrupt(
            "an empty sum of reserved amounts".into(),
        ));
    }
    match super::usage::parse_amount(sum) {
        Ok(amount) => Ok(amount),
        Err(_) if sum.bytes().all(|b| b.is_ascii_digit()) => Ok(U256::MAX),
        Err(e) => Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Dialect;

    #[test]
    fn a_sum_beyond_the_largest_amount_saturates_and_garbage_is_refused() {
        assert_eq!(sum_of_amounts("12").unwrap(), U256::from(12));
        let beyond = format!("{}0", U256::MAX);
        assert_eq!(sum_of_amounts(&beyond).unwrap(), U256::MAX);
        for bad in ["", "1.5", "-3", "x"] {
            assert!(sum_of_amounts(bad).is_err(), "{bad}");
        }
    }

    /// On PostgreSQL: a reader gets the other requests' reservations summed per scope and
    /// metric (amounts beyond 2^256 saturated), never its own, and no longer those given back.
    #[tokio::test]
    async fn a_reader_gets_the_others_summed_and_not_its_own() {
        use crate::store::usage::UsageDelta;
        use crate::store::usage_read::UsageAsk;
        let (_dir, store) = crate::store::scratch::store().await;
        if store.dialect() != Dialect::Postgres {
            return;
        }
        let now = 1_800_000_000;
        let d = |metric: &str, count: u64, amount: U256| UsageDelta {
            scope: "key:k".into(),
            metric: metric.into(),
            at_unix: now,
            count,
            amount,
        };
        let reserve = |own: Vec<UsageDelta>| {
            store.read_usage(UsageAsk {
                key_scope: "key:k".into(),
                principal_scope: "principal:p".into(),
                own,
                spend_prefix: None,
                now,
            })
        };
        let a = reserve(vec![d("m1", 1, U256::from(5)), d("m2", 1, U256::MAX)])
            .await
            .unwrap()
            .reservation;
        let _b = reserve(vec![d("m1", 2, U256::from(7)), d("m2", 1, U256::from(1))])
            .await
            .unwrap()
            .reservation;
        let third = reserve(vec![d("m1", 40, U256::from(100))]).await.unwrap();
        let m1 = third.in_flight.window("key:k", "m1", 0);
        assert_eq!((m1.count_hour, m1.amount_hour), (3, U256::from(12)));
        let m2 = third.in_flight.window("key:k", "m2", 0);
        assert_eq!((m2.count_hour, m2.amount_hour), (2, U256::MAX));
        a.release().await;
        let seen = reserve(Vec::new()).await.unwrap().in_flight;
        let m1 = seen.window("key:k", "m1", 0);
        // `_b` and the third reservation are still held.
        assert_eq!((m1.count_hour, m1.amount_hour), (42, U256::from(107)));
    }
}

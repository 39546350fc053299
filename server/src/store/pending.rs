//! Usage on its way: what requests that passed the policy stage will add to the usage
//! counters if they are signed, held in memory until their outcome is recorded.
//!
//! Without this, N parallel requests all read the counters before any of them is recorded,
//! and a policy limiting a key to L signatures (or a spend amount) lets all N through. With it,
//! each request's context is the recorded usage *plus every reservation in flight*, and the
//! request reserves its own share in the same step, so N parallel requests against a limit L
//! are judged one after the other as far as the limit is concerned.
//!
//! Each signature must be seen exactly once: as a reservation, or in the counters. No lock
//! orders readers with commits; the audit chain's head does:
//! 1. a reader first takes the reservations in flight and adds its own, in one step under a
//!    mutex ([`reserve`](PendingUsage::reserve));
//! 2. then it reads the counters, and in the same SQL statement the audit head's `seq` (one
//!    statement is one snapshot);
//! 3. the audit writer marks each reservation with the `seq` of the record that carries its
//!    usage *before* it commits the batch, and removes the reservation after the commit;
//! 4. the reader counts a reservation unless it is marked with a `seq` its snapshot already
//!    holds ([`InFlight::window`] with that head).
//!
//! A reservation removed before step 1 was committed before step 2 began, so the counters hold
//! it; one taken in step 1 is counted by its mark, which is set before any snapshot can hold
//! its record. A request that is denied, fails or waits for approval drops its reservation
//! when it ends (`Reservation` gives it back on drop). These reservations live in this process,
//! which is exact with one database per process (SQLite). On PostgreSQL, where several nodes
//! share the counters, they live in the database instead (see `shared`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::usage::{UsageDelta, UsageWindow};

/// `Entry::recorded_at` of a reservation whose record is not (yet) on its way to a commit.
const NOT_RECORDED: i64 = 0;

/// One request's reservation.
#[derive(Debug)]
struct Entry {
    id: u64,
    deltas: Vec<UsageDelta>,
    /// The `seq` of the audit record that carries this usage, set by the writer before the
    /// commit; [`NOT_RECORDED`] until then.
    recorded_at: AtomicI64,
}

impl Entry {
    /// Whether a snapshot of the counters taken with the audit head at `head` lacks this usage.
    fn pending_at(&self, head: i64) -> bool {
        let at = self.recorded_at.load(Ordering::SeqCst);
        at == NOT_RECORDED || at > head
    }
}

/// The reservations of requests in flight, by scope.
#[derive(Debug, Default)]
pub struct PendingUsage {
    next_id: AtomicU64,
    held: Mutex<HashMap<String, HashMap<u64, Arc<Entry>>>>,
}

/// A request's share of the usage counters, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// In this process (SQLite).
    Memory {
        owner: Arc<PendingUsage>,
        entry: Arc<Entry>,
    },
    /// Rows of `usage_reservations` (PostgreSQL).
    Shared(super::shared::SharedReservation),
}

impl Reservation {
    /// Marks this usage as carried by the audit record `seq` (the writer calls this before it
    /// commits the record's batch).
    pub(crate) fn recorded_at(&self, seq: i64) {
        if let Kind::Memory { entry, .. } = &self.kind {
            entry.recorded_at.store(seq, Ordering::SeqCst);
        }
    }

    /// The rows of a reservation kept in the database, which the transaction that records
    /// its usage deletes.
    pub(crate) fn shared(&self) -> Option<&super::shared::SharedReservation> {
        match &self.kind {
            Kind::Shared(r) => Some(r),
            Kind::Memory { .. } => None,
        }
    }

    /// Gives the reservation back now, for a request that ends without a signature (on
    /// PostgreSQL a round trip: awaited, so that the answer leaves after it).
    pub async fn release(mut self) {
        if let Kind::Shared(r) = &mut self.kind {
            r.release().await;
        }
    }

    pub(super) fn from_shared(r: super::shared::SharedReservation) -> Self {
        Reservation {
            kind: Kind::Shared(r),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let Kind::Memory { owner, entry } = &self.kind else {
            return;
        };
        let mut held = owner.lock();
        for d in &entry.deltas {
            if let Some(of_scope) = held.get_mut(&d.scope) {
                of_scope.remove(&entry.id);
                if of_scope.is_empty() {
                    held.remove(&d.scope);
                }
            }
        }
    }
}

/// What others had reserved in some scopes when a reservation was taken.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    entries: Vec<Arc<Entry>>,
}

impl InFlight {
    /// Reservations read from the database: each counted whatever the snapshot (see `shared`).
    pub(super) fn of_rows(deltas: Vec<UsageDelta>) -> Self {
        InFlight {
            entries: deltas
                .into_iter()
                .enumerate()
                .map(|(i, d)| {
                    Arc::new(Entry {
                        id: i as u64,
                        deltas: vec![d],
                        recorded_at: AtomicI64::new(NOT_RECORDED),
                    })
                })
                .collect(),
        }
    }

    /// The reserved usage of one metric that a snapshot of the counters with the audit head at
    /// `head` does not hold, counted in both windows (it is happening now).
    pub fn window(&self, scope: &str, metric: &str, head: i64) -> UsageWindow {
        let mut w = UsageWindow::default();
        for e in self.entries.iter().filter(|e| e.pending_at(head)) {
            for d in e
                .deltas
                .iter()
                .filter(|d| d.scope == scope && d.metric == metric)
            {
                w.count_hour = w.count_hour.saturating_add(d.count);
                w.amount_hour = w.amount_hour.saturating_add(d.amount);
            }
        }
        w.count_day = w.count_hour;
        w.amount_day = w.amount_hour;
        w
    }

    /// Like [`window`](Self::window), for every reserved metric of `scope` starting with
    /// `prefix`.
    pub fn with_prefix(
        &self,
        scope: &str,
        prefix: &str,
        head: i64,
    ) -> BTreeMap<String, UsageWindow> {
        let mut metrics: Vec<&str> = self
            .entries
            .iter()
            .flat_map(|e| &e.deltas)
            .filter(|d| d.scope == scope && d.metric.starts_with(prefix))
            .map(|d| d.metric.as_str())
            .collect();
        metrics.sort_unstable();
        metrics.dedup();
        metrics
            .into_iter()
            .map(|m| (m.to_string(), self.window(scope, m, head)))
            .filter(|(_, w)| w.count_hour > 0 || !w.amount_hour.is_zero())
            .collect()
    }
}

impl PendingUsage {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<u64, Arc<Entry>>>> {
        // A panic while holding this lock cannot leave a half-made change: every change is
        // one map operation.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what others reserved in `scopes` and reserves `own`, in one step. Call it
    /// *before* reading the counters (see the module's documentation).
    pub fn reserve(
        self: &Arc<Self>,
        scopes: &[&str],
        own: Vec<UsageDelta>,
    ) -> (InFlight, Reservation) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry {
            id,
            deltas: own,
            recorded_at: AtomicI64::new(NOT_RECORDED),
        });
        let mut held = self.lock();
        // A reservation in several of `scopes` is taken once (sorted by id, then deduplicated:
        // this runs under the mutex on every request, so no pairwise search).
        let mut entries: Vec<Arc<Entry>> = scopes
            .iter()
            .filter_map(|scope| held.get(*scope))
            .flat_map(|of_scope| of_scope.values().cloned())
            .collect();
        entries.sort_unstable_by_key(|e| e.id);
        entries.dedup_by_key(|e| e.id);
        for d in &entry.deltas {
            held.entry(d.scope.clone())
                .or_default()
                .insert(id, entry.clone());
        }
        drop(held);
        (
            InFlight { entries },
            Reservation {
                kind: Kind::Memory {
                    owner: self.clone(),
                    entry,
                },
            },
        )
    }

    /// How many scopes have reservations (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is reserved.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruint::aliases::U256;

    fn delta(scope: &str, metric: &str, amount: u64) -> UsageDelta {
        UsageDelta {
            scope: scope.into(),
            metric: metric.into(),
            at_unix: 0,
            count: 1,
            amount: U256::from(amount),
        }
    }

    #[test]
    fn each_request_sees_the_others_and_gives_its_share_back() {
        let pending = Arc::new(PendingUsage::default());
        let (seen_a, a) = pending.reserve(&["key:k"], vec![delta("key:k", "signatures", 0)]);
        assert_eq!(seen_a.window("key:k", "signatures", 0).count_hour, 0);
        let (seen_b, b) = pending.reserve(&["key:k"], vec![delta("key:k", "signatures", 0)]);
        assert_eq!(seen_b.window("key:k", "signatures", 0).count_hour, 1);
        let (seen_c, c) = pending.reserve(
            &["key:k"],
            vec![
                delta("key:k", "eth:1:native", 5),
                delta("key:k", "signatures", 0),
            ],
        );
        assert_eq!(seen_c.window("key:k", "signatures", 0).count_day, 2);
        assert!(seen_c.with_prefix("key:k", "eth:", 0).is_empty());
        let (seen_d, d) = pending.reserve(&["key:k"], Vec::new());
        assert_eq!(
            seen_d.with_prefix("key:k", "eth:", 0)["eth:1:native"].amount_hour,
            U256::from(5)
        );
        // Another scope is not visible.
        let (seen_other, _) = pending.reserve(&["key:other"], Vec::new());
        assert_eq!(seen_other.window("key:k", "signatures", 0).count_hour, 0);
        drop((a, b, d));
        let (seen, _) = pending.reserve(&["key:k"], Vec::new());
        assert_eq!(seen.window("key:k", "signatures", 0).count_hour, 1);
        drop(c);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_reservation_in_both_scopes_a_reader_asks_for_is_counted_once() {
        let pending = Arc::new(PendingUsage::default());
        let (_, _a) = pending.reserve(
            &["key:k", "principal:p"],
            vec![
                delta("key:k", "signatures", 0),
                delta("principal:p", "signatures", 0),
            ],
        );
        let (seen, _b) = pending.reserve(&["key:k", "principal:p"], Vec::new());
        assert_eq!(seen.window("key:k", "signatures", 0).count_hour, 1);
        assert_eq!(seen.window("principal:p", "signatures", 0).count_hour, 1);
    }

    #[test]
    fn a_reservation_is_not_counted_by_a_snapshot_that_holds_its_record() {
        let pending = Arc::new(PendingUsage::default());
        let (_, a) = pending.reserve(
            &["key:k"],
            vec![
                delta("key:k", "signatures", 0),
                delta("key:k", "eth:1:native", 7),
            ],
        );
        let (seen, _b) = pending.reserve(&["key:k"], Vec::new());
        // Marked after it was taken: the mark is read when the snapshot's head is known.
        a.recorded_at(5);
        for (head, count, amount) in [(0, 1, 7), (4, 1, 7), (5, 0, 0), (9, 0, 0)] {
            assert_eq!(seen.window("key:k", "signatures", head).count_hour, count);
            let spend = seen.with_prefix("key:k", "eth:", head);
            assert_eq!(
                spend.get("eth:1:native").map(|w| w.amount_day),
                (amount > 0).then(|| U256::from(amount)),
                "head {head}"
            );
        }
        // Removed after its commit: a later reader sees it only in the counters.
        drop(a);
        let (later, _) = pending.reserve(&["key:k"], Vec::new());
        assert_eq!(later.window("key:k", "signatures", 0).count_hour, 0);
    }

    /// What a reader counts for a signature committed at any point between its reservation and
    /// its read of the counters: exactly one.
    #[tokio::test]
    async fn a_commit_between_reserving_and_reading_is_counted_once() {
        use crate::store::usage::{self, SIGNATURES};
        let (_dir, store) = crate::store::scratch::store().await;
        let pending = store.pending_usage().clone();
        let now = 1_700_000_000;
        let seen_by = |in_flight: &InFlight, read: &usage::Snapshot<[UsageWindow; 2]>| {
            read.value[0].count_hour + in_flight.window("key:k", SIGNATURES, read.head).count_hour
        };
        let read = || store.usage_counts(["key:k", "principal:p"], SIGNATURES, now);

        // The writer's job: reserved, then recorded as record 1.
        let (_, job) = pending.reserve(&["key:k"], vec![delta("key:k", SIGNATURES, 0)]);
        // Readers reserve before the commit ...
        let (early, _r1) = pending.reserve(&["key:k"], Vec::new());
        let before_commit = read().await.expect("read");
        // ... the writer marks, writes and commits ...
        job.recorded_at(1);
        let mut tx = store.pool().begin().await.expect("tx");
        let mut d = delta("key:k", SIGNATURES, 0);
        d.at_unix = now;
        usage::add(&mut tx.conn(), &d).await.expect("usage");
        crate::store::audit::set_head(&mut tx.conn(), 1, &[0; 32])
            .await
            .expect("head");
        tx.commit().await.expect("commit");
        // ... a reader that reserved before the commit reads after it ...
        let after_commit = read().await.expect("read");
        assert_eq!(seen_by(&early, &before_commit), 1, "read before the commit");
        assert_eq!(seen_by(&early, &after_commit), 1, "read after the commit");
        // ... and one that reserves once the writer gave the reservation back.
        drop(job);
        let (late, _r2) = pending.reserve(&["key:k"], Vec::new());
        assert_eq!(seen_by(&late, &read().await.expect("read")), 1);
    }
}

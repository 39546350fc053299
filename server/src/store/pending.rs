//! Usage on its way: what requests that passed the policy stage will add to the usage
//! counters if they are signed, held in memory until their outcome is recorded.
//!
//! Without this, N parallel requests all read the counters before any of them is recorded,
//! and a policy limiting a key to L signatures (or a spend amount) lets all N through. With it,
//! each request's context is the recorded usage *plus every reservation in flight*, and the
//! request reserves its own share in the same step, so N parallel requests against a limit L
//! are judged one after the other as far as the limit is concerned.
//!
//! The counters and the reservations change together, never one without the other:
//! - a reader holds the [`read`](PendingUsage::read) lock while it reads the counters, takes
//!   the reservations and adds its own;
//! - the audit writer holds the [`commit`](PendingUsage::commit) lock while it commits a batch
//!   (which adds the batch's usage to the counters) and drops the batch's reservations.
//!
//! So a reader sees a signature either as a reservation or in the counters, exactly once. A
//! request that is denied, fails or waits for approval drops its reservation when it ends
//! (`Reservation` gives it back on drop). The reservations live in this process: with one
//! database per process (SQLite) they are exact; several nodes on one database need the same
//! step in the database.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use ruint::aliases::U256;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::usage::{UsageDelta, UsageWindow};

#[derive(Debug, Default, Clone, Copy)]
struct Held {
    count: u64,
    amount: U256,
}

/// The reservations of requests in flight, and the lock that orders them with commits.
#[derive(Debug, Default)]
pub struct PendingUsage {
    order: RwLock<()>,
    held: Mutex<HashMap<(String, String), Held>>,
}

/// A request's share of the usage counters, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    owner: Arc<PendingUsage>,
    deltas: Vec<UsageDelta>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = self.owner.lock();
        for d in &self.deltas {
            let k = (d.scope.clone(), d.metric.clone());
            if let Some(h) = held.get_mut(&k) {
                h.count = h.count.saturating_sub(d.count);
                h.amount = h.amount.saturating_sub(d.amount);
                if h.count == 0 && h.amount.is_zero() {
                    held.remove(&k);
                }
            }
        }
    }
}

/// What was reserved by others, per scope and metric, when a reservation was taken.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    entries: BTreeMap<(String, String), Held>,
}

impl InFlight {
    /// The reserved usage of one metric, counted in both windows (it is happening now).
    pub fn window(&self, scope: &str, metric: &str) -> UsageWindow {
        let h = self
            .entries
            .get(&(scope.to_string(), metric.to_string()))
            .copied()
            .unwrap_or_default();
        UsageWindow {
            count_hour: h.count,
            count_day: h.count,
            amount_hour: h.amount,
            amount_day: h.amount,
        }
    }

    /// Every reserved metric of `scope` starting with `prefix`.
    pub fn with_prefix(&self, scope: &str, prefix: &str) -> BTreeMap<String, UsageWindow> {
        self.entries
            .keys()
            .filter(|(s, m)| s == scope && m.starts_with(prefix))
            .map(|(s, m)| (m.clone(), self.window(s, m)))
            .collect()
    }
}

impl PendingUsage {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Held>> {
        // A panic while holding this lock cannot leave a half-made change: every change is
        // one map operation.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Held while the usage counters are read for a request's context.
    pub async fn read(&self) -> RwLockReadGuard<'_, ()> {
        self.order.read().await
    }

    /// Held by the audit writer across a commit and the release of the batch's reservations.
    pub async fn commit(&self) -> RwLockWriteGuard<'_, ()> {
        self.order.write().await
    }

    /// Takes what others reserved in `scopes` and reserves `own`, in one step. Call it while
    /// holding [`read`](Self::read), after reading the counters.
    pub fn reserve(
        self: &Arc<Self>,
        scopes: &[&str],
        own: Vec<UsageDelta>,
    ) -> (InFlight, Reservation) {
        let mut held = self.lock();
        let entries = held
            .iter()
            .filter(|((scope, _), _)| scopes.contains(&scope.as_str()))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for d in &own {
            let h = held.entry((d.scope.clone(), d.metric.clone())).or_default();
            h.count = h.count.saturating_add(d.count);
            h.amount = h.amount.saturating_add(d.amount);
        }
        drop(held);
        (
            InFlight { entries },
            Reservation {
                owner: self.clone(),
                deltas: own,
            },
        )
    }

    /// How many (scope, metric) pairs have reservations (for tests and metrics).
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
        assert_eq!(seen_a.window("key:k", "signatures").count_hour, 0);
        let (seen_b, b) = pending.reserve(&["key:k"], vec![delta("key:k", "signatures", 0)]);
        assert_eq!(seen_b.window("key:k", "signatures").count_hour, 1);
        let (seen_c, c) = pending.reserve(
            &["key:k"],
            vec![
                delta("key:k", "eth:1:native", 5),
                delta("key:k", "signatures", 0),
            ],
        );
        assert_eq!(seen_c.window("key:k", "signatures").count_day, 2);
        assert!(seen_c.with_prefix("key:k", "eth:").is_empty());
        let (seen_d, d) = pending.reserve(&["key:k"], Vec::new());
        assert_eq!(
            seen_d.with_prefix("key:k", "eth:")["eth:1:native"].amount_hour,
            U256::from(5)
        );
        // Another scope is not visible.
        let (seen_other, _) = pending.reserve(&["key:other"], Vec::new());
        assert_eq!(seen_other.window("key:k", "signatures").count_hour, 0);
        drop((a, b, d));
        let (seen, _) = pending.reserve(&["key:k"], Vec::new());
        assert_eq!(seen.window("key:k", "signatures").count_hour, 1);
        drop(c);
        assert!(pending.is_empty());
    }
}

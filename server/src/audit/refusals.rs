//! Refused attempts in the audit log, rate-limited.
//!
//! A caller refused before the policy stage (an invalid token, a missing role, not among a
//! key's signers, the wrong purpose, a disabled key, a replay after the caller lost the right)
//! leaves a record, so that failed attempts can be reviewed. A flood must not grow the log
//! without bound: per caller and reason, at most [`PER_WINDOW`] records are written in each
//! [`WINDOW_SECONDS`]-second window; the refusals past that are counted, and the first record
//! of a later window carries that count as `suppressed`. The limiter itself is bounded: it
//! forgets windows that are over, and it tracks at most [`MAX_TRACKED`] callers at once (past
//! that, new callers share one bucket, so a flood of invented identities still writes at most
//! `PER_WINDOW` records a window).

use std::collections::HashMap;
use std::sync::Mutex;

/// Records per caller and reason in one window.
pub const PER_WINDOW: u32 = 5;
/// Window length.
pub const WINDOW_SECONDS: i64 = 60;
/// Most (caller, reason) pairs tracked at once.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    window: i64,
    written: u32,
    suppressed: u64,
}

/// Decides which refusals are written.
#[derive(Debug, Default)]
pub struct RefusalLimiter {
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl RefusalLimiter {
    /// Whether a refusal of `caller` for `reason` at `now` (Unix seconds) is written. `Some(n)`:
    /// write it, noting `n` refusals suppressed before it; `None`: count it and write nothing.
    pub fn admit(&self, caller: &str, reason: &str, now: i64) -> Option<u64> {
        let window = now.div_euclid(WINDOW_SECONDS);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| b.window == window);
        }
        let key = if buckets.len() >= MAX_TRACKED
            && !buckets.contains_key(&(caller.to_string(), reason.to_string()))
        {
            ("*".to_string(), reason.to_string())
        } else {
            (caller.to_string(), reason.to_string())
        };
        let b = buckets.entry(key).or_insert(Bucket {
            window,
            written: 0,
            suppressed: 0,
        });
        if b.window != window {
            b.window = window;
            b.written = 0;
        }
        if b.written < PER_WINDOW {
            b.written += 1;
            Some(std::mem::take(&mut b.suppressed))
        } else {
            b.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_a_few_records_and_counts_the_rest() {
        let limiter = RefusalLimiter::default();
        let now = 1_800_000_000;
        let written: Vec<Option<u64>> = (0..20).map(|_| limiter.admit("a", "x", now)).collect();
        assert_eq!(written.iter().flatten().count(), PER_WINDOW as usize);
        assert!(written[..PER_WINDOW as usize].iter().all(|w| *w == Some(0)));
        // Another reason and another caller have their own budget.
        assert_eq!(limiter.admit("a", "y", now), Some(0));
        assert_eq!(limiter.admit("b", "x", now), Some(0));
        // The next window says how many were suppressed.
        assert_eq!(limiter.admit("a", "x", now + WINDOW_SECONDS), Some(15));
        assert_eq!(limiter.admit("a", "x", now + WINDOW_SECONDS), Some(0));
    }

    #[test]
    fn invented_identities_share_one_budget() {
        let limiter = RefusalLimiter::default();
        let now = 1_800_000_000;
        for i in 0..MAX_TRACKED {
            limiter.admit(&format!("c{i}"), "x", now);
        }
        let extra = (0..100)
            .filter(|i| limiter.admit(&format!("new{i}"), "x", now).is_some())
            .count();
        assert_eq!(extra, PER_WINDOW as usize);
    }
}

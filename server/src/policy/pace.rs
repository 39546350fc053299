//! Where a policy's evaluations run: on the blocking pool until the policy has proved fast,
//! inline after (see `Pace`), judged by the CPU time of the evaluating thread.

use std::time::Duration;

/// Whether a policy's evaluations are short enough to run on an async worker.
///
/// A hand-off to the blocking pool costs more than a short evaluation, but an evaluation may
/// run up to the policy's deadline, and one that runs long on an async worker delays every
/// request served by that worker. So a policy runs on the blocking pool for its first
/// `PROVEN_RUNS` evaluations, and inline from then on while every evaluation stays under
/// `FAST_MICROS`; the first evaluation that does not sends it back to the blocking pool for
/// good (for the life of the process). An inline evaluation keeps every limit (fuel, epoch
/// deadline, memory) and its slot of the pooling allocator.
///
/// What is measured is the CPU time of the evaluating thread, not wall time: under load a
/// short evaluation whose thread is preempted takes milliseconds of wall time, and would
/// send a fast policy to the blocking pool for good exactly when hand-offs cost the most.
#[derive(Debug, Default)]
pub struct Pace {
    fast_runs: std::sync::atomic::AtomicU32,
    slow: std::sync::atomic::AtomicBool,
}

impl Pace {
    /// Evaluations that must stay under `FAST` before a policy runs inline.
    pub const PROVEN_RUNS: u32 = 16;
    /// The longest evaluation (CPU time) of a policy that runs inline, microseconds.
    pub const FAST_MICROS: u64 = 1_000;

    /// Whether the policy may run inline.
    pub fn inline(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        !self.slow.load(Relaxed) && self.fast_runs.load(Relaxed) >= Self::PROVEN_RUNS
    }

    /// Records one evaluation that took `micros` of CPU time; `true` when this evaluation is
    /// the one that sends the policy to the blocking pool for good.
    pub fn observe(&self, micros: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if micros > Self::FAST_MICROS {
            return !self.slow.swap(true, Relaxed);
        } else if self.fast_runs.load(Relaxed) < Self::PROVEN_RUNS {
            self.fast_runs.fetch_add(1, Relaxed);
        }
        false
    }
}

/// CPU time the calling thread has used.
pub(super) fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_runs_inline_only_after_proving_fast_and_never_after_one_slow_run() {
        let pace = Pace::default();
        for _ in 0..Pace::PROVEN_RUNS - 1 {
            pace.observe(20);
            assert!(!pace.inline());
        }
        assert!(!pace.observe(Pace::FAST_MICROS));
        assert!(pace.inline());
        assert!(
            pace.observe(Pace::FAST_MICROS + 1),
            "the run that turns it slow says so"
        );
        assert!(!pace.inline());
        assert!(!pace.observe(Pace::FAST_MICROS + 1), "only once");
        for _ in 0..100 {
            pace.observe(1);
        }
        assert!(
            !pace.inline(),
            "one slow evaluation keeps it on the blocking pool"
        );
    }
}

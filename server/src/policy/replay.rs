//! Replaying a policy against history: evaluates one policy, with given settings, on the kept
//! inputs of past sign requests (see `store::inputs`) and compares what it decides with the
//! verdict those requests got, so an author sees what binding it would change before binding
//! it. Used by `POST /v1/policies/{id}/replay` and `keyward policy replay`.
//!
//! A replay only evaluates: it signs nothing and changes nothing stored. Each evaluation runs
//! under the policy's own limits in a fresh instance, as at signing time; the whole replay
//! stops at a wall-clock budget and says so.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{CompiledPolicy, PolicyEngine, input_document};
use crate::store::inputs::PolicyInputRow;

/// Requests one replay evaluates at most.
pub const MAX_REQUESTS: u32 = 1000;

/// How long one replay may evaluate before it stops and reports what it reached.
pub const BUDGET: Duration = Duration::from_secs(20);

/// How many requests got each decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DecisionCounts {
    /// Allowed.
    pub allow: u32,
    /// Denied.
    pub deny: u32,
    /// Sent to approvers.
    pub require_approval: u32,
}

impl DecisionCounts {
    fn add(&mut self, decision: &str) {
        match decision {
            "allow" => self.allow += 1,
            "require_approval" => self.require_approval += 1,
            _ => self.deny += 1,
        }
    }
}

/// A past request the replayed policy decides differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedRequest {
    /// The sign request's id.
    pub request_id: String,
    /// Key id.
    pub key_id: String,
    /// The route it came through.
    pub operation: String,
    /// When it was judged (Unix seconds).
    pub unix_time: i64,
    /// The verdict it got then.
    pub before: String,
    /// That verdict's reason.
    pub before_reason: Option<String>,
    /// What the replayed policy decides.
    pub after: String,
    /// The replayed policy's reason.
    pub after_reason: Option<String>,
    /// When the evaluation failed, what happened (the decision is then a deny).
    pub failure: Option<String>,
    /// Fuel the evaluation consumed.
    pub fuel: u64,
    /// Lines the policy logged while deciding it.
    pub logs: Vec<String>,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Requests evaluated.
    pub evaluated: u32,
    /// Whether every request read was evaluated (`false`: the time budget ran out first).
    pub complete: bool,
    /// The verdicts the evaluated requests got then.
    pub before: DecisionCounts,
    /// What the replayed policy decides for them.
    pub after: DecisionCounts,
    /// Every evaluated request whose decision would change, newest first.
    pub changed: Vec<ChangedRequest>,
    /// Fuel of all evaluations.
    pub fuel_total: u64,
    /// Fuel of the most expensive evaluation.
    pub fuel_max: u64,
}

/// Evaluates `policy` with `settings` on each of `rows` (newest first) until `budget` is
/// spent. Blocking: call it on the blocking pool.
pub fn replay(
    engine: &PolicyEngine,
    policy: &CompiledPolicy,
    settings: &serde_json::Value,
    rows: &[PolicyInputRow],
    budget: Duration,
) -> ReplayReport {
    let started = Instant::now();
    let mut report = ReplayReport {
        complete: true,
        ..Default::default()
    };
    for row in rows {
        if started.elapsed() >= budget {
            report.complete = false;
            break;
        }
        let eval = engine.evaluate(policy, &input_document(&row.request, settings));
        report.evaluated += 1;
        report.fuel_total = report.fuel_total.saturating_add(eval.fuel);
        report.fuel_max = report.fuel_max.max(eval.fuel);
        report.before.add(&row.decision);
        let after = eval.decision.name();
        report.after.add(after);
        if after != row.decision {
            report.changed.push(ChangedRequest {
                request_id: row.request_id.clone(),
                key_id: row.key_id.clone(),
                operation: row.operation.clone(),
                unix_time: row.created_unix,
                before: row.decision.clone(),
                before_reason: row.reason.clone(),
                after: after.to_string(),
                after_reason: eval.decision.reason().map(str::to_string),
                failure: eval.failure.map(|f| f.detail()),
                fuel: eval.fuel,
                logs: eval.logs,
            });
        }
    }
    report
}

//! The policy stage of the signing path.
//!
//! `PolicyStage::evaluate` is the single place where a sign request is judged. It takes the
//! same `keyward_policy::SignRequest` every policy will see and returns a `Verdict`: the
//! combined decision and a trace of how it was reached. With no policy bound to a key, the
//! configured default decision applies (`deny` unless an operator chose otherwise).
//!
//! It must never turn an error into an allow: anything it cannot evaluate is a deny.

use keyward_policy::{Decision, SignRequest};
use serde::{Deserialize, Serialize};

use crate::config::DefaultDecision;
use crate::keys::KeyMeta;

/// How a verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictSource {
    /// No policy is bound; the configured default applied.
    Default,
    /// The bound policies decided.
    Policies,
}

/// One policy's part in a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEntry {
    /// Policy name.
    pub policy: String,
    /// SHA-256 of the module, hex.
    pub digest: String,
    /// `allow`, `deny` or `require_approval`.
    pub decision: String,
    /// The policy's reason, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Fuel consumed.
    pub fuel: u64,
    /// Wall time, microseconds.
    pub micros: u64,
}

/// The combined decision and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The combined decision.
    pub decision: Decision,
    /// Where it came from.
    pub source: VerdictSource,
    /// Each evaluated policy, in binding order.
    pub trace: Vec<TraceEntry>,
}

/// The policy stage.
#[derive(Debug, Clone)]
pub struct PolicyStage {
    default_decision: DefaultDecision,
}

impl PolicyStage {
    /// A stage applying `default_decision` to keys with no bound policy.
    pub fn new(default_decision: DefaultDecision) -> Self {
        PolicyStage { default_decision }
    }

    /// Judges `request` for `key`.
    pub async fn evaluate(&self, _key: &KeyMeta, _request: &SignRequest) -> Verdict {
        let decision = match self.default_decision {
            DefaultDecision::Allow => Decision::Allow,
            DefaultDecision::Deny => Decision::deny(
                "no policy is bound to this key and the server's default decision is deny",
            ),
        };
        Verdict {
            decision,
            source: VerdictSource::Default,
            trace: Vec::new(),
        }
    }
}

//! The policy stage of the signing path, and the WebAssembly host that runs policies.
//!
//! `PolicyStage::evaluate` is the single place where a sign request is judged. It takes the
//! same `keyward_policy::SignRequest` every policy will see, adds the host-computed context,
//! runs the policies bound to the key in binding order and returns a `Verdict`: the combined
//! decision and a trace of how it was reached. With no policy bound to a key, the configured
//! default decision applies (`deny` unless an operator chose otherwise).
//!
//! Parts:
//! - `limits`: the sandbox limits (server defaults and maxima, and what a policy asks for).
//! - `abi`: the host side of ABI v1 (host functions, memory cap, export checks, output parsing).
//! - `engine`: wasmtime (compile once into an `InstancePre`, fresh instance per evaluation).
//! - `registry`: compiled modules and key bindings, cached in memory and invalidated on change.
//! - `builtin`: the built-in `allow-all` module that `keyward dev` binds to new keys.
//! - `signature`: signed modules (`policy.trusted_signers`).
//! - `replay`: one policy on the kept inputs of past sign requests, compared with their verdicts.
//! - `author`: `keyward policy new` (scaffold a crate) and `keyward policy test` (run a module).
//!
//! It must never turn an error into an allow: anything it cannot evaluate is a deny.

pub mod abi;
pub mod author;
pub mod builtin;
pub mod engine;
pub mod limits;
mod pace;
pub mod registry;
pub mod replay;
pub mod signature;

use keyward_policy::{Decision, SignRequest};
use serde::{Deserialize, Serialize};

use crate::audit::AuditError;
use crate::keys::KeyMeta;
use crate::store::{Store, StoreError};
pub use engine::{CompiledPolicy, Evaluation, PolicyEngine};
pub use limits::{LimitsConfig, PolicyLimits, RequestedLimits};
pub use registry::{BoundPolicy, LoadedPolicy, PolicyRegistry};

use crate::store::pending::Reservation;

/// Errors of the policy layer.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The module is larger than the server accepts.
    #[error(
        "the module is {size} bytes; this server accepts at most {max} (policy.max_module_bytes)"
    )]
    TooLarge {
        /// Module size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The module is not an acceptable ABI v1 policy.
    #[error("{0}")]
    InvalidModule(String),
    /// The request is invalid (names, limits, settings).
    #[error("{0}")]
    Invalid(String),
    /// No such policy or key.
    #[error("{0}")]
    NotFound(String),
    /// The policy is bound to keys.
    #[error("{0}")]
    InUse(String),
    /// The module's signature was refused (`policy.trusted_signers`).
    #[error("{context}{refusal}")]
    Signature {
        /// Which policy, when it is a stored one (a binding), with a separator.
        context: String,
        /// Why.
        refusal: signature::SignatureRefusal,
    },
    /// The engine failed.
    #[error("policy engine: {0}")]
    Engine(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

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
    /// The policy's reason, if any (for failures: `policy_out_of_fuel`, `policy_timeout`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Fuel consumed.
    pub fuel: u64,
    /// Wall time, microseconds.
    pub micros: u64,
    /// Lines the policy logged (shown by dry runs; never stored or sent with a signature).
    #[serde(skip)]
    pub logs: Vec<String>,
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
    /// For a require-approval decision: each asking policy's requirement, kept apart (the
    /// request is approved only when every one is met on its own). `decision` carries the
    /// summary (largest quorum, union of roles, shortest TTL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<crate::store::approvals::Requirement>,
    /// The key's policies version the verdict was reached under (`None` when the bindings
    /// could not be read); the audit writer refuses the signature if it changed since.
    #[serde(skip)]
    pub policies_version: Option<i64>,
    /// The request exactly as the bound policies were given it (`SignRequest` JSON, host
    /// context included), when they ran and inputs are kept for replays (see
    /// `store::inputs`); recorded with the request's outcome.
    #[serde(skip)]
    pub input: Option<std::sync::Arc<str>>,
}

/// The decision applied when no policy is bound to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DefaultDecision {
    /// Sign.
    Allow,
    /// Refuse.
    #[default]
    Deny,
}

/// The policy stage.
#[derive(Clone)]
pub struct PolicyStage {
    default_decision: DefaultDecision,
    registry: PolicyRegistry,
    store: Store,
    bind_on_create: Vec<String>,
    keep_inputs: bool,
    trusted_signers: signature::TrustedSigners,
}

impl std::fmt::Debug for PolicyStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStage")
            .field("default_decision", &self.default_decision)
            .finish_non_exhaustive()
    }
}

impl PolicyStage {
    /// A stage applying `default_decision` to keys with no bound policy.
    pub fn new(default_decision: DefaultDecision, registry: PolicyRegistry, store: Store) -> Self {
        PolicyStage {
            default_decision,
            registry,
            store,
            bind_on_create: Vec::new(),
            keep_inputs: true,
            trusted_signers: Default::default(),
        }
    }

    /// The keys whose signature a module needs to be uploaded or bound
    /// (`policy.trusted_signers`; none by default).
    pub fn with_trusted_signers(mut self, signers: signature::TrustedSigners) -> Self {
        self.trusted_signers = signers;
        self
    }

    /// The keys a module's signature must verify with (empty: none needed).
    pub fn trusted_signers(&self) -> &signature::TrustedSigners {
        &self.trusted_signers
    }

    /// Whether verdicts carry the policies' input for the audit writer to keep for replays
    /// (on unless `policy.replay_retention_days` is 0).
    pub fn with_kept_inputs(mut self, keep: bool) -> Self {
        self.keep_inputs = keep;
        self
    }

    /// Binds the policies `policy_ids` to every new key (`policy.bind_on_create`).
    pub fn with_bind_on_create(mut self, policy_ids: Vec<String>) -> Self {
        self.bind_on_create = policy_ids;
        self
    }

    /// The bindings a new key gets, as a change to apply with its creation (none unless
    /// `policy.bind_on_create` is set, as `keyward dev` does).
    pub fn bindings_for_new_key(
        &self,
        key_id: &str,
        by: &str,
        at: &str,
    ) -> Vec<crate::store::StateChange> {
        if self.bind_on_create.is_empty() {
            return Vec::new();
        }
        let bindings = self
            .bind_on_create
            .iter()
            .enumerate()
            .map(|(i, policy_id)| crate::store::BindingRow {
                key_id: key_id.to_string(),
                position: i as i64,
                policy_id: policy_id.clone(),
                settings: "null".into(),
                bound_at: at.to_string(),
                bound_by: by.to_string(),
            })
            .collect();
        vec![crate::store::StateChange::SetKeyPolicies {
            key_id: key_id.to_string(),
            bindings,
        }]
    }

    /// Compiled modules and bindings.
    pub fn registry(&self) -> &PolicyRegistry {
        &self.registry
    }

    /// The engine.
    pub fn engine(&self) -> &PolicyEngine {
        self.registry.engine()
    }

    /// Judges `request` for `key`: the bound policies in order, combined per DESIGN.md (any
    /// deny wins at once; else every require-approval is kept as its own requirement; else
    /// allow).
    pub async fn evaluate(&self, key: &KeyMeta, request: &SignRequest) -> Verdict {
        self.evaluate_reserving(key, request, Vec::new()).await.0
    }

    /// Like `evaluate`, and reserves `usage` (what the request adds to the usage counters if it
    /// is signed; see `store::pending`) in the same step that reads the counters for the
    /// context, so parallel requests see each other. The reservation is given back when it is
    /// dropped, or when the audit writer records the signature it was handed with.
    pub async fn evaluate_reserving(
        &self,
        key: &KeyMeta,
        request: &SignRequest,
        usage: Vec<crate::store::usage::UsageDelta>,
    ) -> (Verdict, Option<Reservation>) {
        let deny = |reason: &str| Verdict {
            decision: Decision::deny(reason),
            source: VerdictSource::Policies,
            trace: Vec::new(),
            requirements: Vec::new(),
            policies_version: None,
            input: None,
        };
        let (version, bound) = match self.registry.versioned_bindings(&key.id).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, key = %key.id, "cannot load the key's policies");
                return (deny("policy_unavailable"), None);
            }
        };
        let (mut verdict, reservation) = self.judge(key, request, usage, bound, deny).await;
        verdict.policies_version = Some(version);
        (verdict, reservation)
    }

    async fn judge(
        &self,
        key: &KeyMeta,
        request: &SignRequest,
        usage: Vec<crate::store::usage::UsageDelta>,
        bound: std::sync::Arc<Vec<BoundPolicy>>,
        deny: impl Fn(&str) -> Verdict,
    ) -> (Verdict, Option<Reservation>) {
        if bound.is_empty() {
            return (self.default_verdict(), None);
        }
        let mut request = request.clone();
        let reservation = match self.context(key, &mut request, usage).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot compute the policy context");
                return (deny("policy_context_unavailable"), None);
            }
        };
        let request_json: std::sync::Arc<str> = match serde_json::to_string(&request) {
            Ok(j) => j.into(),
            Err(_) => return (deny("policy_input_unavailable"), None),
        };
        let input = request_json.clone();
        let result = if bound.iter().all(|b| b.policy.compiled.pace.inline()) {
            self.engine()
                .run_inline(|engine| evaluate_chain(engine, &bound, &request_json))
                .await
        } else {
            self.engine()
                .run_blocking(move |engine| evaluate_chain(engine, &bound, &request_json))
                .await
        };
        let mut verdict = result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "policy evaluation task failed");
            deny("policy_unavailable")
        });
        if self.keep_inputs {
            verdict.input = Some(input);
        }
        (verdict, Some(reservation))
    }

    /// Fills the host context of `request`: the recorded usage plus what requests in flight
    /// reserved, and reserves `usage` for this request. The reservation is made first and
    /// the counters read after, with the audit head of their snapshot, so every signature is
    /// counted exactly once (see `store::pending` and `store::usage_read`).
    async fn context(
        &self,
        key: &KeyMeta,
        request: &mut SignRequest,
        usage: Vec<crate::store::usage::UsageDelta>,
    ) -> Result<Reservation, StoreError> {
        use crate::store::usage::{SIGNATURES, key_scope, principal_scope};
        let key_scope = key_scope(&key.id);
        let principal_scope =
            principal_scope(&request.principal.issuer, &request.principal.subject);
        // The counters the spend context of the intent's chain is built from, if it has one.
        let chain = crate::chains::of_intent(&request.intent);
        let spend_of = chain.and_then(|c| Some((c, c.spend_prefix(&request.intent)?)));
        let read = self
            .store
            .read_usage(crate::store::usage_read::UsageAsk {
                key_scope: key_scope.clone(),
                principal_scope: principal_scope.clone(),
                own: usage,
                spend_prefix: spend_of.as_ref().map(|(_, prefix)| prefix.clone()),
                now: request.unix_time,
            })
            .await?;
        let (in_flight, reservation) = (read.in_flight, read.reservation);
        let counted = read.signatures;
        let [key_counted, principal_counted] = &counted.value;
        let mut context = crate::store::policies::signature_counts(key_counted, principal_counted);
        let k = in_flight.window(&key_scope, SIGNATURES, counted.head);
        let p = in_flight.window(&principal_scope, SIGNATURES, counted.head);
        context.key_signatures_last_hour += k.count_hour;
        context.key_signatures_last_day += k.count_day;
        context.principal_signatures_last_hour += p.count_hour;
        context.principal_signatures_last_day += p.count_day;
        if let (Some((chain, prefix)), Some(read)) = (spend_of, read.spend) {
            let mut usage = read.value;
            for (metric, more) in in_flight.with_prefix(&key_scope, &prefix, read.head) {
                usage.entry(metric).or_default().add(&more);
            }
            context.spend = chain.spend_context(&request.intent, &usage);
        }
        request.context = context;
        Ok(reservation)
    }

    fn default_verdict(&self) -> Verdict {
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
            requirements: Vec::new(),
            policies_version: None,
            input: None,
        }
    }
}

/// The ABI v1 input document, built from an already serialized request.
pub fn input_document(request_json: &str, settings: &serde_json::Value) -> Vec<u8> {
    let settings = serde_json::to_string(settings).unwrap_or_else(|_| "null".into());
    format!(
        "{{\"abi\":{},\"request\":{request_json},\"settings\":{settings}}}",
        keyward_policy::ABI_VERSION
    )
    .into_bytes()
}

/// Evaluates `bound` in order on one blocking thread, stopping at the first deny.
fn evaluate_chain(engine: &PolicyEngine, bound: &[BoundPolicy], request_json: &str) -> Verdict {
    let mut trace = Vec::with_capacity(bound.len());
    let mut decisions = Vec::with_capacity(bound.len());
    let mut requirements = Vec::new();
    for b in bound {
        let input = input_document(request_json, &b.settings);
        let eval = engine.evaluate(&b.policy.compiled, &input);
        if b.policy.compiled.pace.observe(eval.cpu_micros) {
            tracing::info!(
                policy = %b.policy.name,
                cpu_micros = eval.cpu_micros,
                "policy evaluations run on the blocking pool from now on (one took longer than {} µs)",
                engine::Pace::FAST_MICROS
            );
        }
        for line in &eval.logs {
            tracing::info!(policy = %b.policy.name, "policy log: {line}");
        }
        trace.push(TraceEntry {
            policy: b.policy.name.clone(),
            digest: b.policy.compiled.digest.clone(),
            decision: eval.decision.name().to_string(),
            reason: eval.decision.reason().map(str::to_string),
            fuel: eval.fuel,
            micros: eval.micros,
            logs: eval.logs,
        });
        let deny = matches!(eval.decision, Decision::Deny { .. });
        if let Decision::RequireApproval {
            reason,
            approvals,
            approver_roles,
            ..
        } = &eval.decision
        {
            requirements.push(crate::store::approvals::Requirement {
                policy: b.policy.name.clone(),
                reason: reason.clone(),
                approvals: *approvals,
                approver_roles: approver_roles.clone(),
            });
        }
        decisions.push(eval.decision);
        if deny {
            break;
        }
    }
    let decision = combine(decisions);
    if !matches!(decision, Decision::RequireApproval { .. }) {
        requirements.clear();
    }
    Verdict {
        decision,
        source: VerdictSource::Policies,
        trace,
        requirements,
        policies_version: None,
        input: None,
    }
}

/// The combining rule: any deny wins (the first); otherwise any require-approval gives one
/// pending decision, summarised here (largest quorum, union of approver roles, shortest TTL,
/// reasons joined) while `Verdict::requirements` keeps each policy's own requirement, which
/// is what approvals are counted against; otherwise allow. An empty list is a deny (callers apply the default before this).
pub fn combine(decisions: Vec<Decision>) -> Decision {
    if decisions.is_empty() {
        return Decision::deny("no policy decided");
    }
    let mut pending: Option<(Vec<String>, u32, Vec<String>, u64)> = None;
    for d in decisions {
        match d {
            Decision::Allow => {}
            deny @ Decision::Deny { .. } => return deny,
            Decision::RequireApproval {
                reason,
                approvals,
                approver_roles,
                ttl_seconds,
            } => {
                let p = pending.get_or_insert_with(|| (Vec::new(), 0, Vec::new(), u64::MAX));
                p.0.push(reason);
                p.1 = p.1.max(approvals);
                for role in approver_roles {
                    if !p.2.contains(&role) {
                        p.2.push(role);
                    }
                }
                p.3 = p.3.min(ttl_seconds);
            }
        }
    }
    match pending {
        None => Decision::Allow,
        Some((reasons, approvals, approver_roles, ttl_seconds)) => Decision::RequireApproval {
            reason: reasons.join("; "),
            approvals,
            approver_roles,
            ttl_seconds,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(reason: &str, approvals: u32, roles: &[&str], ttl: u64) -> Decision {
        Decision::RequireApproval {
            reason: reason.into(),
            approvals,
            approver_roles: roles.iter().map(|r| r.to_string()).collect(),
            ttl_seconds: ttl,
        }
    }

    #[test]
    fn any_deny_wins() {
        let d = combine(vec![
            Decision::Allow,
            pending("a", 2, &["x"], 60),
            Decision::deny("no"),
            Decision::deny("later"),
        ]);
        assert_eq!(d, Decision::deny("no"));
    }

    #[test]
    fn approvals_merge_to_the_strictest() {
        let d = combine(vec![
            pending("big", 2, &["treasury"], 3600),
            Decision::Allow,
            pending("night", 3, &["ops", "treasury"], 600),
        ]);
        assert_eq!(d, pending("big; night", 3, &["treasury", "ops"], 600));
        assert_eq!(
            combine(vec![Decision::Allow, Decision::Allow]),
            Decision::Allow
        );
        assert_eq!(combine(vec![]).name(), "deny");
    }
}

//! `[policy]`: policy engine limits, maxima and built-in bindings.

use serde::Deserialize;

use super::{ConfigError, DefaultDecision, invalid};
use crate::policy::signature::{TrustedSigner, TrustedSigners};

/// `[policy]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// Decision for keys with no policy bound: `allow` or `deny` (default `deny`).
    #[serde(default)]
    pub default_decision: DefaultDecision,
    /// Fuel per evaluation for policies that ask for none (default 10,000,000).
    pub fuel: Option<u64>,
    /// The most fuel a policy may ask for (default 1,000,000,000).
    pub max_fuel: Option<u64>,
    /// Deadline per evaluation, ms (default 100).
    pub timeout_ms: Option<u64>,
    /// The longest deadline a policy may ask for, ms (default 2000).
    pub max_timeout_ms: Option<u64>,
    /// Memory cap per evaluation, bytes (default 16 MiB).
    pub memory_bytes: Option<u64>,
    /// The largest memory cap a policy may ask for, bytes (default 64 MiB).
    pub max_memory_bytes: Option<u64>,
    /// WebAssembly stack size, bytes (default 512 KiB).
    pub stack_bytes: Option<usize>,
    /// Largest module accepted at upload, bytes (default 512 KiB).
    pub max_module_bytes: Option<usize>,
    /// Evaluations running at once (default 32).
    pub max_concurrent: Option<u32>,
    /// Built-in policies bound to every new key, e.g. `["allow-all"]` (`keyward dev` sets it).
    #[serde(default)]
    pub bind_on_create: Vec<String>,
    /// Days the input of each sign request judged by policies is kept for replays (default
    /// 30; 0 keeps none).
    pub replay_retention_days: Option<u32>,
    /// Kept inputs at most, the oldest pruned first (default 1,000,000).
    pub replay_max_inputs: Option<u64>,
    /// Ed25519 public keys whose signature a module needs to be uploaded or bound (default
    /// none: modules need no signature). Each entry is a key (SPKI PEM, or the base64 of its
    /// DER) or `{ name = "...", public_key = "..." }`.
    #[serde(default)]
    pub trusted_signers: Vec<SignerEntry>,
}

/// One entry of `policy.trusted_signers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a public key string or a table { name = \"...\", public_key = \"...\" }"
)]
pub enum SignerEntry {
    /// A bare public key.
    Key(String),
    /// A named public key.
    Named(NamedSigner),
}

/// A named entry of `policy.trusted_signers`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedSigner {
    /// Recorded with the modules it signs.
    pub name: String,
    /// SPKI PEM, or the standard base64 of the DER.
    pub public_key: String,
}

/// How long the inputs of past sign requests are kept for replays (see `store::inputs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRetention {
    /// Days kept; 0: none is kept.
    pub days: u32,
    /// Rows kept at most.
    pub max_inputs: u64,
}

impl ReplayRetention {
    /// Whether inputs are kept at all.
    pub fn keeps(&self) -> bool {
        self.days > 0
    }
}

impl Default for ReplayRetention {
    fn default() -> Self {
        ReplayRetention {
            days: 30,
            max_inputs: 1_000_000,
        }
    }
}

/// Validated `[policy]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyConfig {
    /// Sandbox limits.
    pub limits: crate::policy::LimitsConfig,
    /// Built-in policies bound to new keys.
    pub bind_on_create: Vec<String>,
    /// How long sign requests' policy inputs are kept for replays.
    pub replay: ReplayRetention,
    /// Keys a module's signature must verify with (none: modules need no signature).
    pub trusted_signers: TrustedSigners,
}

impl PolicySection {
    pub(super) fn validate(&self) -> Result<PolicyConfig, ConfigError> {
        let mut limits = crate::policy::LimitsConfig::default();
        let set = |v: Option<u64>, target: &mut u64| {
            if let Some(v) = v {
                *target = v;
            }
        };
        set(self.fuel, &mut limits.default.fuel);
        set(self.max_fuel, &mut limits.max.fuel);
        set(self.timeout_ms, &mut limits.default.timeout_ms);
        set(self.max_timeout_ms, &mut limits.max.timeout_ms);
        set(self.memory_bytes, &mut limits.default.memory_bytes);
        set(self.max_memory_bytes, &mut limits.max.memory_bytes);
        if let Some(v) = self.stack_bytes {
            limits.stack_bytes = v;
        }
        if let Some(v) = self.max_module_bytes {
            limits.max_module_bytes = v;
        }
        if let Some(v) = self.max_concurrent {
            limits.max_concurrent = v;
        }
        let pairs = [
            (
                "policy.fuel",
                limits.default.fuel,
                limits.max.fuel,
                "policy.max_fuel",
            ),
            (
                "policy.timeout_ms",
                limits.default.timeout_ms,
                limits.max.timeout_ms,
                "policy.max_timeout_ms",
            ),
            (
                "policy.memory_bytes",
                limits.default.memory_bytes,
                limits.max.memory_bytes,
                "policy.max_memory_bytes",
            ),
        ];
        for (key, default, max, max_key) in pairs {
            if default == 0 || default > max {
                return Err(invalid(
                    key,
                    default,
                    format!("must be greater than 0 and at most {max_key} ({max})"),
                ));
            }
        }
        if limits.default.memory_bytes < 65_536 {
            return Err(invalid(
                "policy.memory_bytes",
                limits.default.memory_bytes,
                "must be at least 65536 (one WebAssembly page)",
            ));
        }
        if limits.max.memory_bytes > 4 << 30 {
            return Err(invalid(
                "policy.max_memory_bytes",
                limits.max.memory_bytes,
                "must be at most 4 GiB",
            ));
        }
        if !(64 << 10..=16 << 20).contains(&limits.stack_bytes) {
            return Err(invalid(
                "policy.stack_bytes",
                limits.stack_bytes,
                "must be between 65536 and 16777216",
            ));
        }
        if limits.max_module_bytes < 1024 {
            return Err(invalid(
                "policy.max_module_bytes",
                limits.max_module_bytes,
                "must be at least 1024",
            ));
        }
        if !(1..=1024).contains(&limits.max_concurrent) {
            return Err(invalid(
                "policy.max_concurrent",
                limits.max_concurrent,
                "must be between 1 and 1024",
            ));
        }
        for name in &self.bind_on_create {
            if !crate::policy::builtin::NAMES.contains(&name.as_str()) {
                return Err(invalid(
                    "policy.bind_on_create",
                    name,
                    format!(
                        "not a built-in policy; built-in: {}",
                        crate::policy::builtin::NAMES.join(", ")
                    ),
                ));
            }
        }
        let mut replay = ReplayRetention::default();
        if let Some(days) = self.replay_retention_days {
            if days > 3650 {
                return Err(invalid(
                    "policy.replay_retention_days",
                    days,
                    "must be between 0 (keep no inputs) and 3650",
                ));
            }
            replay.days = days;
        }
        if let Some(max) = self.replay_max_inputs {
            if !(1..=100_000_000).contains(&max) {
                return Err(invalid(
                    "policy.replay_max_inputs",
                    max,
                    "must be between 1 and 100000000",
                ));
            }
            replay.max_inputs = max;
        }
        Ok(PolicyConfig {
            limits,
            bind_on_create: self.bind_on_create.clone(),
            replay,
            trusted_signers: self.trusted_signers()?,
        })
    }
}

impl PolicySection {
    fn trusted_signers(&self) -> Result<TrustedSigners, ConfigError> {
        let mut out: Vec<TrustedSigner> = Vec::with_capacity(self.trusted_signers.len());
        for (i, entry) in self.trusted_signers.iter().enumerate() {
            let key = format!("policy.trusted_signers[{i}]");
            let (name, text) = match entry {
                SignerEntry::Key(text) => (None, text),
                SignerEntry::Named(n) => (Some(n.name.clone()), &n.public_key),
            };
            let signer = TrustedSigner::parse(name, text)
                .map_err(|reason| invalid(&key, text.trim(), reason))?;
            if let Some(j) = out.iter().position(|s| s.public_key == signer.public_key) {
                return Err(invalid(
                    &key,
                    &signer.public_key,
                    format!("the same key as policy.trusted_signers[{j}]"),
                ));
            }
            if let Some(j) = out
                .iter()
                .position(|s| s.name.is_some() && s.name == signer.name)
            {
                return Err(invalid(
                    &key,
                    signer.name.as_deref().unwrap_or_default(),
                    format!("the same name as policy.trusted_signers[{j}]"),
                ));
            }
            out.push(signer);
        }
        Ok(TrustedSigners::new(out))
    }
}

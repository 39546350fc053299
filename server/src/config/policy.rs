//! `[policy]`: policy engine limits, maxima and built-in bindings.

use serde::Deserialize;

use super::{ConfigError, DefaultDecision, invalid};

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
        })
    }
}

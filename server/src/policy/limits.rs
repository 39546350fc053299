//! Sandbox limits: the server's defaults and maxima (from `[policy]` in the configuration)
//! and the limits a policy asks for at upload. A policy may ask for less than the maximum,
//! never more; what it does not ask for is the server default.

use serde::{Deserialize, Serialize};

/// The limits one evaluation runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyLimits {
    /// Fuel (roughly, WebAssembly instructions) per evaluation.
    pub fuel: u64,
    /// Wall-clock deadline per evaluation, milliseconds (enforced by epoch interruption).
    pub timeout_ms: u64,
    /// Largest linear memory, bytes.
    pub memory_bytes: u64,
}

/// Limits a policy asks for at upload; `None` takes the server default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedLimits {
    /// Fuel per evaluation.
    pub fuel: Option<u64>,
    /// Deadline, milliseconds.
    pub timeout_ms: Option<u64>,
    /// Memory cap, bytes.
    pub memory_bytes: Option<u64>,
}

/// The server's policy limits: defaults, maxima and engine-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Limits of a policy that asks for none.
    pub default: PolicyLimits,
    /// The most a policy may ask for.
    pub max: PolicyLimits,
    /// WebAssembly stack size, bytes (engine-wide).
    pub stack_bytes: usize,
    /// Largest module accepted at upload, bytes.
    pub max_module_bytes: usize,
    /// Evaluations running at once (the pooling allocator's size).
    pub max_concurrent: u32,
    /// Largest policy output, bytes.
    pub max_output_bytes: usize,
    /// Epoch tick, milliseconds.
    pub tick_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            default: PolicyLimits {
                fuel: 10_000_000,
                timeout_ms: 100,
                memory_bytes: 16 << 20,
            },
            max: PolicyLimits {
                fuel: 1_000_000_000,
                timeout_ms: 2_000,
                memory_bytes: 64 << 20,
            },
            stack_bytes: 512 << 10,
            max_module_bytes: 512 << 10,
            max_concurrent: 32,
            max_output_bytes: 64 << 10,
            tick_ms: 5,
        }
    }
}

impl LimitsConfig {
    /// The limits for a policy that asked for `requested`, or why they are refused.
    pub fn resolve(&self, requested: &RequestedLimits) -> Result<PolicyLimits, String> {
        let pick = |name: &str, asked: Option<u64>, default: u64, max: u64| match asked {
            None => Ok(default.min(max)),
            Some(0) => Err(format!("limits.{name} must be greater than 0")),
            Some(v) if v > max => Err(format!(
                "limits.{name} = {v} is more than this server allows ({max})"
            )),
            Some(v) => Ok(v),
        };
        let limits = PolicyLimits {
            fuel: pick("fuel", requested.fuel, self.default.fuel, self.max.fuel)?,
            timeout_ms: pick(
                "timeout_ms",
                requested.timeout_ms,
                self.default.timeout_ms,
                self.max.timeout_ms,
            )?,
            memory_bytes: pick(
                "memory_bytes",
                requested.memory_bytes,
                self.default.memory_bytes,
                self.max.memory_bytes,
            )?,
        };
        if limits.memory_bytes < 65_536 {
            return Err("limits.memory_bytes must be at least 65536 (one page)".into());
        }
        Ok(limits)
    }

    /// Epoch ticks for a deadline of `timeout_ms` (at least one full tick is waited).
    pub fn ticks(&self, timeout_ms: u64) -> u64 {
        timeout_ms.div_ceil(self.tick_ms.max(1)) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_may_ask_for_less_never_more() {
        let cfg = LimitsConfig::default();
        assert_eq!(
            cfg.resolve(&RequestedLimits::default()).unwrap(),
            cfg.default
        );
        let less = RequestedLimits {
            fuel: Some(1000),
            ..Default::default()
        };
        assert_eq!(cfg.resolve(&less).unwrap().fuel, 1000);
        let more = RequestedLimits {
            timeout_ms: Some(cfg.max.timeout_ms + 1),
            ..Default::default()
        };
        assert!(cfg.resolve(&more).unwrap_err().contains("timeout_ms"));
        let zero = RequestedLimits {
            memory_bytes: Some(0),
            ..Default::default()
        };
        assert!(cfg.resolve(&zero).is_err());
    }
}

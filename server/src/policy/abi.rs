//! The host side of ABI v1: the store's state, the memory cap, the `keyward:host/v1` imports,
//! the exports a module must have, and how a policy's output is read.
//!
//! Nothing here trusts the guest: pointers are checked against its memory, outputs are
//! size-capped and parsed strictly, and anything unexpected is a `PolicyFailure` (a deny).

use keyward_policy::{Decision, HOST_MODULE};
use wasmtime::{Caller, Extern, ExternType, Linker, ResourceLimiter, ValType};

/// Why an evaluation failed; each becomes a deny whose reason is `code()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyFailure {
    /// The policy used all its fuel.
    OutOfFuel,
    /// The wall-clock deadline (epoch) passed.
    Timeout,
    /// The policy tried to grow memory past its cap.
    MemoryLimit,
    /// The policy overflowed its stack.
    StackOverflow,
    /// Any other trap (unreachable, out-of-bounds access, panic...).
    Trap(String),
    /// The output could not be read: bad pointer, too large, not UTF-8 JSON, wrong shape.
    BadOutput(String),
    /// The output names a decision ABI v1 does not have.
    UnknownDecision(String),
    /// The policy could not be instantiated (or no module is loaded).
    Unavailable(String),
}

impl PolicyFailure {
    /// The stable reason code, e.g. `policy_out_of_fuel`.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyFailure::OutOfFuel => "policy_out_of_fuel",
            PolicyFailure::Timeout => "policy_timeout",
            PolicyFailure::MemoryLimit => "policy_memory_limit",
            PolicyFailure::StackOverflow => "policy_stack_overflow",
            PolicyFailure::Trap(_) => "policy_trap",
            PolicyFailure::BadOutput(_) => "policy_bad_output",
            PolicyFailure::UnknownDecision(_) => "policy_unknown_decision",
            PolicyFailure::Unavailable(_) => "policy_unavailable",
        }
    }

    /// A human-readable detail for logs and the evaluate API.
    pub fn detail(&self) -> String {
        match self {
            PolicyFailure::OutOfFuel => "the policy used all of its fuel".into(),
            PolicyFailure::Timeout => "the policy ran past its deadline".into(),
            PolicyFailure::MemoryLimit => "the policy tried to use more memory than allowed".into(),
            PolicyFailure::StackOverflow => "the policy exhausted its stack".into(),
            PolicyFailure::Trap(m)
            | PolicyFailure::BadOutput(m)
            | PolicyFailure::Unavailable(m) => m.clone(),
            PolicyFailure::UnknownDecision(d) => format!("unknown decision {d:?}"),
        }
    }

    /// Classifies an error from a call into the guest, by type.
    pub fn from_call(err: &wasmtime::Error, state: &HostState) -> Self {
        if state.memory_limit_hit || err.downcast_ref::<MemoryLimitExceeded>().is_some() {
            return PolicyFailure::MemoryLimit;
        }
        match err.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::OutOfFuel) => PolicyFailure::OutOfFuel,
            Some(wasmtime::Trap::Interrupt) => PolicyFailure::Timeout,
            Some(wasmtime::Trap::StackOverflow) => PolicyFailure::StackOverflow,
            Some(trap) => PolicyFailure::Trap(trap.to_string()),
            None => PolicyFailure::Trap(err.to_string()),
        }
    }
}

/// Raised by the memory cap when a policy grows memory past its limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {desired})")]
pub struct MemoryLimitExceeded {
    /// The cap.
    pub limit: u64,
    /// What was asked for.
    pub desired: u64,
}

/// Most log lines kept per evaluation, and their longest length.
pub const MAX_LOG_LINES: usize = 32;
/// Longest log line kept, bytes.
pub const MAX_LOG_LINE: usize = 1024;

/// Per-evaluation state of a store.
#[derive(Debug)]
pub struct HostState {
    memory_cap: u64,
    /// Set when the memory cap refused a growth.
    pub memory_limit_hit: bool,
    /// Lines logged by the policy (capped).
    pub logs: Vec<String>,
    /// Lines dropped beyond the cap.
    pub logs_dropped: u64,
}

impl HostState {
    /// State for an evaluation with `memory_cap` bytes of linear memory.
    pub fn new(memory_cap: u64) -> Self {
        HostState {
            memory_cap,
            memory_limit_hit: false,
            logs: Vec::new(),
            logs_dropped: 0,
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_cap {
            self.memory_limit_hit = true;
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.memory_cap,
                desired: desired as u64,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The linker with the `keyward:host/v1` functions.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        HOST_MODULE,
        "log",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
            if caller.data().logs.len() >= MAX_LOG_LINES {
                caller.data_mut().logs_dropped += 1;
                return;
            }
            let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                return;
            };
            let (start, len) = (ptr as u32 as usize, (len as u32 as usize).min(MAX_LOG_LINE));
            let line = memory
                .data(&caller)
                .get(start..start.saturating_add(len))
                .map(|b| String::from_utf8_lossy(b).into_owned());
            match line {
                Some(line) => caller.data_mut().logs.push(line),
                None => caller.data_mut().logs_dropped += 1,
            }
        },
    )?;
    Ok(linker)
}

/// The host functions a module may import (name and signature).
const HOST_FUNCTIONS: &[(&str, &[ValType], &[ValType])] =
    &[("log", &[ValType::I32, ValType::I32], &[])];

/// Checks a compiled module's imports and exports against ABI v1. Returns whether it exports
/// `keyward_validate_settings`.
pub fn check_module(module: &wasmtime::Module) -> Result<bool, String> {
    for import in module.imports() {
        let (m, name) = (import.module(), import.name());
        if m != HOST_MODULE {
            return Err(format!(
                "the module imports {m}::{name}; policies may only import from {HOST_MODULE} \
                 (no WASI): build for wasm32-unknown-unknown"
            ));
        }
        let known = HOST_FUNCTIONS.iter().find(|(n, _, _)| *n == name);
        let ok = match (known, import.ty()) {
            (Some((_, params, results)), ExternType::Func(f)) => {
                same_types(f.params(), params) && same_types(f.results(), results)
            }
            _ => false,
        };
        if !ok {
            return Err(format!(
                "the module imports {HOST_MODULE}::{name}, which this server does not provide \
                 with that type; available: log(i32, i32)"
            ));
        }
    }
    let want: &[(&str, &[ValType], &[ValType])] = &[
        ("keyward_abi_version", &[], &[ValType::I32]),
        ("keyward_alloc", &[ValType::I32], &[ValType::I32]),
        ("keyward_dealloc", &[ValType::I32, ValType::I32], &[]),
        (
            "keyward_evaluate",
            &[ValType::I32, ValType::I32],
            &[ValType::I64],
        ),
    ];
    let func = |name: &str| {
        module.get_export(name).and_then(|e| match e {
            ExternType::Func(f) => Some(f),
            _ => None,
        })
    };
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => {}
        _ => return Err("the module does not export its memory as `memory`".into()),
    }
    for (name, params, results) in want {
        match func(name) {
            None => {
                return Err(format!(
                    "the module does not export `{name}`; ABI v1 needs keyward_abi_version, \
                     keyward_alloc, keyward_dealloc, keyward_evaluate and memory"
                ));
            }
            Some(f) if !(same_types(f.params(), params) && same_types(f.results(), results)) => {
                return Err(format!("the export `{name}` has the wrong type for ABI v1"));
            }
            Some(_) => {}
        }
    }
    match func("keyward_validate_settings") {
        None => Ok(false),
        Some(f)
            if same_types(f.params(), &[ValType::I32, ValType::I32])
                && same_types(f.results(), &[ValType::I64]) =>
        {
            Ok(true)
        }
        Some(_) => {
            Err("the export `keyward_validate_settings` has the wrong type for ABI v1".into())
        }
    }
}

fn same_types(got: impl ExactSizeIterator<Item = ValType>, want: &[ValType]) -> bool {
    got.len() == want.len() && got.zip(want).all(|(a, b)| ValType::eq(&a, b))
}

/// Splits `(ptr << 32) | len`.
pub fn unpack(packed: i64) -> (usize, usize) {
    let packed = packed as u64;
    ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize)
}

/// Parses a policy's output into a decision, strictly.
pub fn parse_decision(bytes: &[u8]) -> Result<Decision, PolicyFailure> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| PolicyFailure::BadOutput(format!("the output is not JSON: {e}")))?;
    match value.get("decision").and_then(|d| d.as_str()) {
        Some("allow" | "deny" | "require_approval") => {}
        Some(other) => return Err(PolicyFailure::UnknownDecision(other.to_string())),
        None => {
            return Err(PolicyFailure::BadOutput(
                "the output has no string field `decision`".into(),
            ));
        }
    }
    let decision: Decision = serde_json::from_value(value)
        .map_err(|e| PolicyFailure::BadOutput(format!("the output does not fit ABI v1: {e}")))?;
    if let Decision::RequireApproval {
        approvals,
        ttl_seconds,
        ..
    } = &decision
        && (*approvals == 0 || *ttl_seconds == 0)
    {
        return Err(PolicyFailure::BadOutput(
            "require_approval needs approvals >= 1 and ttl_seconds >= 1".into(),
        ));
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_parsed_strictly() {
        assert_eq!(
            parse_decision(br#"{"decision":"allow"}"#),
            Ok(Decision::Allow)
        );
        assert_eq!(
            parse_decision(br#"{"decision":"maybe"}"#)
                .unwrap_err()
                .code(),
            "policy_unknown_decision"
        );
        assert_eq!(
            parse_decision(b"allow").unwrap_err().code(),
            "policy_bad_output"
        );
        assert_eq!(
            parse_decision(br#"{"decision":"deny"}"#)
                .unwrap_err()
                .code(),
            "policy_bad_output"
        );
        assert_eq!(
            parse_decision(
                br#"{"decision":"require_approval","reason":"r","approvals":0,"approver_roles":[],"ttl_seconds":5}"#
            )
            .unwrap_err()
            .code(),
            "policy_bad_output"
        );
    }

    #[test]
    fn unpack_splits_pointer_and_length() {
        assert_eq!(unpack((1024_i64 << 32) | 17), (1024, 17));
        assert_eq!(unpack(-1), (0xffff_ffff, 0xffff_ffff));
    }
}

//! The guest side of ABI v1: what [`crate::export_policy!`] expands to.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{ABI_VERSION, Decision, PolicyInput, SignRequest};

/// The settings type of a policy that takes none: accepts and ignores any settings value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoSettings;

impl<'de> Deserialize<'de> for NoSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d)?;
        Ok(NoSettings)
    }
}

/// The answer of `keyward_validate_settings`: `{"valid":true}` or
/// `{"valid":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SettingsCheck {
    /// Whether the settings are acceptable.
    pub valid: bool,
    /// Why not, when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The default settings check: parsing the settings into the policy's type is enough.
pub fn no_validation<S>(_settings: &S) -> Result<(), String> {
    Ok(())
}

/// Runs `policy` on an ABI v1 input document and returns the decision as JSON. Input that
/// does not parse, another ABI version or settings of the wrong shape give a deny.
pub fn evaluate_json<S: DeserializeOwned>(
    policy: impl Fn(&SignRequest, &S) -> Decision,
    input: &[u8],
) -> Vec<u8> {
    let decision = match serde_json::from_slice::<PolicyInput>(input) {
        Err(e) => Decision::deny(format!("the policy could not read its input: {e}")),
        Ok(input) if input.abi != ABI_VERSION => Decision::deny(format!(
            "the policy speaks ABI {ABI_VERSION}, the input is ABI {}",
            input.abi
        )),
        Ok(input) => match serde_json::from_value::<S>(input.settings) {
            Err(e) => Decision::deny(format!("invalid policy settings: {e}")),
            Ok(settings) => policy(&input.request, &settings),
        },
    };
    serde_json::to_vec(&decision)
        .unwrap_or_else(|_| br#"{"decision":"deny","reason":"policy output failed"}"#.to_vec())
}

/// Checks settings (JSON) for a policy: they must parse into its settings type and pass
/// `validate`. Returns a [`SettingsCheck`] as JSON.
pub fn check_settings_json<S: DeserializeOwned>(
    _policy: impl Fn(&SignRequest, &S) -> Decision,
    validate: impl Fn(&S) -> Result<(), String>,
    settings: &[u8],
) -> Vec<u8> {
    let check = match serde_json::from_slice::<S>(settings) {
        Err(e) => Err(format!("settings do not have the expected shape: {e}")),
        Ok(s) => validate(&s),
    };
    let check = match check {
        Ok(()) => SettingsCheck {
            valid: true,
            error: None,
        },
        Err(e) => SettingsCheck {
            valid: false,
            error: Some(e),
        },
    };
    serde_json::to_vec(&check).unwrap_or_else(|_| br#"{"valid":false}"#.to_vec())
}

/// Memory handling across the ABI boundary (wasm32 only; pointers are 32-bit there).
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
pub mod guest {
    /// `keyward_alloc`: reserves `len` bytes for the host to write into.
    pub fn alloc(len: i32) -> i32 {
        let mut buf = Vec::<u8>::with_capacity(len.max(0) as usize);
        let ptr = buf.as_mut_ptr();
        core::mem::forget(buf);
        ptr as usize as i32
    }

    /// `keyward_dealloc`: frees what `alloc` (or an output) reserved.
    ///
    /// # Safety
    /// `ptr` and `len` must come from `alloc` or from an output returned by this module.
    pub unsafe fn dealloc(ptr: i32, len: i32) {
        // SAFETY: per the contract, this is a buffer of capacity `len` made by this module.
        drop(unsafe { Vec::from_raw_parts(ptr as usize as *mut u8, 0, len.max(0) as usize) });
    }

    /// Takes ownership of the `len` bytes the host wrote at `ptr` (from `alloc(len)`).
    ///
    /// # Safety
    /// `ptr` must come from `alloc(len)` and hold `len` initialised bytes.
    pub unsafe fn take(ptr: i32, len: i32) -> Vec<u8> {
        let len = len.max(0) as usize;
        // SAFETY: per the contract, `alloc(len)` made this buffer and the host filled it.
        unsafe { Vec::from_raw_parts(ptr as usize as *mut u8, len, len) }
    }

    /// Leaks `out` for the host to read and returns `(ptr << 32) | len`.
    pub fn leak(out: Vec<u8>) -> i64 {
        let out = out.into_boxed_slice();
        let len = out.len();
        let ptr = Box::into_raw(out) as *mut u8 as usize;
        ((ptr as i64) << 32) | (len as i64 & 0xffff_ffff)
    }
}

/// Makes one function the whole policy.
///
/// `export_policy!(evaluate)` where `evaluate: fn(&SignRequest, &S) -> Decision` and `S` is
/// any `serde::de::DeserializeOwned` settings type ([`NoSettings`] when the policy takes
/// none). `export_policy!(evaluate, validate = check)` adds a settings check
/// `check: fn(&S) -> Result<(), String>` run when the policy is bound to a key.
///
/// On `wasm32` it emits the ABI v1 exports (`keyward_abi_version`, `keyward_alloc`,
/// `keyward_dealloc`, `keyward_evaluate`, `keyward_validate_settings`); natively it emits
/// nothing, so `evaluate` stays an ordinary function for unit tests. Invoke it once, at the
/// crate root.
#[macro_export]
macro_rules! export_policy {
    ($evaluate:path) => {
        $crate::export_policy!($evaluate, validate = $crate::__private::no_validation);
    };
    ($evaluate:path, validate = $validate:path) => {
        /// ABI v1: the ABI version this module speaks.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn keyward_abi_version() -> i32 {
            $crate::ABI_VERSION as i32
        }

        /// ABI v1: reserves memory for the host to write an input into.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn keyward_alloc(len: i32) -> i32 {
            $crate::__private::alloc(len)
        }

        /// ABI v1: frees memory reserved by `keyward_alloc` or returned as output.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn keyward_dealloc(ptr: i32, len: i32) {
            // SAFETY: the host passes back what this module allocated.
            unsafe { $crate::__private::dealloc(ptr, len) }
        }

        /// ABI v1: evaluates the input at `ptr`; returns `(out_ptr << 32) | out_len`.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn keyward_evaluate(ptr: i32, len: i32) -> i64 {
            // SAFETY: the host wrote `len` bytes into the buffer `keyward_alloc(len)` gave.
            let input = unsafe { $crate::__private::take(ptr, len) };
            $crate::__private::leak($crate::__private::evaluate_json($evaluate, &input))
        }

        /// ABI v1: checks settings at bind time; returns `(out_ptr << 32) | out_len`.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn keyward_validate_settings(ptr: i32, len: i32) -> i64 {
            // SAFETY: as for `keyward_evaluate`.
            let input = unsafe { $crate::__private::take(ptr, len) };
            $crate::__private::leak($crate::__private::check_settings_json(
                $evaluate, $validate, &input,
            ))
        }

        // Natively: make sure the two functions have the shapes the exports need.
        #[cfg(not(target_arch = "wasm32"))]
        #[allow(dead_code)]
        const _: fn() = || {
            let _ = $crate::__private::check_settings_json($evaluate, $validate, b"null");
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::request;

    #[derive(Deserialize)]
    struct Max {
        max: u64,
    }

    fn policy(req: &SignRequest, s: &Max) -> Decision {
        if req.context.key_signatures_last_hour >= s.max {
            Decision::deny("limit")
        } else {
            Decision::Allow
        }
    }

    fn positive(s: &Max) -> Result<(), String> {
        if s.max == 0 {
            Err("max must be positive".into())
        } else {
            Ok(())
        }
    }

    #[test]
    fn evaluate_json_runs_the_policy_with_parsed_settings() {
        let input = crate::testing::input(
            &request().key_signatures_last_hour(5).build(),
            serde_json::json!({"max": 3}),
        );
        let out: Decision = serde_json::from_slice(&evaluate_json(policy, &input)).unwrap();
        assert_eq!(out, Decision::deny("limit"));
        let input = crate::testing::input(&request().build(), serde_json::json!({"max": "x"}));
        let out: Decision = serde_json::from_slice(&evaluate_json(policy, &input)).unwrap();
        assert!(
            matches!(out, Decision::Deny { reason } if reason.starts_with("invalid policy settings"))
        );
        let out: Decision = serde_json::from_slice(&evaluate_json(policy, b"nope")).unwrap();
        assert_eq!(out.name(), "deny");
    }

    #[test]
    fn settings_checks_parse_then_validate() {
        let check = |s: &[u8]| -> SettingsCheck {
            serde_json::from_slice(&check_settings_json(policy, positive, s)).unwrap()
        };
        assert!(check(br#"{"max":2}"#).valid);
        let bad = check(br#"{"max":0}"#);
        assert_eq!(bad.error.as_deref(), Some("max must be positive"));
        assert!(!check(b"{}").valid);
        let any: SettingsCheck = serde_json::from_slice(&check_settings_json(
            |_: &SignRequest, _: &NoSettings| Decision::Allow,
            no_validation,
            br#"{"anything":[1,2]}"#,
        ))
        .unwrap();
        assert!(any.valid);
    }
}

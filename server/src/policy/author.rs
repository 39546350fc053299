//! Tools for policy authors behind `keyward policy new` and `keyward policy test`: scaffold a
//! policy crate, and run a built module the way the server does.

use std::path::{Path, PathBuf};

use keyward_policy::{PolicyInput, SignRequest};

use super::{Evaluation, LimitsConfig, PolicyEngine, PolicyError};

/// Where this server's source tree keeps the SDK (used for a path dependency).
pub fn bundled_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy-sdk")
}

/// Creates a policy crate `name` in `parent/name` that builds for wasm32 and tests natively.
/// `sdk` is the SDK's directory (a path dependency); `None` depends on the published version.
pub fn scaffold(parent: &Path, name: &str, sdk: Option<&Path>) -> Result<PathBuf, String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok) || name.starts_with('-') {
        return Err(format!(
            "policy name {name:?} is invalid: use lowercase letters, digits, '-' and '_'"
        ));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    let sdk_dep = match sdk {
        Some(path) => {
            let path = path
                .canonicalize()
                .map_err(|e| format!("SDK path {}: {e}", path.display()))?;
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        None => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    };
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
keyward-policy-sdk = {sdk_dep}
serde = {{ version = "1", features = ["derive"] }}

# Small, deterministic modules.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A standalone crate, even when created inside another workspace.
[workspace]
"#
    );
    let lib = r#"//! A Keyward signing policy. Build with
//! `cargo build --target wasm32-unknown-unknown --release`.

use keyward_policy::{Decision, SignRequest};
use serde::Deserialize;

/// The settings this policy is bound with, e.g. `{"max_per_hour": 100}`.
#[derive(Debug, Deserialize)]
pub struct Settings {
    /// Signatures a key may make per hour.
    pub max_per_hour: u64,
}

/// Allows a request unless the key made `max_per_hour` signatures in the last hour.
pub fn evaluate(req: &SignRequest, settings: &Settings) -> Decision {
    if req.context.key_signatures_last_hour >= settings.max_per_hour {
        keyward_policy::log("hourly limit reached");
        return Decision::deny("this key reached its hourly limit");
    }
    Decision::Allow
}

/// Checked when the policy is bound to a key.
pub fn validate(settings: &Settings) -> Result<(), String> {
    if settings.max_per_hour == 0 {
        return Err("max_per_hour must be at least 1".into());
    }
    Ok(())
}

keyward_policy::export_policy!(evaluate, validate = validate);

#[cfg(test)]
mod tests {
    use super::*;
    use keyward_policy::testing::request;

    #[test]
    fn allows_below_the_limit() {
        let req = request().key_signatures_last_hour(1).build();
        assert_eq!(evaluate(&req, &Settings { max_per_hour: 2 }), Decision::Allow);
    }

    #[test]
    fn denies_at_the_limit() {
        let req = request().key_signatures_last_hour(2).build();
        assert_eq!(evaluate(&req, &Settings { max_per_hour: 2 }).name(), "deny");
    }
}
"#;
    let input = serde_json::to_string_pretty(&PolicyInput {
        abi: keyward_policy::ABI_VERSION,
        request: keyward_policy::testing::request()
            .key_signatures_last_hour(5)
            .build(),
        settings: serde_json::json!({"max_per_hour": 3}),
    })
    .map_err(|e| e.to_string())?;
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("Cargo.toml", &cargo)?;
    write("src/lib.rs", lib)?;
    write("input.json", &(input + "\n"))?;
    write(".gitignore", "/target\n")?;
    Ok(dir)
}

/// Reads an input file: an ABI v1 input document, or a bare sign request; `settings`
/// (when given) replaces the document's settings.
pub fn read_input(text: &str, settings: Option<&str>) -> Result<PolicyInput, String> {
    let mut input = match serde_json::from_str::<PolicyInput>(text) {
        Ok(input) => input,
        Err(doc_err) => match serde_json::from_str::<SignRequest>(text) {
            Ok(request) => PolicyInput {
                abi: keyward_policy::ABI_VERSION,
                request,
                settings: serde_json::Value::Null,
            },
            Err(_) => {
                return Err(format!(
                    "the input is neither a policy input document nor a sign request: {doc_err}"
                ));
            }
        },
    };
    if let Some(s) = settings {
        input.settings =
            serde_json::from_str(s).map_err(|e| format!("settings are not JSON: {e}"))?;
    }
    Ok(input)
}

/// Compiles `module` under the server's default limits and evaluates `input` once, in a
/// fresh instance, as the server does. Also checks the settings as a bind would.
pub fn run_module(
    module: &[u8],
    input: &PolicyInput,
) -> Result<(Evaluation, Result<(), String>), PolicyError> {
    let engine = PolicyEngine::new(LimitsConfig::default())?;
    let compiled = engine.compile(module, engine.limits().default)?;
    let settings = serde_json::to_vec(&input.settings).unwrap_or_default();
    let check = engine.validate_settings(&compiled, &settings);
    let bytes = serde_json::to_vec(input).map_err(|e| PolicyError::Invalid(e.to_string()))?;
    Ok((engine.evaluate(&compiled, &bytes), check))
}

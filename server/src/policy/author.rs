//! Tools for policy authors behind `keyward policy new` and `keyward policy test`: scaffold a
//! policy crate (with a copy of the SDK carried in the binary, so no Keyward checkout is
//! needed), and run a built module the way the server does.

use std::path::{Path, PathBuf};

use keyward_policy::{PolicyInput, SignRequest};

use super::{Evaluation, LimitsConfig, PolicyEngine, PolicyError};

pub use crate::sdk_bundle::BUNDLED_SDK_FILES;

/// The directory, inside a new policy crate, that the bundled SDK is written to.
pub const BUNDLED_SDK_DIR: &str = "keyward-policy-sdk";

/// The manifest of the bundled SDK: the published crate's, standing alone (no workspace to
/// inherit from). The `schema` feature is left out; it only serves the SDK's own schema files.
fn bundled_sdk_manifest() -> String {
    format!(
        r#"[package]
name = "keyward-policy-sdk"
version = "{version}"
edition = "2024"
description = "Write Keyward signing policies in Rust: wire types, the export macro and test helpers"
license = "Apache-2.0"
publish = false

[lib]
name = "keyward_policy"

[dependencies]
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[lints.rust]
unexpected_cfgs = {{ level = "warn", check-cfg = ['cfg(feature, values("schema"))'] }}
"#,
        version = env!("CARGO_PKG_VERSION")
    )
}

/// Which SDK a new policy crate depends on.
#[derive(Debug, Clone, Copy)]
pub enum SdkSource<'a> {
    /// The SDK carried in this binary, written into the crate (`keyward-policy-sdk/`).
    Bundled,
    /// An SDK directory on this machine (`--sdk-path`), by path.
    Path(&'a Path),
    /// The version of `keyward-policy-sdk` published with this server, from the registry.
    Published,
}

/// Creates a policy crate `name` in `parent/name` that builds for wasm32 and tests natively,
/// depending on the SDK `sdk` says.
pub fn scaffold(parent: &Path, name: &str, sdk: SdkSource<'_>) -> Result<PathBuf, String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok) || name.starts_with('-') {
        return Err(format!(
            "policy name {name:?} is invalid: use lowercase letters, digits, '-' and '_'"
        ));
    }
    if name == BUNDLED_SDK_DIR {
        return Err(format!(
            "policy name {name:?} is the SDK's own name; pick another"
        ));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    let sdk_dep = match sdk {
        SdkSource::Path(path) => {
            let path = path
                .canonicalize()
                .map_err(|e| format!("SDK path {}: {e}", path.display()))?;
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        SdkSource::Bundled => format!("{{ path = \"{BUNDLED_SDK_DIR}\" }}"),
        SdkSource::Published => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
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
    if let SdkSource::Bundled = sdk {
        write(
            &format!("{BUNDLED_SDK_DIR}/Cargo.toml"),
            &bundled_sdk_manifest(),
        )?;
        for (rel, text) in BUNDLED_SDK_FILES {
            write(&format!("{BUNDLED_SDK_DIR}/{rel}"), text)?;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }

    #[test]
    fn the_bundle_holds_every_sdk_source_file() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy-sdk");
        let mut on_disk = Vec::new();
        files_under(&sdk.join("src"), &sdk, &mut on_disk);
        on_disk.sort();
        let mut bundled: Vec<String> = BUNDLED_SDK_FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p.starts_with("src/"))
            .collect();
        bundled.sort();
        assert_eq!(bundled, on_disk, "add new SDK files to BUNDLED_SDK_FILES");
        for (rel, text) in BUNDLED_SDK_FILES {
            assert_eq!(
                std::fs::read_to_string(sdk.join(rel)).unwrap(),
                *text,
                "{rel}"
            );
        }
    }

    #[test]
    fn a_bundled_scaffold_names_no_path_of_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let krate = scaffold(dir.path(), "cap", SdkSource::Bundled).unwrap();
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(r#"keyward-policy-sdk = { path = "keyward-policy-sdk" }"#),
            "{manifest}"
        );
        let sdk = std::fs::read_to_string(krate.join("keyward-policy-sdk/Cargo.toml")).unwrap();
        assert!(sdk.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))));
        let mut files = Vec::new();
        files_under(&krate, &krate, &mut files);
        let checkout = env!("CARGO_MANIFEST_DIR");
        for rel in &files {
            let text = std::fs::read_to_string(krate.join(rel)).unwrap();
            assert!(!text.contains(checkout), "{rel} names {checkout}");
        }
        assert!(
            files
                .iter()
                .any(|f| f == "keyward-policy-sdk/src/testing/mod.rs")
        );

        let with_path = scaffold(dir.path(), "by-path", SdkSource::Path(dir.path())).unwrap();
        let manifest = std::fs::read_to_string(with_path.join("Cargo.toml")).unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        assert!(manifest.contains(&format!("{:?}", canonical.display().to_string())));
        assert!(!with_path.join(BUNDLED_SDK_DIR).exists());
        assert!(scaffold(dir.path(), BUNDLED_SDK_DIR, SdkSource::Bundled).is_err());
    }
}

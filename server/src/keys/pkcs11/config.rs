//! `[[keys.pkcs11]]`: the file schema of a PKCS#11 backend and its validated form.
//!
//! The user PIN is read from a file or an environment variable, never from the TOML itself,
//! and is held as a `Pin` that prints as `[redacted]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use serde::Deserialize;

/// One `[[keys.pkcs11]]` entry as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Section {
    /// The backend's name, used as `backend` when creating keys (e.g. `hsm`).
    pub name: String,
    /// Path of the PKCS#11 library (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label; the token is found by label, not by slot number.
    pub token_label: String,
    /// A file holding the user PIN (trailing newlines are ignored).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// The name of an environment variable holding the user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// Most sessions open at once (default 8).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Never accepted: present only to refuse a PIN written into the file with a clear message.
    #[serde(default)]
    pin: Option<toml::Value>,
}

fn default_max_sessions() -> usize {
    8
}

/// A PKCS#11 user PIN. Its `Debug` never shows it, and it has no `Display`.
#[derive(Clone)]
pub struct Pin(Arc<SecretString>);

impl Pin {
    /// Wraps a PIN.
    pub fn new(pin: String) -> Self {
        Pin(Arc::new(SecretString::from(pin)))
    }

    pub(super) fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin([redacted])")
    }
}

/// A validated PKCS#11 backend configuration.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// Backend name.
    pub name: String,
    /// PKCS#11 library path.
    pub module: PathBuf,
    /// Token label.
    pub token_label: String,
    /// The user PIN.
    pub pin: Pin,
    /// Where the PIN came from, for messages (`pin_file /path` or `pin_env NAME`), never the PIN.
    pub pin_source: String,
    /// Most sessions open at once.
    pub max_sessions: usize,
}

/// (config key, value shown, reason) of a rejected entry.
pub type ConfigProblem = (String, String, String);

impl Pkcs11Config {
    /// Validates every entry; `env` is the process environment, `resolve` makes paths absolute.
    pub fn validate_all(
        sections: &[Pkcs11Section],
        env: &[(String, String)],
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Vec<Pkcs11Config>, ConfigProblem> {
        let mut out: Vec<Pkcs11Config> = Vec::new();
        for (i, s) in sections.iter().enumerate() {
            let key = |k: &str| format!("keys.pkcs11[{i}].{k}");
            let bad = |k: &str, v: &str, why: &str| Err((key(k), v.to_string(), why.to_string()));
            if s.pin.is_some() {
                return bad(
                    "pin",
                    "[redacted]",
                    "the PIN never goes in the configuration file; use pin_file or pin_env",
                );
            }
            let name_ok = !s.name.is_empty()
                && s.name.len() <= 64
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !name_ok {
                return bad(
                    "name",
                    &s.name,
                    "use 1 to 64 characters of a-z, 0-9, '-' and '_'",
                );
            }
            if s.name == crate::keys::SoftwareBackend::NAME {
                return bad(
                    "name",
                    &s.name,
                    "\"software\" is the built-in backend's name",
                );
            }
            if out.iter().any(|c| c.name == s.name) {
                return bad("name", &s.name, "two PKCS#11 backends have this name");
            }
            let module = resolve(&s.module);
            if !module.is_file() {
                return bad(
                    "module",
                    &module.display().to_string(),
                    "no such file; give the path of the PKCS#11 library",
                );
            }
            if s.token_label.is_empty() || s.token_label.len() > 32 {
                return bad(
                    "token_label",
                    &s.token_label,
                    "a token label is 1 to 32 characters",
                );
            }
            if s.max_sessions == 0 || s.max_sessions > 1024 {
                return bad(
                    "max_sessions",
                    &s.max_sessions.to_string(),
                    "must be 1 to 1024",
                );
            }
            let (pin, pin_source) = match (&s.pin_file, &s.pin_env) {
                (Some(_), Some(_)) | (None, None) => {
                    return bad("pin_file", "", "set exactly one of pin_file and pin_env");
                }
                (Some(file), None) => {
                    let path = resolve(file);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        (
                            key("pin_file"),
                            path.display().to_string(),
                            format!("cannot read: {e}"),
                        )
                    })?;
                    (
                        text.trim_end_matches(['\r', '\n']).to_string(),
                        format!("pin_file {}", path.display()),
                    )
                }
                (None, Some(var)) => {
                    let Some((_, value)) = env.iter().find(|(k, _)| k == var) else {
                        return bad("pin_env", var, "this environment variable is not set");
                    };
                    (value.clone(), format!("pin_env {var}"))
                }
            };
            if pin.is_empty() {
                return bad("pin_file", "[redacted]", "the PIN is empty");
            }
            out.push(Pkcs11Config {
                name: s.name.clone(),
                module,
                token_label: s.token_label.clone(),
                pin: Pin::new(pin),
                pin_source,
                max_sessions: s.max_sessions,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> Vec<Pkcs11Section> {
        let text = format!("name = \"hsm\"\nmodule = \"/bin/sh\"\ntoken_label = \"t\"\n{extra}");
        vec![toml::from_str(&text).unwrap()]
    }

    fn resolve(p: &Path) -> PathBuf {
        p.to_path_buf()
    }

    #[test]
    fn the_pin_comes_from_the_environment_and_never_prints() {
        let env = vec![("HSM_PIN".to_string(), "s3cret-pin".to_string())];
        let cfg =
            Pkcs11Config::validate_all(&section("pin_env = \"HSM_PIN\""), &env, &resolve).unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret-pin"), "{shown}");
        assert!(shown.contains("pin_env HSM_PIN"), "{shown}");
        use secrecy::ExposeSecret;
        assert_eq!(cfg[0].pin.secret().expose_secret(), "s3cret-pin");
    }

    #[test]
    fn a_pin_in_the_file_is_refused_without_echoing_it() {
        let err = Pkcs11Config::validate_all(&section("pin = \"s3cret-pin\""), &[], &resolve)
            .unwrap_err();
        assert_eq!(err.0, "keys.pkcs11[0].pin");
        assert!(!format!("{err:?}").contains("s3cret-pin"));
        let err =
            Pkcs11Config::validate_all(&section("pin_env = \"NOPE\""), &[], &resolve).unwrap_err();
        assert_eq!(err.0, "keys.pkcs11[0].pin_env");
        let err = Pkcs11Config::validate_all(&section(""), &[], &resolve).unwrap_err();
        assert!(err.2.contains("exactly one"), "{err:?}");
    }
}

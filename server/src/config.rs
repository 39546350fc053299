//! Configuration: a TOML file overlaid by `KEYWARD_*` environment variables, validated once
//! at start-up into `Config`.
//!
//! Environment overlay: `KEYWARD_SECTION__KEY=value` sets `[section] key = value` (a double
//! underscore separates levels; values parse as TOML, else as a string). `KEYWARD_KEK` (the
//! key-encryption key itself) and `KEYWARD_LOG` are not configuration keys. Secrets never come
//! from the TOML file: the KEK is read from `KEYWARD_KEK` or `keys.kek_file`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::IssuerSettings;
use crate::keys::Kek;

/// Errors in the configuration. Each names the key and the bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML (with the environment overlay) does not fit the schema.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {key} = {value:?}: {reason}")]
    Invalid {
        /// The key, e.g. `server.listen`.
        key: String,
        /// The value given.
        value: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

fn invalid(key: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The configuration file's schema.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// HTTP server settings.
    #[serde(default)]
    pub server: ServerSection,
    /// Where state lives.
    pub storage: StorageSection,
    /// Key backends.
    #[serde(default)]
    pub keys: KeysSection,
    /// Authentication.
    #[serde(default)]
    pub auth: AuthSection,
    /// Policy defaults.
    #[serde(default)]
    pub policy: PolicySection,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Listen address, e.g. `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest accepted request body, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_max_body() -> usize {
    1024 * 1024
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Data directory (the database lives here unless `database` says otherwise).
    pub data_dir: PathBuf,
    /// SQLite database file (default `<data_dir>/keyward.db`).
    #[serde(default)]
    pub database: Option<PathBuf>,
}

/// `[keys]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// File holding the 32-byte KEK (hex, base64 or raw). `KEYWARD_KEK` takes precedence.
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Clock leeway for `exp` and `nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Run the development issuer (as `keyward dev` does). Off in production.
    #[serde(default)]
    pub dev_issuer: bool,
    /// Trusted token issuers.
    #[serde(default)]
    pub issuers: Vec<IssuerSection>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            leeway_seconds: default_leeway(),
            dev_issuer: false,
            issuers: Vec::new(),
        }
    }
}

fn default_leeway() -> u64 {
    60
}

/// `[[auth.issuers]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// A JWKS file with the issuer's public keys.
    pub jwks_file: PathBuf,
    /// Allowed algorithms (default: RS256, PS256, ES256, EdDSA).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// JSON pointer to the roles claim.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
}

fn default_roles_claim() -> String {
    "/roles".into()
}

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
}

/// Validated `[policy]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyConfig {
    /// Sandbox limits.
    pub limits: crate::policy::LimitsConfig,
    /// Built-in policies bound to new keys.
    pub bind_on_create: Vec<String>,
}

impl PolicySection {
    fn validate(&self) -> Result<PolicyConfig, ConfigError> {
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
        Ok(PolicyConfig {
            limits,
            bind_on_create: self.bind_on_create.clone(),
        })
    }
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

/// An issuer trusted through a static JWKS file.
#[derive(Debug, Clone)]
pub struct StaticIssuer {
    /// Verification settings.
    pub settings: IssuerSettings,
    /// The JWKS file.
    pub jwks_file: PathBuf,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Data directory.
    pub data_dir: PathBuf,
    /// SQLite file.
    pub database: PathBuf,
    /// The KEK.
    pub kek: Kek,
    /// Clock leeway.
    pub leeway_seconds: u64,
    /// Whether the development issuer runs.
    pub dev_issuer: bool,
    /// Issuers with static key sets.
    pub issuers: Vec<StaticIssuer>,
    /// Default policy decision.
    pub default_decision: DefaultDecision,
    /// Policy engine limits and built-in bindings.
    pub policy: PolicyConfig,
}

/// Environment variables that start with `KEYWARD_` but are not configuration keys.
const NOT_CONFIG: &[&str] = &["KEYWARD_KEK", "KEYWARD_LOG"];

impl Config {
    /// Reads `path`, overlays the environment, validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let value: toml::Table = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_table(value, std::env::vars(), base)
    }

    /// Builds a config from a TOML table and environment variables; relative paths are
    /// resolved against `base`.
    pub fn from_table(
        mut table: toml::Table,
        env: impl Iterator<Item = (String, String)>,
        base: &Path,
    ) -> Result<Self, ConfigError> {
        let mut kek_env = None;
        for (name, value) in env {
            if name == "KEYWARD_KEK" {
                kek_env = Some(value);
                continue;
            }
            let Some(rest) = name.strip_prefix("KEYWARD_") else {
                continue;
            };
            if NOT_CONFIG.contains(&name.as_str()) {
                continue;
            }
            overlay(&mut table, &rest.to_ascii_lowercase(), &value);
        }
        let file: FileConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        Self::validate(file, kek_env, base)
    }

    fn validate(
        file: FileConfig,
        kek_env: Option<String>,
        base: &Path,
    ) -> Result<Self, ConfigError> {
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let listen: SocketAddr = file.server.listen.parse().map_err(|_| {
            invalid(
                "server.listen",
                &file.server.listen,
                "expected HOST:PORT, e.g. 127.0.0.1:8080",
            )
        })?;
        if file.server.max_body_bytes < 1024 {
            return Err(invalid(
                "server.max_body_bytes",
                file.server.max_body_bytes,
                "must be at least 1024",
            ));
        }
        let data_dir = resolve(&file.storage.data_dir);
        let database = file
            .storage
            .database
            .as_deref()
            .map(resolve)
            .unwrap_or_else(|| data_dir.join("keyward.db"));
        let kek = match (kek_env, &file.keys.kek_file) {
            (Some(text), _) => Kek::parse(text.as_bytes())
                .map_err(|reason| invalid("KEYWARD_KEK", "[redacted]", reason))?,
            (None, Some(path)) => {
                let path = resolve(path);
                let bytes = std::fs::read(&path).map_err(|e| {
                    invalid("keys.kek_file", path.display(), format!("cannot read: {e}"))
                })?;
                Kek::parse(&bytes)
                    .map_err(|reason| invalid("keys.kek_file", path.display(), reason))?
            }
            (None, None) => {
                return Err(invalid(
                    "keys.kek_file",
                    "",
                    "no key-encryption key: set KEYWARD_KEK or keys.kek_file",
                ));
            }
        };
        if !file.auth.dev_issuer && file.auth.issuers.is_empty() {
            return Err(invalid(
                "auth.issuers",
                "[]",
                "no token issuer is configured; add an [[auth.issuers]] entry",
            ));
        }
        let mut issuers = Vec::new();
        for (i, section) in file.auth.issuers.iter().enumerate() {
            let key = |k: &str| format!("auth.issuers[{i}].{k}");
            if !section.issuer.starts_with("https://") && !section.issuer.starts_with("http://") {
                return Err(invalid(
                    &key("issuer"),
                    &section.issuer,
                    "must be an http(s) URL",
                ));
            }
            if section.audiences.is_empty() {
                return Err(invalid(
                    &key("audiences"),
                    "[]",
                    "at least one audience is required",
                ));
            }
            if !section.roles_claim.starts_with('/') {
                return Err(invalid(
                    &key("roles_claim"),
                    &section.roles_claim,
                    "must be a JSON pointer such as /roles",
                ));
            }
            let names = if section.algorithms.is_empty() {
                vec![
                    "RS256".to_string(),
                    "PS256".into(),
                    "ES256".into(),
                    "EdDSA".into(),
                ]
            } else {
                section.algorithms.clone()
            };
            let mut algorithms = Vec::new();
            for name in &names {
                let alg: jsonwebtoken::Algorithm = name
                    .parse()
                    .map_err(|_| invalid(&key("algorithms"), name, "unknown JWS algorithm"))?;
                if matches!(
                    alg,
                    jsonwebtoken::Algorithm::HS256
                        | jsonwebtoken::Algorithm::HS384
                        | jsonwebtoken::Algorithm::HS512
                ) {
                    return Err(invalid(
                        &key("algorithms"),
                        name,
                        "symmetric algorithms are not accepted; use RS*, PS*, ES* or EdDSA",
                    ));
                }
                algorithms.push(alg);
            }
            issuers.push(StaticIssuer {
                settings: IssuerSettings {
                    issuer: section.issuer.trim_end_matches('/').to_string(),
                    audiences: section.audiences.clone(),
                    algorithms,
                    roles_claim: section.roles_claim.clone(),
                    leeway_seconds: file.auth.leeway_seconds,
                },
                jwks_file: resolve(&section.jwks_file),
            });
        }
        Ok(Config {
            listen,
            max_body_bytes: file.server.max_body_bytes,
            data_dir,
            database,
            kek,
            leeway_seconds: file.auth.leeway_seconds,
            dev_issuer: file.auth.dev_issuer,
            issuers,
            default_decision: file.policy.default_decision,
            policy: file.policy.validate()?,
        })
    }
}

fn overlay(table: &mut toml::Table, path: &str, raw: &str) {
    let mut parts: Vec<&str> = path.split("__").collect();
    let Some(last) = parts.pop() else { return };
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    current.insert(last.to_string(), value);
}

/// Writes a file readable only by its owner (for secrets).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?
    };
    #[cfg(not(unix))]
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    const KEK: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn environment_overlays_nested_keys() {
        let cfg = Config::from_table(
            table("[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n"),
            env(&[
                ("KEYWARD_KEK", KEK),
                ("KEYWARD_POLICY__DEFAULT_DECISION", "allow"),
                ("KEYWARD_SERVER__MAX_BODY_BYTES", "4096"),
                ("OTHER", "x"),
            ]),
            Path::new("/base"),
        )
        .unwrap();
        assert_eq!(cfg.default_decision, DefaultDecision::Allow);
        assert_eq!(cfg.max_body_bytes, 4096);
        assert_eq!(cfg.database, Path::new("/base/d/keyward.db"));
    }

    #[test]
    fn policy_limits_are_validated() {
        let base = "[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n";
        let cfg = Config::from_table(
            table(&format!(
                "{base}[policy]\nfuel = 5000\nbind_on_create = [\"allow-all\"]\n"
            )),
            env(&[
                ("KEYWARD_KEK", KEK),
                ("KEYWARD_POLICY__MAX_TIMEOUT_MS", "300"),
            ]),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(cfg.policy.limits.default.fuel, 5000);
        assert_eq!(cfg.policy.limits.max.timeout_ms, 300);
        assert_eq!(cfg.policy.bind_on_create, ["allow-all"]);
        let err = Config::from_table(
            table(&format!(
                "{base}[policy]\ntimeout_ms = 500\nmax_timeout_ms = 100\n"
            )),
            env(&[("KEYWARD_KEK", KEK)]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("policy.timeout_ms") && err.contains("500"),
            "{err}"
        );
        let err = Config::from_table(
            table(&format!("{base}[policy]\nbind_on_create = [\"nope\"]\n")),
            env(&[("KEYWARD_KEK", KEK)]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("bind_on_create") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_key_and_value() {
        let err = Config::from_table(
            table("[storage]\ndata_dir = \"d\"\n[server]\nlisten = \"nowhere\"\n"),
            env(&[("KEYWARD_KEK", KEK)]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("server.listen") && err.contains("nowhere"),
            "{err}"
        );

        let err = Config::from_table(
            table("[storage]\ndata_dir = \"d\"\nbogus = 1\n"),
            env(&[("KEYWARD_KEK", KEK)]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bogus"), "{err}");

        let err = Config::from_table(
            table("[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n"),
            env(&[("KEYWARD_KEK", "short")]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("KEYWARD_KEK") && !err.contains("short"),
            "{err}"
        );
    }

    #[test]
    fn a_production_config_needs_an_issuer_and_a_kek() {
        let err = Config::from_table(
            table("[storage]\ndata_dir = \"d\"\n"),
            env(&[("KEYWARD_KEK", KEK)]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("auth.issuers"), "{err}");
        let err = Config::from_table(
            table("[storage]\ndata_dir = \"d\"\n[auth]\ndev_issuer = true\n"),
            env(&[]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("KEYWARD_KEK"), "{err}");
    }
}

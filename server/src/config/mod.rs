//! Configuration: a TOML file overlaid by `KEYWARD_*` environment variables, validated once
//! at start-up into `Config`.
//!
//! Environment overlay: `KEYWARD_SECTION__KEY=value` sets `[section] key = value` (a double
//! underscore separates levels; values parse as TOML, else as a string). `KEYWARD_KEK` (the
//! key-encryption key itself) and `KEYWARD_LOG` are not configuration keys. Secrets never come
//! from the TOML file: the KEK is read from `KEYWARD_KEK` or `keys.kek_file`.
//!
//! Parts: this module (the file schema, the overlay and the validated `Config`), `auth`,
//! `documents`, `policy`, `approvals`, `csc` and `ui` (their sections and validation), `tests`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use std::time::Duration;

use crate::auth::JwksCacheSettings;
use crate::keys::Kek;
pub use crate::policy::DefaultDecision;

mod approvals;
mod auth;
mod csc;
mod documents;
mod policy;
mod storage;
#[cfg(test)]
mod tests;
mod ui;

use approvals::validate_approvals;
pub use approvals::{ApprovalsConfig, ApprovalsSection};
use auth::validate_issuers;
pub use auth::{AuthSection, IssuerConfig, IssuerKeys, IssuerSection, RoleNames};
pub use csc::CscConfig;
use documents::validate_documents;
pub use documents::{DocumentsConfig, DocumentsSection};
pub use policy::{PolicyConfig, PolicySection, ReplayRetention};
pub use ui::{UiConfig, UiSection, UiSignIn};

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

/// `value`, at `key`, must be an `http://` or `https://` URL.
fn http_url(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.starts_with("https://") || value.starts_with("http://") {
        Ok(())
    } else {
        Err(invalid(key, value, "must be an http(s) URL"))
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
    /// Document signing: the internal CA and size limits.
    #[serde(default)]
    pub documents: DocumentsSection,
    /// The approval workflow.
    #[serde(default)]
    pub approvals: ApprovalsSection,
    /// The CSC API.
    #[serde(default)]
    pub csc: CscConfig,
    /// The approvers' web page.
    #[serde(default)]
    pub ui: UiSection,
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
    /// This node's name in logs and audit records (default: the host name).
    #[serde(default)]
    pub node_id: Option<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            node_id: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_max_body() -> usize {
    1024 * 1024
}

pub use storage::StorageSection;

/// `[keys]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeysSection {
    /// File holding the 32-byte KEK (hex, base64 or raw). `KEYWARD_KEK` takes precedence.
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
    /// PKCS#11 backends (`[[keys.pkcs11]]`).
    #[serde(default)]
    pub pkcs11: Vec<crate::keys::pkcs11::Pkcs11Section>,
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
    /// SQLite file (unused when `postgres` is set).
    pub database: PathBuf,
    /// PostgreSQL, when configured: the database of several nodes.
    pub postgres: Option<crate::store::PostgresOptions>,
    /// This node's name.
    pub node_id: String,
    /// The KEK.
    pub kek: Kek,
    /// Clock leeway.
    pub leeway_seconds: u64,
    /// Whether the development issuer runs.
    pub dev_issuer: bool,
    /// Configured issuers.
    pub issuers: Vec<IssuerConfig>,
    /// JWKS cache and fetch settings.
    pub jwks_cache: JwksCacheSettings,
    /// Default policy decision.
    pub default_decision: DefaultDecision,
    /// Document signing settings.
    pub documents: DocumentsConfig,
    /// The approval workflow.
    pub approvals: ApprovalsConfig,
    /// PKCS#11 backends.
    pub pkcs11: Vec<crate::keys::pkcs11::Pkcs11Config>,
    /// Policy engine limits and built-in bindings.
    pub policy: PolicyConfig,
    /// The CSC API.
    pub csc: CscConfig,
    /// The approvers' web page.
    pub ui: UiConfig,
}

/// Environment variables that start with `KEYWARD_` but are not configuration keys.
const NOT_CONFIG: &[&str] = &[
    "KEYWARD_KEK",
    "KEYWARD_LOG",
    "KEYWARD_WEBHOOK_SECRET",
    crate::store::scratch::TEST_POSTGRES_ENV,
];

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
        let mut webhook_secret_env = None;
        let env: Vec<(String, String)> = env.collect();
        for (name, value) in env.iter().cloned() {
            if name == "KEYWARD_KEK" {
                kek_env = Some(value);
                continue;
            }
            if name == "KEYWARD_WEBHOOK_SECRET" {
                webhook_secret_env = Some(value);
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
        Self::validate(file, kek_env, webhook_secret_env, &env, base)
    }

    fn validate(
        file: FileConfig,
        kek_env: Option<String>,
        webhook_secret_env: Option<String>,
        env: &[(String, String)],
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
        let postgres = file.storage.postgres(&resolve)?;
        let node_id = match &file.server.node_id {
            Some(id) if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_control()) => {
                return Err(invalid(
                    "server.node_id",
                    id,
                    "must be 1 to 64 printable characters",
                ));
            }
            Some(id) => id.clone(),
            None => storage::hostname(),
        };
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
        let issuers = validate_issuers(&file.auth, &resolve)?;
        let documents = validate_documents(&file.documents, &resolve)?;
        let approvals = validate_approvals(&file.approvals, webhook_secret_env, &resolve)?;
        let a = &file.auth;
        if a.jwks_min_cache_seconds > a.jwks_max_cache_seconds {
            return Err(invalid(
                "auth.jwks_min_cache_seconds",
                a.jwks_min_cache_seconds,
                "must not exceed auth.jwks_max_cache_seconds",
            ));
        }
        if a.jwks_refetch_cooldown_seconds == 0 {
            return Err(invalid(
                "auth.jwks_refetch_cooldown_seconds",
                0,
                "must be at least 1",
            ));
        }
        if a.fetch_timeout_seconds == 0 || a.fetch_timeout_seconds > 120 {
            return Err(invalid(
                "auth.fetch_timeout_seconds",
                a.fetch_timeout_seconds,
                "must be 1 to 120",
            ));
        }
        let jwks_cache = JwksCacheSettings {
            default_ttl: Duration::from_secs(a.jwks_cache_seconds),
            min_ttl: Duration::from_secs(a.jwks_min_cache_seconds),
            max_ttl: Duration::from_secs(a.jwks_max_cache_seconds),
            refetch_cooldown: Duration::from_secs(a.jwks_refetch_cooldown_seconds),
            fetch_timeout: Duration::from_secs(a.fetch_timeout_seconds),
        };
        let pkcs11 =
            crate::keys::pkcs11::Pkcs11Config::validate_all(&file.keys.pkcs11, env, &resolve)
                .map_err(|(key, value, reason)| invalid(&key, value, reason))?;
        Ok(Config {
            approvals,
            pkcs11,
            listen,
            max_body_bytes: file.server.max_body_bytes,
            data_dir,
            database,
            postgres,
            node_id,
            kek,
            leeway_seconds: file.auth.leeway_seconds,
            dev_issuer: file.auth.dev_issuer,
            issuers,
            jwks_cache,
            default_decision: file.policy.default_decision,
            documents,
            policy: file.policy.validate()?,
            csc: file.csc.validate()?,
            ui: file.ui.validate()?,
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

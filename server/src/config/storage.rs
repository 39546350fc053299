//! `[storage]`: SQLite in the data directory (one node, the default), or PostgreSQL for
//! several nodes on one database.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::store::PostgresOptions;

/// `[storage]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Data directory (the SQLite database lives here unless `database` says otherwise; the
    /// development issuer's key always does).
    pub data_dir: PathBuf,
    /// SQLite database file (default `<data_dir>/keyward.db`).
    #[serde(default)]
    pub database: Option<PathBuf>,
    /// PostgreSQL, `postgres://user@host:5432/keyward`: when set, the database of every node
    /// that names it. No password in it (see `password_file`).
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the PostgreSQL password (trailing newline ignored). Without it, the
    /// password comes from `PGPASSWORD` or `~/.pgpass`, as for `psql`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL connections per node at most (two of them the audit writer's and the
    /// grouped usage reads').
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a PostgreSQL connection before it fails with `503`, ms.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
}

fn default_max_connections() -> u32 {
    16
}

fn default_acquire_timeout_ms() -> u64 {
    5_000
}

impl StorageSection {
    /// The PostgreSQL settings, when `url` is set.
    pub(super) fn postgres(
        &self,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Option<PostgresOptions>, ConfigError> {
        let Some(url) = &self.url else {
            if self.password_file.is_some() {
                return Err(invalid(
                    "storage.password_file",
                    "(set)",
                    "applies to PostgreSQL only: set storage.url too",
                ));
            }
            return Ok(None);
        };
        let Some(rest) = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
        else {
            return Err(invalid(
                "storage.url",
                redact(url),
                "expected postgres://user@host:port/database",
            ));
        };
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && userinfo.contains(':')
        {
            return Err(invalid(
                "storage.url",
                redact(url),
                "must not hold a password: use storage.password_file \
                 (KEYWARD_STORAGE__PASSWORD_FILE) or PGPASSWORD",
            ));
        }
        if self.database.is_some() {
            return Err(invalid(
                "storage.database",
                "(set)",
                "is the SQLite file; with storage.url the database is PostgreSQL",
            ));
        }
        // The hot connections, and at least one for everything else (see `Store::hot_pool`).
        let least = crate::store::HOT_CONNECTIONS + 1;
        if !(least..=1000).contains(&self.max_connections) {
            return Err(invalid(
                "storage.max_connections",
                self.max_connections,
                format!(
                    "must be between {least} and 1000 ({} are the audit writer's and the \
                     usage reads')",
                    crate::store::HOT_CONNECTIONS
                ),
            ));
        }
        if !(100..=600_000).contains(&self.acquire_timeout_ms) {
            return Err(invalid(
                "storage.acquire_timeout_ms",
                self.acquire_timeout_ms,
                "must be between 100 and 600000",
            ));
        }
        let password = match &self.password_file {
            Some(path) => {
                let path = resolve(path);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    invalid(
                        "storage.password_file",
                        path.display(),
                        format!("cannot be read: {e}"),
                    )
                })?;
                let password = text.trim_end_matches(['\r', '\n']).to_string();
                if password.is_empty() {
                    return Err(invalid("storage.password_file", path.display(), "is empty"));
                }
                Some(password)
            }
            None => None,
        };
        Ok(Some(PostgresOptions {
            url: url.clone(),
            password,
            max_connections: self.max_connections,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
        }))
    }
}

/// A URL as it may be shown in an error: the user part dropped.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}[user]{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// This machine's host name, the default `server.node_id`.
pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "keyward".into())
}

//! `[approvals]`: the approval workflow's limits and webhook.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, http_url, invalid};

/// `[approvals]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// Longest `?wait=` a caller may ask for on `GET /v1/requests/{id}`, seconds.
    #[serde(default = "default_max_wait")]
    pub max_wait_seconds: u64,
    /// Longest time a request may wait for approvers, whatever a policy asks, seconds.
    #[serde(default = "default_max_ttl")]
    pub max_ttl_seconds: u64,
    /// Largest quorum a policy may ask for.
    #[serde(default = "default_max_quorum")]
    pub max_quorum: u32,
    /// How often expired requests are swept, seconds.
    #[serde(default = "default_sweep")]
    pub sweep_interval_seconds: u64,
    /// URL that receives a JSON event on each state change (optional).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// File holding the webhook HMAC secret (`KEYWARD_WEBHOOK_SECRET` takes precedence).
    #[serde(default)]
    pub webhook_secret_file: Option<PathBuf>,
}

impl Default for ApprovalsSection {
    fn default() -> Self {
        ApprovalsSection {
            max_wait_seconds: default_max_wait(),
            max_ttl_seconds: default_max_ttl(),
            max_quorum: default_max_quorum(),
            sweep_interval_seconds: default_sweep(),
            webhook_url: None,
            webhook_secret_file: None,
        }
    }
}

fn default_max_wait() -> u64 {
    60
}
fn default_max_ttl() -> u64 {
    7 * 24 * 3600
}
fn default_max_quorum() -> u32 {
    16
}
fn default_sweep() -> u64 {
    5
}

/// The validated `[approvals]` settings.
#[derive(Clone)]
pub struct ApprovalsConfig {
    /// Longest long-poll.
    pub max_wait_seconds: u64,
    /// Longest request lifetime.
    pub max_ttl_seconds: u64,
    /// Largest quorum.
    pub max_quorum: u32,
    /// Sweep interval.
    pub sweep_interval_seconds: u64,
    /// Webhook URL.
    pub webhook_url: Option<String>,
    /// Webhook HMAC secret.
    pub webhook_secret: Option<zeroize::Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for ApprovalsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalsConfig")
            .field("max_wait_seconds", &self.max_wait_seconds)
            .field("max_ttl_seconds", &self.max_ttl_seconds)
            .field("max_quorum", &self.max_quorum)
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

pub(super) fn validate_approvals(
    a: &ApprovalsSection,
    secret_env: Option<String>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<ApprovalsConfig, ConfigError> {
    if a.max_wait_seconds == 0 || a.max_wait_seconds > 3600 {
        return Err(invalid(
            "approvals.max_wait_seconds",
            a.max_wait_seconds,
            "must be 1 to 3600",
        ));
    }
    if a.max_ttl_seconds == 0 {
        return Err(invalid(
            "approvals.max_ttl_seconds",
            a.max_ttl_seconds,
            "must be positive",
        ));
    }
    if a.max_quorum == 0 {
        return Err(invalid(
            "approvals.max_quorum",
            a.max_quorum,
            "must be at least 1",
        ));
    }
    if a.sweep_interval_seconds == 0 {
        return Err(invalid(
            "approvals.sweep_interval_seconds",
            0,
            "must be at least 1",
        ));
    }
    if let Some(url) = &a.webhook_url {
        http_url("approvals.webhook_url", url)?;
    }
    let webhook_secret = match (secret_env, &a.webhook_secret_file) {
        (Some(s), _) => Some(zeroize::Zeroizing::new(s.into_bytes())),
        (None, Some(path)) => {
            let path = resolve(path);
            let bytes = std::fs::read(&path).map_err(|e| {
                invalid(
                    "approvals.webhook_secret_file",
                    path.display(),
                    format!("cannot read: {e}"),
                )
            })?;
            Some(zeroize::Zeroizing::new(bytes.trim_ascii().to_vec()))
        }
        (None, None) => None,
    };
    if a.webhook_url.is_some() && webhook_secret.is_none() {
        return Err(invalid(
            "approvals.webhook_url",
            a.webhook_url.as_deref().unwrap_or_default(),
            "a webhook needs a secret: set KEYWARD_WEBHOOK_SECRET or approvals.webhook_secret_file",
        ));
    }
    Ok(ApprovalsConfig {
        max_wait_seconds: a.max_wait_seconds,
        max_ttl_seconds: a.max_ttl_seconds,
        max_quorum: a.max_quorum,
        sweep_interval_seconds: a.sweep_interval_seconds,
        webhook_url: a.webhook_url.clone(),
        webhook_secret,
    })
}

//! `[ui]`: the approvers' web page at `/ui/` and how it signs people in.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, http_url, invalid};

/// `[ui]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UiSection {
    /// Serve the page (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The OpenID provider people sign in with (its `issuer`). Unset under `keyward dev`: the
    /// development issuer's login page.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The page's client id at that provider (a public client with PKCE).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The redirect URI registered for it (default: this server's `/ui/`, as the browser
    /// reaches it).
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Scopes asked for (default `openid`).
    #[serde(default)]
    pub scope: Option<String>,
    /// Extra authorization request parameters, e.g. `{ audience = "keyward" }` (Auth0) or
    /// `{ resource = "urn:keyward:api" }` (RFC 8707).
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
}

/// Where the page signs people in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSignIn {
    /// The provider's issuer URL.
    pub issuer: String,
    /// The page's client id.
    pub client_id: String,
    /// The redirect URI, when configured.
    pub redirect_uri: Option<String>,
    /// Scopes.
    pub scope: String,
    /// Extra authorization parameters.
    pub authorize_params: BTreeMap<String, String>,
}

/// The validated `[ui]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiConfig {
    /// Whether `/ui/` is served.
    pub enabled: bool,
    /// The provider; `None`: the development issuer when it runs, else no sign-in.
    pub sign_in: Option<UiSignIn>,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            sign_in: None,
        }
    }
}

/// An http(s) URL with a host and no white space (the page builds URLs from it).
fn page_url(key: &str, value: &str) -> Result<(), ConfigError> {
    http_url(key, value)?;
    let host = value.split("://").nth(1).unwrap_or_default();
    if host.is_empty() || value.contains(char::is_whitespace) {
        return Err(invalid(key, value, "must be an http(s) URL"));
    }
    Ok(())
}

impl UiSection {
    /// Checks the section.
    pub fn validate(&self) -> Result<UiConfig, ConfigError> {
        let sign_in = match (&self.issuer, &self.client_id) {
            (None, None) => {
                if self.redirect_uri.is_some() || !self.authorize_params.is_empty() {
                    return Err(invalid(
                        "ui.issuer",
                        "",
                        "ui.redirect_uri and ui.authorize_params need ui.issuer and ui.client_id",
                    ));
                }
                None
            }
            (Some(_), None) => {
                return Err(invalid("ui.client_id", "", "ui.issuer needs ui.client_id"));
            }
            (None, Some(_)) => {
                return Err(invalid("ui.issuer", "", "ui.client_id needs ui.issuer"));
            }
            (Some(issuer), Some(client_id)) => {
                page_url("ui.issuer", issuer)?;
                if client_id.is_empty() || client_id.len() > 200 {
                    return Err(invalid("ui.client_id", client_id, "must be 1 to 200 bytes"));
                }
                if let Some(uri) = &self.redirect_uri {
                    page_url("ui.redirect_uri", uri)?;
                }
                for name in self.authorize_params.keys() {
                    let reserved = [
                        "response_type",
                        "client_id",
                        "redirect_uri",
                        "scope",
                        "state",
                        "code_challenge",
                        "code_challenge_method",
                    ];
                    if reserved.contains(&name.as_str()) {
                        return Err(invalid(
                            "ui.authorize_params",
                            name,
                            "is set by the page itself",
                        ));
                    }
                }
                Some(UiSignIn {
                    issuer: issuer.trim_end_matches('/').to_string(),
                    client_id: client_id.clone(),
                    redirect_uri: self.redirect_uri.clone(),
                    scope: self.scope.clone().unwrap_or_else(|| "openid".into()),
                    authorize_params: self.authorize_params.clone(),
                })
            }
        };
        Ok(UiConfig {
            enabled: self.enabled.unwrap_or(true),
            sign_in,
        })
    }
}

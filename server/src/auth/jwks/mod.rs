//! Where an issuer's keys come from, and the cache of remote key sets.
//!
//! A remote issuer's keys are fetched only from its configured `jwks_uri`, or from the
//! `jwks_uri` of its discovery document (`<issuer>/.well-known/openid-configuration`, whose
//! `issuer` must equal the configured one). Never from a URL named in a token.
//!
//! The cache: a key set lives for the `Cache-Control: max-age` of its response, kept within
//! the configured bounds. A token whose `kid` is unknown triggers at most one refetch per
//! cooldown, and concurrent requests share one fetch (single flight). When the IdP cannot be
//! reached, the keys already cached keep working. Cache hits take a read lock only long enough
//! to clone an `Arc`; no lock is held across an await on the hot path.
//!
//! Fetches have a timeout, follow redirects only to the same host, and stop reading a body
//! past `MAX_DOCUMENT_BYTES`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm as JwtAlg;
use serde_json::Value;

use super::keyset::{KeySet, Lookup, VerifyKey};
use super::{AuthError, Result};

/// The largest discovery or JWKS document read.
pub const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

/// Cache and fetch settings shared by remote issuers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksCacheSettings {
    /// Lifetime of a key set whose response has no `max-age`.
    pub default_ttl: Duration,
    /// Lower bound on a key set's lifetime.
    pub min_ttl: Duration,
    /// Upper bound on a key set's lifetime.
    pub max_ttl: Duration,
    /// Least time between two fetches caused by unknown `kid`s (or failed fetches).
    pub refetch_cooldown: Duration,
    /// Timeout of each HTTP request.
    pub fetch_timeout: Duration,
}

impl Default for JwksCacheSettings {
    fn default() -> Self {
        JwksCacheSettings {
            default_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(86_400),
            refetch_cooldown: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// An issuer's keys: fixed, or fetched and cached.
pub(crate) enum KeySource {
    /// A fixed key set (a JWKS file or the development issuer).
    Static(KeySet),
    /// Fetched from the issuer.
    Remote(Box<RemoteKeys>),
}

/// Whether an issuer's keys are usable, for `/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStatus {
    /// The issuer.
    pub issuer: String,
    /// Whether a key set was ever loaded.
    pub loaded: bool,
    /// Usable keys in the current set.
    pub keys: usize,
    /// The last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
}

impl KeySource {
    /// Finds the key for `kid`/`alg` (refetching when allowed) and runs `verify` with it;
    /// also gives the generation of the key set the key came from (see `fresh_generation`).
    pub(crate) async fn with_key<T>(
        &self,
        kid: Option<&str>,
        alg: JwtAlg,
        verify: impl FnOnce(&VerifyKey) -> Result<T>,
    ) -> Result<(T, u64)> {
        match self {
            KeySource::Static(keys) => match keys.lookup(kid, alg) {
                Lookup::Found(key) => Ok((verify(key)?, 0)),
                _ => Err(no_key()),
            },
            KeySource::Remote(remote) => remote.with_key(kid, alg, verify).await,
        }
    }

    /// The generation of the current key set while it may be used without a refresh: a
    /// fixed set is always generation 0; a remote set gets a new generation with every fetch
    /// attempt, and has none once its refresh time passed (the next verification refreshes).
    pub(crate) fn fresh_generation(&self) -> Option<u64> {
        match self {
            KeySource::Static(_) => Some(0),
            KeySource::Remote(remote) => {
                let snap = remote.snapshot();
                (snap.loaded && snap.expires > Instant::now()).then_some(snap.generation)
            }
        }
    }
}

fn no_key() -> AuthError {
    AuthError::Invalid("no key of the issuer matches the token's kid and alg".into())
}

struct Cached {
    keys: Arc<KeySet>,
    loaded: bool,
    expires: Instant,
    /// Bumped by every fetch attempt, successful or not.
    generation: u64,
}

/// A remote issuer's key set, cached.
pub(crate) struct RemoteKeys {
    issuer: String,
    jwks_uri: Option<String>,
    algorithms: Vec<JwtAlg>,
    settings: JwksCacheSettings,
    http: reqwest::Client,
    current: RwLock<Arc<Cached>>,
    /// Held by the one task fetching; others wait and then use its result.
    fetch_lock: tokio::sync::Mutex<()>,
    last_attempt: Mutex<Option<Instant>>,
    discovered_uri: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
    fetches: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RemoteKeys {
    /// A cache for `issuer`, fetching from `jwks_uri` or, without one, through discovery.
    pub(crate) fn new(
        issuer: &str,
        jwks_uri: Option<String>,
        algorithms: Vec<JwtAlg>,
        settings: JwksCacheSettings,
    ) -> Result<Self> {
        let max_redirects = 5;
        let http = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .connect_timeout(settings.fetch_timeout)
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                let origin = |u: &reqwest::Url| {
                    (
                        u.scheme().to_string(),
                        u.host_str().map(str::to_string),
                        u.port_or_known_default(),
                    )
                };
                let first = attempt.previous().first().map(origin);
                let next = origin(attempt.url());
                if attempt.previous().len() > max_redirects {
                    attempt.error("too many redirects")
                } else if first == Some(next) {
                    attempt.follow()
                } else {
                    attempt.error("redirect to another host refused")
                }
            }))
            .build()
            .map_err(|e| AuthError::Config(format!("HTTP client for {issuer}: {e}")))?;
        Ok(RemoteKeys {
            issuer: issuer.to_string(),
            jwks_uri,
            algorithms,
            settings,
            http,
            current: RwLock::new(Arc::new(Cached {
                keys: Arc::new(KeySet::default()),
                loaded: false,
                expires: Instant::now(),
                generation: 0,
            })),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_attempt: Mutex::new(None),
            discovered_uri: Mutex::new(None),
            last_error: Mutex::new(None),
            fetches: AtomicU64::new(0),
        })
    }

    fn snapshot(&self) -> Arc<Cached> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn with_key<T>(
        &self,
        kid: Option<&str>,
        alg: JwtAlg,
        verify: impl FnOnce(&VerifyKey) -> Result<T>,
    ) -> Result<(T, u64)> {
        let mut snap = self.snapshot();
        if snap.expires <= Instant::now() {
            self.refresh(snap.generation).await;
            snap = self.snapshot();
        }
        if matches!(snap.keys.lookup(kid, alg), Lookup::UnknownKid) && kid.is_some() {
            // An unknown kid may be a new key of the IdP: refetch, once per cooldown.
            self.refresh(snap.generation).await;
            snap = self.snapshot();
        }
        if !snap.loaded {
            return Err(AuthError::Invalid(
                "the issuer's keys could not be loaded; try again later".into(),
            ));
        }
        match snap.keys.lookup(kid, alg) {
            Lookup::Found(key) => Ok((verify(key)?, snap.generation)),
            _ => Err(no_key()),
        }
    }

    /// Fetches the key set unless another task fetched since `seen_generation` or the last
    /// attempt is within the cooldown. Concurrent callers share one fetch.
    pub(crate) async fn refresh(&self, seen_generation: u64) {
        let _guard = self.fetch_lock.lock().await;
        if self.snapshot().generation != seen_generation {
            return;
        }
        let recent =
            lock(&self.last_attempt).is_some_and(|t| t.elapsed() < self.settings.refetch_cooldown);
        if recent {
            return;
        }
        *lock(&self.last_attempt) = Some(Instant::now());
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch().await;
        let previous = self.snapshot();
        let next = match result {
            Ok((keys, ttl)) => {
                *lock(&self.last_error) = None;
                Cached {
                    keys: Arc::new(keys),
                    loaded: true,
                    expires: Instant::now() + ttl,
                    generation: previous.generation + 1,
                }
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "fetching the issuer's keys failed");
                *lock(&self.last_error) = Some(e);
                // Keep the keys we have; try again after the cooldown.
                Cached {
                    keys: Arc::clone(&previous.keys),
                    loaded: previous.loaded,
                    expires: Instant::now() + self.settings.refetch_cooldown,
                    generation: previous.generation + 1,
                }
            }
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    }

    /// Status for `/health/ready`.
    pub(crate) fn status(&self) -> IssuerStatus {
        let snap = self.snapshot();
        IssuerStatus {
            issuer: self.issuer.clone(),
            loaded: snap.loaded,
            keys: snap.keys.len(),
            last_error: lock(&self.last_error).clone(),
        }
    }

    /// The current generation (for `refresh`).
    pub(crate) fn generation(&self) -> u64 {
        self.snapshot().generation
    }

    /// How many fetches were attempted.
    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    async fn fetch(&self) -> std::result::Result<(KeySet, Duration), String> {
        let uri = match &self.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let cached = lock(&self.discovered_uri).clone();
                match cached {
                    Some(uri) => uri,
                    None => {
                        let uri = self.discover().await?;
                        *lock(&self.discovered_uri) = Some(uri.clone());
                        uri
                    }
                }
            }
        };
        let (body, max_age) = match self.get_json(&uri).await {
            Ok(ok) => ok,
            Err(e) => {
                // The discovered location may have moved: discover again next time.
                *lock(&self.discovered_uri) = None;
                return Err(e);
            }
        };
        let keys = body
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{uri} is not a JWK set (no keys array)"))?;
        let set = KeySet::from_jwks(keys, &self.algorithms);
        let s = &self.settings;
        let ttl = max_age.unwrap_or(s.default_ttl).clamp(s.min_ttl, s.max_ttl);
        Ok((set, ttl))
    }

    async fn discover(&self) -> std::result::Result<String, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let (doc, _) = self.get_json(&url).await?;
        let issuer = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if issuer != self.issuer {
            return Err(format!(
                "the discovery document names issuer {issuer:?}, not {:?}",
                self.issuer
            ));
        }
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| "the discovery document has no jwks_uri".to_string())?;
        if !(uri.starts_with("https://") || uri.starts_with("http://")) {
            return Err(format!("jwks_uri {uri:?} is not an http(s) URL"));
        }
        Ok(uri.to_string())
    }

    async fn get_json(&self, url: &str) -> std::result::Result<(Value, Option<Duration>), String> {
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", resp.status()));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        let max_age = resp
            .headers()
            .get_all(reqwest::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let value =
            serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
        Ok((value, max_age))
    }
}

/// `max-age` of a `Cache-Control` value; `no-store`/`no-cache` count as zero (the minimum
/// lifetime then applies).
fn parse_max_age(value: &str) -> Option<Duration> {
    let mut found = None;
    for directive in value.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = directive.strip_prefix("max-age=") {
            found = n
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    found
}

#[cfg(test)]
mod tests;

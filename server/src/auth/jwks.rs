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

use super::jwt::{KeySet, Lookup, VerifyKey};
use super::{AuthError, Principal, Result};

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
    /// Finds the key for `kid`/`alg` (refetching when allowed) and runs `verify` with it.
    pub(crate) async fn with_key(
        &self,
        kid: Option<&str>,
        alg: JwtAlg,
        verify: impl FnOnce(&VerifyKey) -> Result<Principal>,
    ) -> Result<Principal> {
        match self {
            KeySource::Static(keys) => match keys.lookup(kid, alg) {
                Lookup::Found(key) => verify(key),
                _ => Err(no_key()),
            },
            KeySource::Remote(remote) => remote.with_key(kid, alg, verify).await,
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

    async fn with_key(
        &self,
        kid: Option<&str>,
        alg: JwtAlg,
        verify: impl FnOnce(&VerifyKey) -> Result<Principal>,
    ) -> Result<Principal> {
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
            Lookup::Found(key) => verify(key),
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
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback HTTP server answering each request with `answer(path)` (raw head + body),
    /// or never answering when it returns `None`. Counts requests.
    async fn http_server(
        answer: impl Fn(&str, u16) -> Option<(String, Vec<u8>)> + Send + Sync + 'static,
    ) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    counter.fetch_add(1, Ordering::SeqCst);
                    match answer(&path, port) {
                        Some((head, body)) => {
                            let _ = socket.write_all(head.as_bytes()).await;
                            let _ = socket.write_all(&body).await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        (port, hits)
    }

    fn ok(body: Vec<u8>, extra: &str) -> Option<(String, Vec<u8>)> {
        Some((
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n{extra}\r\n",
                body.len()
            ),
            body,
        ))
    }

    fn redirect(to: String) -> Option<(String, Vec<u8>)> {
        Some((
            format!(
                "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n"
            ),
            Vec::new(),
        ))
    }

    const JWKS: &str = r#"{"keys":[
        {"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"a",
         "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty":"OKP","crv":"Ed25519","use":"enc","kid":"e",
         "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty":"oct","k":"c2VjcmV0","kid":"o","alg":"HS256"},
        {"kty":"RSA","kid":"broken","n":"!!","e":"AQAB"}]}"#;

    fn settings() -> JwksCacheSettings {
        JwksCacheSettings {
            fetch_timeout: Duration::from_secs(1),
            ..JwksCacheSettings::default()
        }
    }

    fn remote(uri: String) -> RemoteKeys {
        RemoteKeys::new(
            "http://issuer.test",
            Some(uri),
            vec![JwtAlg::EdDSA, JwtAlg::RS256],
            settings(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn only_signature_keys_load_and_concurrent_refreshes_share_one_fetch() {
        let (port, hits) = http_server(|_, _| ok(JWKS.as_bytes().to_vec(), "")).await;
        let keys = Arc::new(remote(format!("http://127.0.0.1:{port}/jwks")));
        let seen = keys.generation();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let k = keys.clone();
                tokio::spawn(async move { k.refresh(seen).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let status = keys.status();
        assert!(status.loaded, "{status:?}");
        // The `enc` key, the symmetric key and the unparsable key are skipped.
        assert_eq!(status.keys, 1);
        // Within the cooldown, another refresh does not fetch.
        keys.refresh(keys.generation()).await;
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn redirects_to_other_hosts_are_refused_and_same_host_ones_followed() {
        let (port, _) = http_server(|path, port| match path {
            "/elsewhere" => redirect(format!("http://localhost:{port}/jwks")),
            "/here" => redirect(format!("http://127.0.0.1:{port}/jwks")),
            _ => ok(JWKS.as_bytes().to_vec(), ""),
        })
        .await;
        let away = remote(format!("http://127.0.0.1:{port}/elsewhere"));
        away.refresh(0).await;
        let status = away.status();
        assert!(!status.loaded);
        let err = status.last_error.unwrap();
        assert!(err.contains("redirect"), "{err}");
        let here = remote(format!("http://127.0.0.1:{port}/here"));
        here.refresh(0).await;
        assert!(here.status().loaded);
    }

    #[tokio::test]
    async fn large_slow_or_failed_answers_keep_the_cached_keys() {
        let mode = Arc::new(AtomicUsize::new(0));
        let m = mode.clone();
        let (port, _) = http_server(move |_, _| match m.load(Ordering::SeqCst) {
            0 => ok(JWKS.as_bytes().to_vec(), "cache-control: max-age=0\r\n"),
            1 => ok(vec![b' '; MAX_DOCUMENT_BYTES + 1], ""),
            2 => None,
            _ => Some((
                "HTTP/1.1 500 Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
                Vec::new(),
            )),
        })
        .await;
        let mut s = settings();
        s.refetch_cooldown = Duration::from_millis(1);
        s.min_ttl = Duration::ZERO;
        let keys = RemoteKeys::new(
            "http://issuer.test",
            Some(format!("http://127.0.0.1:{port}/jwks")),
            vec![JwtAlg::EdDSA],
            s,
        )
        .unwrap();
        keys.refresh(0).await;
        assert_eq!(keys.status().keys, 1);
        for (m, want) in [(1, "larger than"), (2, "GET"), (3, "HTTP 500")] {
            mode.store(m, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            keys.refresh(keys.generation()).await;
            let status = keys.status();
            assert!(status.loaded, "{m}");
            assert_eq!(status.keys, 1, "{m}");
            let err = status.last_error.unwrap();
            assert!(err.contains(want), "{m}: {err}");
        }
    }

    #[tokio::test]
    async fn discovery_must_name_the_configured_issuer() {
        let (port, _) = http_server(|path, port| match path {
            "/.well-known/openid-configuration" => ok(
                format!(
                    r#"{{"issuer":"http://127.0.0.1:{port}/other","jwks_uri":"http://127.0.0.1:{port}/jwks"}}"#
                )
                .into_bytes(),
                "",
            ),
            "/good/.well-known/openid-configuration" => ok(
                format!(
                    r#"{{"issuer":"http://127.0.0.1:{port}/good","jwks_uri":"http://127.0.0.1:{port}/jwks"}}"#
                )
                .into_bytes(),
                "",
            ),
            _ => ok(JWKS.as_bytes().to_vec(), ""),
        })
        .await;
        let wrong = RemoteKeys::new(
            &format!("http://127.0.0.1:{port}"),
            None,
            vec![JwtAlg::EdDSA],
            settings(),
        )
        .unwrap();
        wrong.refresh(0).await;
        assert!(!wrong.status().loaded);
        assert!(wrong.status().last_error.unwrap().contains("names issuer"));
        let good = RemoteKeys::new(
            &format!("http://127.0.0.1:{port}/good"),
            None,
            vec![JwtAlg::EdDSA],
            settings(),
        )
        .unwrap();
        good.refresh(0).await;
        assert!(good.status().loaded);
    }

    #[test]
    fn cache_control_gives_the_lifetime() {
        assert_eq!(
            parse_max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}

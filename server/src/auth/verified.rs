//! Tokens verified recently, so that a caller sending the same bearer token again is not
//! verified again (an EdDSA or RSA check costs tens of microseconds; the lookup, one SHA-256).
//!
//! An entry is keyed by the SHA-256 of the whole token and used only while all of these hold:
//! - the token has not expired (its `exp`, without leeway) and the entry is younger than
//!   `MAX_AGE`;
//! - the issuer's key set is the one that verified it: every fetch of a remote key set, whether
//!   it succeeds or not, starts a new generation, and an entry of another generation is never
//!   used, so a key removed from the JWKS stops admitting its tokens at the first refresh that
//!   sees it gone; and a key set past its refresh time is refreshed first, as without the
//!   cache.
//!
//! The cache holds at most `MAX_ENTRIES`; when full, expired entries are dropped, and if that
//! frees nothing the cache starts empty again. Refused tokens are never cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::Digest as _;

use super::Principal;

/// How long an entry is used at most.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// How many tokens are kept at most.
pub const MAX_ENTRIES: usize = 10_000;

struct Entry {
    principal: Principal,
    until: Instant,
    generation: u64,
}

/// Recently verified tokens of one issuer.
#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl std::fmt::Debug for VerifiedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens").finish_non_exhaustive()
    }
}

/// The cache key of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

impl VerifiedTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The principal of a token verified with the key set of `generation`, if it is still
    /// good to use.
    pub fn get(&self, hash: &[u8; 32], generation: u64) -> Option<Principal> {
        let mut entries = self.lock();
        let entry = entries.get(hash)?;
        if entry.generation == generation && entry.until > Instant::now() {
            return Some(entry.principal.clone());
        }
        entries.remove(hash);
        None
    }

    /// Remembers a token verified with the key set of `generation` whose `exp` is `exp`
    /// (Unix seconds).
    pub fn put(&self, hash: [u8; 32], generation: u64, exp: f64, principal: &Principal) {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(f64::MAX);
        let left = exp - now_unix;
        if !left.is_finite() || left <= 0.0 {
            return;
        }
        let life = Duration::from_secs_f64(left.min(MAX_AGE.as_secs_f64()));
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.until > now && e.generation == generation);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            hash,
            Entry {
                principal: principal.clone(),
                until: now + life,
                generation,
            },
        );
    }

    /// How many tokens are kept (for tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no token is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            issuer: "iss".into(),
            subject: "alice".into(),
            roles: Vec::new(),
            other_roles: Vec::new(),
            groups: Vec::new(),
            email: None,
            name: None,
            acr: None,
            amr: Vec::new(),
        }
    }

    fn in_secs(s: f64) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + s
    }

    #[test]
    fn an_entry_serves_only_its_generation_and_is_then_dropped() {
        let cache = VerifiedTokens::default();
        let h = token_hash("t1");
        cache.put(h, 3, in_secs(600.0), &alice());
        assert_eq!(cache.get(&h, 3).unwrap().subject, "alice");
        assert!(cache.get(&h, 4).is_none(), "a new key set drops the entry");
        assert!(cache.get(&h, 3).is_none(), "and it does not come back");
        assert!(cache.get(&token_hash("t2"), 3).is_none());
    }

    #[test]
    fn expired_tokens_are_not_kept_and_entries_end_with_the_token() {
        let cache = VerifiedTokens::default();
        cache.put(token_hash("old"), 1, in_secs(-1.0), &alice());
        assert!(cache.is_empty());
        let h = token_hash("short");
        cache.put(h, 1, in_secs(0.05), &alice());
        assert!(cache.get(&h, 1).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(
            cache.get(&h, 1).is_none(),
            "the entry ended at the token's exp"
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::default();
        for i in 0..(MAX_ENTRIES + 10) {
            cache.put(token_hash(&format!("t{i}")), 1, in_secs(600.0), &alice());
        }
        assert!(cache.len() <= MAX_ENTRIES, "{}", cache.len());
    }
}

//! Loaded keys, cached in memory so that a sign request does not unseal (or look up an HSM
//! object) on every call. The cache is per process and is invalidated on every status change
//! this process makes; keys are never removed from the database, only disabled.
//!
//! A fill (the load after a miss) reads the key row, unseals off-thread, and only then writes
//! the cache. A change that commits and invalidates in between must not be undone by that
//! write: every invalidation bumps a generation, and a fill stores its entry only if the
//! generation it started from is still current. (A request that loaded the key before the
//! change may still be in flight; the audit writer's gate, `store::gate`, refuses its
//! signature.) It must never serve an entry older than the last invalidation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use super::{Algorithm, KeyBackend, KeyError, PublicKey, Purpose, SigningKey};
use crate::store::{KeyRow, KeyStatus, Store, StoreError};

/// A key's public facts.
#[derive(Debug, Clone)]
pub struct KeyMeta {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Purpose.
    pub purpose: Purpose,
    /// Backend name.
    pub backend: String,
    /// Status.
    pub status: KeyStatus,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Public key.
    pub public_key: PublicKey,
    /// Created at (RFC 3339).
    pub created_at: String,
    /// Created by (`issuer|subject`).
    pub created_by: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Who may sign with it (see `auth::signers`); empty admits every signer.
    pub signers: Vec<String>,
}

impl KeyMeta {
    /// Reads a stored row.
    pub fn from_row(row: &KeyRow) -> Result<Self, StoreError> {
        let corrupt =
            |what: &str, e: String| StoreError::Corrupt(format!("key {}: {what}: {e}", row.id));
        let algorithm: Algorithm = row.algorithm.parse().map_err(|e| corrupt("algorithm", e))?;
        let purpose: Purpose = row.purpose.parse().map_err(|e| corrupt("purpose", e))?;
        let labels =
            serde_json::from_str(&row.labels).map_err(|e| corrupt("labels", e.to_string()))?;
        let signers =
            serde_json::from_str(&row.signers).map_err(|e| corrupt("signers", e.to_string()))?;
        let public_key = PublicKey::from_spki_der(algorithm, row.public_key.clone())
            .map_err(|e| corrupt("public key", e.to_string()))?;
        Ok(KeyMeta {
            id: row.id.clone(),
            name: row.name.clone(),
            algorithm,
            purpose,
            backend: row.backend.clone(),
            status: row.status,
            labels,
            public_key,
            created_at: row.created_at.clone(),
            created_by: row.created_by.clone(),
            updated_at: row.updated_at.clone(),
            signers,
        })
    }

    /// The wire form handed to policies.
    pub fn to_wire(&self) -> keyward_policy::KeyInfo {
        keyward_policy::KeyInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            algorithm: self.algorithm.to_string(),
            purpose: self.purpose.to_string(),
            backend: self.backend.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// A key ready to use: its facts and, when active, its signer.
pub struct LoadedKey {
    /// Public facts.
    pub meta: KeyMeta,
    /// The signer; `None` when the key is disabled.
    pub signer: Option<Arc<dyn SigningKey>>,
}

/// Errors resolving a key.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The backend could not load the key.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Loaded keys by id, and the configured backends.
pub struct KeyRegistry {
    store: Store,
    backends: HashMap<String, Arc<dyn KeyBackend>>,
    cache: RwLock<Cache>,
}

/// Cached keys and the generation of the last invalidation.
#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<LoadedKey>>,
    generation: u64,
}

impl KeyRegistry {
    /// A registry over `store` with `backends`.
    pub fn new(store: Store, backends: Vec<Arc<dyn KeyBackend>>) -> Self {
        KeyRegistry {
            store,
            backends: backends
                .into_iter()
                .map(|b| (b.name().to_string(), b))
                .collect(),
            cache: RwLock::new(Cache::default()),
        }
    }

    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Result<Arc<dyn KeyBackend>, KeyError> {
        self.backends
            .get(name)
            .cloned()
            .ok_or_else(|| KeyError::UnknownBackend(name.to_string()))
    }

    /// Every configured backend.
    pub fn backends(&self) -> impl Iterator<Item = &Arc<dyn KeyBackend>> {
        self.backends.values()
    }

    /// The key `id`, loading and caching it on first use; `None` if there is no such key.
    pub async fn resolve(&self, id: &str) -> Result<Option<Arc<LoadedKey>>, ResolveError> {
        let generation = {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = cache.keys.get(id) {
                return Ok(Some(hit.clone()));
            }
            cache.generation
        };
        let Some(row) = self.store.key(id).await? else {
            return Ok(None);
        };
        let meta = KeyMeta::from_row(&row)?;
        let signer = if meta.status == KeyStatus::Active {
            let backend = self.backend(&meta.backend)?;
            let (id, alg, material) = (row.id.clone(), meta.algorithm, row.material.clone());
            let signer = tokio::task::spawn_blocking(move || backend.load(&id, alg, &material))
                .await
                .map_err(|e| KeyError::Unavailable(format!("key loading task failed: {e}")))??;
            Some(signer)
        } else {
            None
        };
        let loaded = Arc::new(LoadedKey { meta, signer });
        let mut cache = self.write();
        // Something changed since the row was read: this entry may be stale, so it is used
        // for this one request only (and its signature still passes the writer's gate).
        if cache.generation == generation {
            cache.keys.insert(id.to_string(), loaded.clone());
        }
        Ok(Some(loaded))
    }

    fn write(&self) -> RwLockWriteGuard<'_, Cache> {
        // Every change under this lock is one map operation or a counter increment, so a
        // poisoned lock holds consistent data.
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a key just created into the cache.
    pub fn insert(&self, key: LoadedKey) {
        self.write().keys.insert(key.meta.id.clone(), Arc::new(key));
    }

    /// Forgets a cached key (after its status changed), and stops any fill that read the key
    /// before now from caching what it read.
    pub fn invalidate(&self, id: &str) {
        let mut cache = self.write();
        cache.generation = cache.generation.wrapping_add(1);
        cache.keys.remove(id);
    }

    /// The number of invalidations so far (for tests).
    pub fn generation(&self) -> u64 {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }
}

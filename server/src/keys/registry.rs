//! Loaded keys, cached in memory so that a sign request does not unseal (or look up an HSM
//! object) on every call. The cache is per process and is invalidated on every status change
//! this process makes; keys are never removed from the database, only disabled.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

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
    cache: RwLock<HashMap<String, Arc<LoadedKey>>>,
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
            cache: RwLock::new(HashMap::new()),
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
        if let Some(hit) = self.cache.read().ok().and_then(|c| c.get(id).cloned()) {
            return Ok(Some(hit));
        }
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
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(id.to_string(), loaded.clone());
        }
        Ok(Some(loaded))
    }

    /// Puts a key just created into the cache.
    pub fn insert(&self, key: LoadedKey) {
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(key.meta.id.clone(), Arc::new(key));
        }
    }

    /// Forgets a cached key (after its status changed).
    pub fn invalidate(&self, id: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(id);
        }
    }
}

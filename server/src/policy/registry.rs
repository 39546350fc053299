//! Compiled modules and key bindings, cached in memory.
//!
//! A module is compiled once (at upload, or on first use after a restart) and kept as an
//! `InstancePre`. A key's bindings (ordered policies with their settings) are read from the
//! database on first use and cached until a change to them invalidates the entry. A load that
//! raced with an invalidation is not cached.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{CompiledPolicy, PolicyEngine, PolicyError, PolicyLimits};
use crate::store::{PolicyRow, Store, StoreError};

/// A policy with its compiled module.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// Policy id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The compiled module.
    pub compiled: CompiledPolicy,
    /// The trusted signer's signature it was uploaded with, if any.
    pub signature: Option<crate::store::ModuleSignature>,
}

/// One binding of a key: the policy and the settings it runs with.
#[derive(Debug, Clone)]
pub struct BoundPolicy {
    /// The policy.
    pub policy: Arc<LoadedPolicy>,
    /// Its settings (`null` when none).
    pub settings: serde_json::Value,
}

type Bindings = Arc<Vec<BoundPolicy>>;

/// The cache. Cheap to clone.
#[derive(Clone)]
pub struct PolicyRegistry {
    engine: PolicyEngine,
    store: Store,
    modules: Arc<Mutex<HashMap<String, Arc<LoadedPolicy>>>>,
    bindings: Arc<Mutex<HashMap<String, (i64, Bindings)>>>,
    generation: Arc<AtomicU64>,
}

impl PolicyRegistry {
    /// An empty cache over `store`.
    pub fn new(engine: PolicyEngine, store: Store) -> Self {
        PolicyRegistry {
            engine,
            store,
            modules: Default::default(),
            bindings: Default::default(),
            generation: Default::default(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// Caches a module compiled at upload.
    pub fn insert(&self, policy: LoadedPolicy) -> Arc<LoadedPolicy> {
        let policy = Arc::new(policy);
        lock(&self.modules).insert(policy.id.clone(), policy.clone());
        policy
    }

    /// Forgets a policy (after it was deleted).
    pub fn remove(&self, policy_id: &str) {
        lock(&self.modules).remove(policy_id);
    }

    /// Forgets a key's bindings (after they changed).
    pub fn invalidate_key(&self, key_id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        lock(&self.bindings).remove(key_id);
    }

    /// The compiled policy `policy_id`, loading and compiling it if needed.
    pub async fn policy(&self, policy_id: &str) -> Result<Option<Arc<LoadedPolicy>>, PolicyError> {
        if let Some(p) = lock(&self.modules).get(policy_id) {
            return Ok(Some(p.clone()));
        }
        let Some(row) = self.store.policy(policy_id).await? else {
            return Ok(None);
        };
        Ok(Some(self.load(row).await?))
    }

    async fn load(&self, row: PolicyRow) -> Result<Arc<LoadedPolicy>, PolicyError> {
        let limits: PolicyLimits = serde_json::from_str(&row.limits)
            .map_err(|e| StoreError::Corrupt(format!("policy {} limits: {e}", row.id)))?;
        let module = Arc::new(row.module);
        let compiled = self
            .engine
            .run_blocking(move |e| e.compile(&module, limits))
            .await??;
        if compiled.digest != row.digest {
            return Err(StoreError::Corrupt(format!(
                "policy {} module does not match its digest",
                row.id
            ))
            .into());
        }
        Ok(self.insert(LoadedPolicy {
            id: row.id,
            name: row.name,
            version: row.version,
            compiled,
            signature: row.signature,
        }))
    }

    /// The policies bound to `key_id`, in order.
    pub async fn bindings(&self, key_id: &str) -> Result<Bindings, PolicyError> {
        Ok(self.versioned_bindings(key_id).await?.1)
    }

    /// The key's policies version (see `store::gate`) with its bindings.
    pub async fn versioned_bindings(&self, key_id: &str) -> Result<(i64, Bindings), PolicyError> {
        if let Some(b) = lock(&self.bindings).get(key_id) {
            return Ok(b.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let (version, rows) = self.store.key_bindings_versioned(key_id).await?;
        let mut bound = Vec::with_capacity(rows.len());
        for row in rows {
            let policy = self.policy(&row.policy_id).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("binding to missing policy {}", row.policy_id))
            })?;
            let settings = serde_json::from_str(&row.settings)
                .map_err(|e| StoreError::Corrupt(format!("binding settings: {e}")))?;
            bound.push(BoundPolicy { policy, settings });
        }
        let bound = (version, Arc::new(bound));
        let mut cache = lock(&self.bindings);
        if self.generation.load(Ordering::SeqCst) == generation {
            cache.insert(key_id.to_string(), bound.clone());
        }
        Ok(bound)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

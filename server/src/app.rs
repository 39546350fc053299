//! Builds the server's state from a validated `Config`: the signing path (store, audit
//! writer, keys, policy stage, approval notices), the key backends, the authenticator and
//! document signing. Only the server shell (`api`, `main`, `commands`) sees `AppState`; the
//! route tree is `api::routes`.

use std::sync::Arc;

use crate::audit::AuditLog;
use crate::auth::dev_issuer::DevIssuer;
use crate::auth::{Authenticator, IssuerVerifier};
use crate::config::{Config, IssuerKeys};
use crate::documents::Documents;
use crate::keys::pkcs11::Pkcs11Backend;
use crate::keys::{Algorithm, Kek, KeyBackend, KeyRegistry, SealedKey, SoftwareBackend};
use crate::notify::ApprovalHub;
use crate::pipeline::{SigningParts, SigningPath};
use crate::policy::PolicyStage;
use crate::store::Store;

/// Errors at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Authentication could not be set up.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The KEK does not open this database's keys.
    #[error(
        "the key-encryption key does not match the one this database was created with \
         (check KEYWARD_KEK or keys.kek_file)"
    )]
    WrongKek,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

struct Inner {
    config: Config,
    signing: SigningPath,
    software: SoftwareBackend,
    hsm: std::collections::BTreeMap<String, Arc<Pkcs11Backend>>,
    auth: Authenticator,
    dev_issuer: Option<DevIssuer>,
    public_url: String,
    documents: Documents,
}

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

const KEK_CHECK: &str = "kek_check";

impl AppState {
    /// Opens storage, checks the KEK, starts the audit writer and sets up authentication.
    /// `public_url` is the server's base URL (the development issuer's identifier on first start).
    pub async fn build(config: Config, public_url: &str) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            StartError::Other(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let store = match &config.postgres {
            Some(options) => Store::open_postgres(options).await?,
            None => Store::open_file(&config.database).await?,
        }
        .with_node_id(&config.node_id);
        check_kek(&store, &config.kek).await?;
        let audit = AuditLog::start(store.clone()).await?;
        let software = SoftwareBackend::new(config.kek.clone());
        let mut backends: Vec<Arc<dyn KeyBackend>> = vec![Arc::new(software.clone())];
        let mut hsm = std::collections::BTreeMap::new();
        for cfg in config.pkcs11.clone() {
            let started = tokio::task::spawn_blocking(move || Pkcs11Backend::start(cfg))
                .await
                .map_err(|e| StartError::Other(format!("PKCS#11 start-up task failed: {e}")))?;
            let started = Arc::new(started);
            hsm.insert(started.name().to_string(), started.clone());
            backends.push(started);
        }
        let keys = KeyRegistry::new(store.clone(), backends);

        let mut verifiers = Vec::new();
        let dev_issuer = if config.dev_issuer {
            let issuer = DevIssuer::load_or_create(&config.data_dir, public_url)?;
            verifiers.push(issuer.verifier(config.leeway_seconds)?);
            Some(issuer)
        } else {
            None
        };
        for issuer in &config.issuers {
            let verifier = match &issuer.keys {
                IssuerKeys::File(path) => {
                    let text = std::fs::read(path).map_err(|e| {
                        StartError::Other(format!("cannot read JWKS file {}: {e}", path.display()))
                    })?;
                    let jwks = serde_json::from_slice(&text).map_err(|e| {
                        StartError::Other(format!(
                            "JWKS file {} is not a JWK set: {e}",
                            path.display()
                        ))
                    })?;
                    IssuerVerifier::new(issuer.settings.clone(), &jwks)?
                }
                IssuerKeys::Remote(jwks_uri) => Authenticator::remote_issuer(
                    issuer.settings.clone(),
                    jwks_uri.clone(),
                    config.jwks_cache,
                )?,
            };
            verifiers.push(verifier);
        }
        let auth = Authenticator::new(verifiers);
        // Load remote key sets in the background: an IdP that is down does not stop the
        // server, and `/health/ready` says which issuer has no keys yet.
        let loader = auth.clone();
        tokio::spawn(async move { loader.load_missing_keys().await });
        let engine = crate::policy::PolicyEngine::new(config.policy.limits.clone())
            .map_err(|e| StartError::Other(e.to_string()))?;
        let registry = crate::policy::PolicyRegistry::new(engine, store.clone());
        let bind_on_create = crate::lifecycle::policies::ensure_builtins(
            &store,
            &audit,
            &registry,
            &config.policy.bind_on_create,
        )
        .await
        .map_err(|e| StartError::Other(format!("built-in policies: {e}")))?;
        let policy = PolicyStage::new(config.default_decision, registry, store.clone())
            .with_bind_on_create(bind_on_create)
            .with_kept_inputs(config.policy.replay.keeps())
            .with_trusted_signers(config.policy.trusted_signers.clone());
        for (row, keys) in
            crate::lifecycle::policies::unvouched_bound(&store, &config.policy.trusted_signers)
                .await?
        {
            tracing::warn!(
                policy_id = %row.id, name = %row.name, version = %row.version, keys,
                "a bound policy has no signature from policy.trusted_signers; its bindings stay \
                 in force until the keys are bound again"
            );
        }
        let approvals = ApprovalHub::new(
            store.clone(),
            config.approvals.webhook_url.clone(),
            config.approvals.webhook_secret.clone(),
        );
        let documents = Documents::start(
            config.documents.clone(),
            &store,
            &audit,
            software.clone(),
            public_url,
        )
        .await
        .map_err(|e| StartError::Other(format!("document signing: {e}")))?;
        let signing = SigningPath::new(SigningParts {
            store: store.clone(),
            audit,
            keys,
            policy,
            notify: approvals,
            approvals: config.approvals.clone(),
        });
        crate::approvals::spawn_background(signing.clone());
        spawn_reservation_vacuum(store.clone());
        spawn_usage_pruning(store.clone());
        spawn_input_pruning(store, config.policy.replay);
        Ok(AppState(Arc::new(Inner {
            auth,
            config,
            signing,
            software,
            hsm,
            dev_issuer,
            public_url: public_url.trim_end_matches('/').to_string(),
            documents,
        })))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }
    /// The signing path (store, audit writer, keys, policies, approval notices).
    pub fn signing(&self) -> &SigningPath {
        &self.0.signing
    }
    /// The software slot backend (for imports).
    pub fn software(&self) -> &SoftwareBackend {
        &self.0.software
    }
    /// The PKCS#11 backend named `name`.
    pub fn hsm(&self, name: &str) -> Option<&Arc<Pkcs11Backend>> {
        self.0.hsm.get(name)
    }
    /// The token verifier.
    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }
    /// The development issuer, when enabled.
    pub fn dev_issuer(&self) -> Option<&DevIssuer> {
        self.0.dev_issuer.as_ref()
    }
    /// Document signing: the internal CA, trust anchors and limits.
    pub fn documents(&self) -> &Documents {
        &self.0.documents
    }
    /// The server's base URL.
    pub fn public_url(&self) -> &str {
        &self.0.public_url
    }
}

async fn check_kek(store: &Store, kek: &Kek) -> Result<(), StartError> {
    let fresh = SealedKey::seal(kek, KEK_CHECK, Algorithm::Ed25519, b"keyward")
        .map_err(|e| StartError::Other(e.to_string()))?;
    let stored = store.meta_init(KEK_CHECK, fresh.as_bytes()).await?;
    SealedKey::from_stored(stored)
        .open(kek, KEK_CHECK, Algorithm::Ed25519)
        .map(|_| ())
        .map_err(|_| StartError::WrongKek)
}

/// On PostgreSQL, vacuums the usage reservations every second (see
/// `Store::vacuum_reservations`). A failure is logged once (e.g. a database role that does not
/// own the table); the loop keeps trying, as the next attempt may succeed.
fn spawn_reservation_vacuum(store: Store) {
    if store.dialect() != crate::store::Dialect::Postgres {
        return;
    }
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            match store.vacuum_reservations().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "vacuuming the usage reservations failed; reads of usage slow down until it succeeds");
                }
                Err(_) => {}
            }
        }
    });
}

/// Drops the policy inputs kept for replays beyond their retention: at start, then every
/// ten minutes (by age and by count; see `store::inputs`).
fn spawn_input_pruning(store: Store, retention: crate::config::ReplayRetention) {
    tokio::spawn(async move {
        loop {
            let (_, now) = crate::clock::now();
            let before = now.saturating_sub(i64::from(retention.days) * 86_400);
            // With no retention every input goes, including those of an earlier setting.
            let keep = if retention.keeps() {
                retention.max_inputs
            } else {
                0
            };
            if let Err(e) = store.prune_policy_inputs(before, keep).await {
                tracing::warn!(error = %e, "pruning the policy inputs kept for replays failed");
            }
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
    });
}

/// Drops usage buckets no policy window can reach any more: at start, then every hour.
fn spawn_usage_pruning(store: Store) {
    tokio::spawn(async move {
        loop {
            let (_, now) = crate::clock::now();
            if let Err(e) = store.prune_reservations(now).await {
                tracing::warn!(error = %e, "pruning expired usage reservations failed");
            }
            if let Err(e) = store.prune_usage(now).await {
                tracing::warn!(error = %e, "pruning usage counters failed");
            }
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    });
}

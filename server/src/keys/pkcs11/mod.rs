//! PKCS#11 backends: keys that live in an HSM (or SoftHSM2) and never leave it.
//!
//! Parts:
//! - `config`: the `[[keys.pkcs11]]` schema and the redacted PIN.
//! - `pool`: the module, the token found by label, the login and a bounded session pool that
//!   recovers by itself after token faults.
//! - `objects`: key pair generation, adoption of existing keys, public key reading, listings.
//! - `signing`: `TokenKey`, the `SigningKey` of a token key (mechanisms and output formats).
//!
//! What this backend stores in Keyward's database is only a reference: the key's label, its
//! `CKA_ID` and its public key. It never falls back to a software key, never logs the PIN,
//! and every call into the module blocks, so callers run it off the async runtime.

mod config;
mod objects;
mod pool;
mod signing;

use std::sync::Arc;

use serde::Serialize;

pub use config::{Pin, Pkcs11Config, Pkcs11Section};
pub use objects::{KeySelector, TokenKeyRef, TokenObject};
use pool::SessionPool;
use signing::TokenKey;

use super::{Algorithm, GeneratedKey, KeyBackend, KeyError, Result, SigningKey};

/// One configured PKCS#11 backend.
pub struct Pkcs11Backend {
    pool: Arc<SessionPool>,
}

/// A slot of the module, as listed for administrators.
#[derive(Debug, Clone, Serialize)]
pub struct SlotView {
    /// The slot id the module gave (it may change between runs; tokens are found by label).
    pub slot_id: u64,
    /// Slot description.
    pub description: String,
    /// Whether a token is present.
    pub token_present: bool,
    /// The token's label, when present.
    pub token_label: Option<String>,
    /// Token manufacturer.
    pub manufacturer: Option<String>,
    /// Token model.
    pub model: Option<String>,
    /// Token serial number.
    pub serial_number: Option<String>,
    /// Whether this is the token the backend is configured for.
    pub configured: bool,
}

/// A key adopted from the token.
pub struct AdoptedKey {
    /// The algorithm found.
    pub algorithm: Algorithm,
    /// The key, ready to be recorded.
    pub generated: GeneratedKey,
    /// Where it lives on the token.
    pub at: TokenKeyRef,
}

impl Pkcs11Backend {
    /// Starts the backend: loads the module and logs in now. A failure (a wrong PIN, a missing
    /// token) is logged and leaves the backend not ready; the server still starts.
    pub fn start(config: Pkcs11Config) -> Self {
        let pool = Arc::new(SessionPool::new(config));
        // A failure is logged by the pool, once, with what to do about it.
        let _ = pool.connect_now();
        Pkcs11Backend { pool }
    }

    /// The backend's configuration.
    pub fn config(&self) -> &Pkcs11Config {
        self.pool.config()
    }

    fn loaded(&self, algorithm: Algorithm, at: &TokenKeyRef) -> Result<Arc<dyn SigningKey>> {
        Ok(Arc::new(TokenKey::new(self.pool.clone(), algorithm, at)?))
    }

    fn material(at: &TokenKeyRef) -> Result<Vec<u8>> {
        serde_json::to_vec(at)
            .map_err(|e| KeyError::InvalidKeyMaterial(format!("token reference: {e}")))
    }

    /// Takes over an existing private key on the token, found by label or id. Blocks.
    pub fn adopt(&self, selector: &KeySelector) -> Result<AdoptedKey> {
        let mut session = self.pool.checkout()?;
        let found = objects::find_for_adoption(&mut session, selector)?;
        drop(session);
        let at = TokenKeyRef {
            label: found.label,
            id: hex::encode(&found.id),
            public_key: spki_b64(&found.public_key),
        };
        let generated = GeneratedKey {
            key: self.loaded(found.algorithm, &at)?,
            public_key: found.public_key,
            material: Self::material(&at)?,
        };
        Ok(AdoptedKey {
            algorithm: found.algorithm,
            generated,
            at,
        })
    }

    /// The module's slots and tokens. Blocks.
    pub fn slots(&self) -> Result<Vec<SlotView>> {
        let label = self.config().token_label.clone();
        self.pool.with_module(|ctx, configured| {
            let mut out = Vec::new();
            for slot in ctx.get_all_slots()? {
                let info = ctx.get_slot_info(slot)?;
                let token = if info.token_present() {
                    Some(ctx.get_token_info(slot)?)
                } else {
                    None
                };
                out.push(SlotView {
                    slot_id: slot.id(),
                    description: info.slot_description().trim_end().to_string(),
                    token_present: info.token_present(),
                    token_label: token.as_ref().map(|t| t.label().trim_end().to_string()),
                    manufacturer: token
                        .as_ref()
                        .map(|t| t.manufacturer_id().trim_end().to_string()),
                    model: token.as_ref().map(|t| t.model().trim_end().to_string()),
                    serial_number: token
                        .as_ref()
                        .map(|t| t.serial_number().trim_end().to_string()),
                    configured: slot == configured
                        && token
                            .as_ref()
                            .is_some_and(|t| t.label().trim_end() == label),
                });
            }
            Ok(out)
        })
    }

    /// The key objects on the token (public facts and flags only). Blocks.
    pub fn objects(&self) -> Result<Vec<TokenObject>> {
        let mut session = self.pool.checkout()?;
        objects::list_objects(&session).map_err(|e| session.fault("listing objects", e))
    }
}

fn spki_b64(key: &super::PublicKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(key.spki_der())
}

impl KeyBackend for Pkcs11Backend {
    fn name(&self) -> &str {
        &self.pool.config().name
    }

    fn generate(&self, key_id: &str, algorithm: Algorithm) -> Result<GeneratedKey> {
        let mut session = self.pool.checkout()?;
        let (id, public_key) = objects::generate(&mut session, key_id, algorithm)?;
        drop(session);
        let at = TokenKeyRef {
            label: key_id.to_string(),
            id: hex::encode(id),
            public_key: spki_b64(&public_key),
        };
        Ok(GeneratedKey {
            key: self.loaded(algorithm, &at)?,
            public_key,
            material: Self::material(&at)?,
        })
    }

    fn load(
        &self,
        _key_id: &str,
        algorithm: Algorithm,
        material: &[u8],
    ) -> Result<Arc<dyn SigningKey>> {
        let at: TokenKeyRef = serde_json::from_slice(material).map_err(|e| {
            KeyError::InvalidKeyMaterial(format!("stored token reference does not parse: {e}"))
        })?;
        self.loaded(algorithm, &at)
    }

    fn check_ready(&self) -> Result<()> {
        self.pool.check_ready()
    }
}

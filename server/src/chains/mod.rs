//! Blockchains: key derivation shared by every chain (`hd`), and one folder per chain that
//! decodes what it is asked to sign into an intent and assembles the signed result.
//!
//! Nothing here signs: decoders produce the digests the pipeline hands to the key backend, and
//! assemblers put the backend's signatures into the chain's own encoding afterwards.
//!
//! Generic code (the signing path, the policy stage, wallets) reaches a chain only through
//! the `Chain` trait and the registry `ALL`; it never names one. A new chain is its folder
//! here, its API module, its SDK intent and one line in `ALL`.

pub mod bitcoin;
pub mod ethereum;
pub mod hd;
pub mod solana;

use std::collections::BTreeMap;

use keyward_policy::{Intent, SpendContext};

use crate::keys::{Algorithm, Purpose};
use crate::store::usage::{UsageDelta, UsageWindow};

/// A blockchain Keyward signs for.
pub trait Chain: Send + Sync {
    /// Its name in the API, in wallet accounts and in usage metrics (`ethereum`).
    fn name(&self) -> &'static str;
    /// The purpose of its keys: a key of this purpose signs only this chain's intents.
    fn purpose(&self) -> Purpose;
    /// The algorithm of its account keys.
    fn algorithm(&self) -> Algorithm;
    /// The default derivation path of wallet account `index`.
    fn default_path(&self, index: u32) -> String;
    /// Whether `intent` is one of this chain's.
    fn owns(&self, intent: &Intent) -> bool;
    /// What a signed `intent` of this chain adds to the usage counters of key `key_id`
    /// beyond the signature itself (e.g. the value sent); recorded with the signature.
    fn usage_deltas(&self, _key_id: &str, _intent: &Intent, _at_unix: i64) -> Vec<UsageDelta> {
        Vec::new()
    }
    /// The metric prefix of the counters the policy's spend context for `intent` is built
    /// from (`None`: this intent has no spend context).
    fn spend_prefix(&self, _intent: &Intent) -> Option<String> {
        None
    }
    /// The policy's spend context for `intent` from the counters under its `spend_prefix`
    /// (recorded and in flight).
    fn spend_context(
        &self,
        _intent: &Intent,
        _usage: &BTreeMap<String, UsageWindow>,
    ) -> Option<SpendContext> {
        None
    }
}

/// Every chain, in the order the API lists them. Register a new chain here.
pub static ALL: &[&dyn Chain] = &[&ethereum::Ethereum, &bitcoin::Bitcoin, &solana::Solana];

/// The chain `intent` belongs to (`None` for raw and document intents).
pub fn of_intent(intent: &Intent) -> Option<&'static dyn Chain> {
    ALL.iter().copied().find(|c| c.owns(intent))
}

/// What a signed `intent` adds to the usage counters beyond the signature (see
/// `Chain::usage_deltas`); nothing for intents of no chain.
pub fn usage_deltas(key_id: &str, intent: &Intent, at_unix: i64) -> Vec<UsageDelta> {
    of_intent(intent)
        .map(|c| c.usage_deltas(key_id, intent, at_unix))
        .unwrap_or_default()
}

use crate::intent::IntentError;

/// Errors of a chain's decoders and assemblers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The request does not decode or does not make sense.
    #[error(transparent)]
    Intent(#[from] IntentError),
    /// The request decodes but cannot be signed as asked.
    #[error("{0}")]
    Invalid(String),
    /// The key backend's signature cannot be used (does not parse, does not recover).
    #[error("{0}")]
    BadSignature(String),
    /// What was stored with a request does not decode.
    #[error("{0}")]
    Corrupt(String),
}

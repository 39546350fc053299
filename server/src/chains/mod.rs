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

use coins_bip32::path::DerivationPath;
use keyward_policy::{Intent, SpendContext};
use zeroize::Zeroizing;

use crate::keys::{Algorithm, PublicKey, Purpose};
use crate::store::usage::{UsageDelta, UsageWindow};

/// The chain-specific options of a new wallet account, by request field name (only those the
/// caller gave).
pub type AccountOptions = BTreeMap<&'static str, serde_json::Value>;

/// The private key of a wallet account (a secp256k1 scalar or an Ed25519 seed).
pub type AccountKey = Zeroizing<[u8; 32]>;

/// The chain-specific settings of a wallet account: a JSON object the chain made from the
/// account's options, stored with the account and handed back to the chain.
pub type AccountSettings = serde_json::Map<String, serde_json::Value>;

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
    /// The account options this chain reads besides index and path (request field names, in
    /// the order messages list them). Any other chain's option is refused for its accounts.
    fn account_options(&self) -> &'static [&'static str] {
        &[]
    }
    /// The settings of a new account from its options (only names in `account_options`).
    fn account_settings(&self, _options: &AccountOptions) -> Result<AccountSettings, ChainError> {
        Ok(AccountSettings::new())
    }
    /// The derivation path of account `index` with `settings` (default: `default_path`).
    fn account_path(&self, _settings: &AccountSettings, index: u32) -> Result<String, ChainError> {
        Ok(self.default_path(index))
    }
    /// Refuses a derivation path this chain cannot derive its keys at.
    fn check_path(&self, _path: &DerivationPath) -> Result<(), ChainError> {
        Ok(())
    }
    /// The private key of the account at `path` from a BIP-39 seed (default: BIP-32 on
    /// secp256k1).
    fn derive_key(&self, seed: &[u8], path: &DerivationPath) -> Result<AccountKey, ChainError> {
        hd::derive_secp256k1(seed, path).map_err(|e| ChainError::Invalid(e.to_string()))
    }
    /// The address of the account with key `public_key` and `settings`.
    fn address(
        &self,
        public_key: &PublicKey,
        settings: &AccountSettings,
    ) -> Result<String, ChainError>;
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

/// The registered chain named `name`.
pub fn named(name: &str) -> Option<&'static dyn Chain> {
    ALL.iter().copied().find(|c| c.name() == name)
}

/// Reads a purpose given by a caller: `raw`, `document` or the name of a registered chain.
pub fn parse_purpose(name: &str) -> Result<Purpose, String> {
    match name.parse::<Purpose>() {
        Ok(p @ (Purpose::Raw | Purpose::Document)) => Ok(p),
        Ok(p) if ALL.iter().any(|c| c.purpose() == p) => Ok(p),
        _ => {
            let known: Vec<&str> = ["raw", "document"]
                .into_iter()
                .chain(ALL.iter().map(|c| c.name()))
                .collect();
            Err(format!(
                "unknown purpose {name:?}; expected one of: {}",
                known.join(", ")
            ))
        }
    }
}

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

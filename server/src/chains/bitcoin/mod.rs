//! Bitcoin accounts and PSBT signing.
//!
//! Parts:
//! - `account`: an account's script kind (BIP-84 P2WPKH or BIP-86 P2TR key path), network,
//!   default derivation paths and address.
//! - `psbt`: BIP-174 decoding into the policy intent, the BIP-143 / BIP-341 sighashes of the
//!   inputs the account owns, and putting the signatures back (optionally finalizing).
//!
//! Uses the `bitcoin` crate (rust-bitcoin) for every encoding; signatures are made by the
//! pipeline with Keyward's own keys, never here.

pub mod account;
pub mod psbt;

pub use account::{BitcoinAccount, ScriptKind};
pub use psbt::{PsbtPlan, SignedPsbt};

use keyward_policy::Intent;

use super::{AccountOptions, AccountSettings, ChainError};
use crate::keys::{Algorithm, PublicKey, Purpose};

/// The chain's name in the API, in wallet accounts and as the purpose of its keys.
pub const NAME: &str = "bitcoin";
/// The purpose of its keys.
pub const PURPOSE: Purpose = Purpose::chain(NAME);

/// Bitcoin: secp256k1 keys, BIP-84 P2WPKH at `m/84'/0'/0'/0/{index}` by default (or BIP-86
/// P2TR), PSBTs signed input by input.
pub struct Bitcoin;

impl super::Chain for Bitcoin {
    fn name(&self) -> &'static str {
        NAME
    }
    fn purpose(&self) -> Purpose {
        PURPOSE
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Secp256k1
    }
    fn default_path(&self, index: u32) -> String {
        format!("m/84'/0'/0'/0/{index}")
    }
    fn account_options(&self) -> &'static [&'static str] {
        &["network", "address_type"]
    }
    fn account_settings(&self, options: &AccountOptions) -> Result<AccountSettings, ChainError> {
        let text = |name: &str, default: &'static str| match options.get(name) {
            None => Ok(default),
            Some(v) => v
                .as_str()
                .ok_or_else(|| ChainError::Invalid(format!("{name} must be a string"))),
        };
        let kind = ScriptKind::parse(text("address_type", "p2wpkh")?)?;
        let network = account::parse_network(text("network", "bitcoin")?)?;
        Ok(account::settings(kind, network))
    }
    fn account_path(&self, settings: &AccountSettings, index: u32) -> Result<String, ChainError> {
        let (kind, network) = account::from_settings(settings)?;
        Ok(account::default_path(kind, network, index))
    }
    fn address(
        &self,
        public_key: &PublicKey,
        settings: &AccountSettings,
    ) -> Result<String, ChainError> {
        let (kind, network) = account::from_settings(settings)?;
        let sec1 = public_key
            .secp256k1_sec1(true)
            .map_err(|e| ChainError::Invalid(e.to_string()))?;
        Ok(BitcoinAccount::new(&sec1, kind, network)?
            .address()
            .to_string())
    }
    fn owns(&self, intent: &Intent) -> bool {
        matches!(intent, Intent::BitcoinPsbt(_))
    }
}

impl From<BitcoinError> for ChainError {
    fn from(e: BitcoinError) -> Self {
        ChainError::Invalid(e.to_string())
    }
}

/// Errors decoding or completing a PSBT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitcoinError {
    /// The PSBT does not decode (bad base64, bad BIP-174 encoding).
    #[error("{0}")]
    Malformed(String),
    /// The PSBT decodes but cannot be signed as asked.
    #[error("{0}")]
    Invalid(String),
    /// No input of the PSBT spends the account's address.
    #[error("{0}")]
    NoInputsOurs(String),
    /// An input does not carry the output it spends, so its amount is unknown.
    #[error("{0}")]
    MissingUtxo(String),
}

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

use crate::keys::{Algorithm, Purpose};

/// Bitcoin: secp256k1 keys, BIP-84 P2WPKH at `m/84'/0'/0'/0/{index}` by default (or BIP-86
/// P2TR), PSBTs signed input by input.
pub struct Bitcoin;

impl super::Chain for Bitcoin {
    fn name(&self) -> &'static str {
        "bitcoin"
    }
    fn purpose(&self) -> Purpose {
        Purpose::Bitcoin
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Secp256k1
    }
    fn default_path(&self, index: u32) -> String {
        format!("m/84'/0'/0'/0/{index}")
    }
    fn owns(&self, intent: &Intent) -> bool {
        matches!(intent, Intent::BitcoinPsbt(_))
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

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

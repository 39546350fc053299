//! Solana accounts, transactions and off-chain messages.
//!
//! Parts:
//! - `slip10`: SLIP-0010 Ed25519 derivation (hardened steps only), default path
//!   `m/44'/501'/{index}'/0'`.
//! - `transaction`: legacy and v0 transactions/messages decoded with the Solana SDK crates
//!   (`solana-message`, `solana-transaction`) into the policy intent; the fee payer must be the
//!   account; System transfers and SPL Token `transfer`/`transferChecked` are decoded.
//! - `offchain`: off-chain messages with the `\xffsolana offchain` signing domain
//!   (`solana-offchain-message`), so that a signed message can never be a transaction.
//!
//! Ed25519 signs the message bytes themselves: what the pipeline signs is exactly the
//! serialized message (or off-chain message) that was decoded here.

pub mod offchain;
pub mod slip10;
pub mod transaction;

use keyward_policy::Intent;

use crate::keys::{Algorithm, Purpose};

/// Solana: Ed25519 keys (SLIP-0010) at `m/44'/501'/{index}'/0'`.
pub struct Solana;

impl super::Chain for Solana {
    fn name(&self) -> &'static str {
        "solana"
    }
    fn purpose(&self) -> Purpose {
        Purpose::Solana
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Ed25519
    }
    fn default_path(&self, index: u32) -> String {
        format!("m/44'/501'/{index}'/0'")
    }
    fn owns(&self, intent: &Intent) -> bool {
        matches!(
            intent,
            Intent::SolanaTransaction(_) | Intent::SolanaMessage(_)
        )
    }
}

/// Errors decoding a Solana request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolanaError {
    /// The bytes are not a well-formed transaction, message or off-chain message.
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but Keyward will not sign it as asked.
    #[error("{0}")]
    Invalid(String),
    /// The fee payer is not the account.
    #[error("{0}")]
    FeePayerNotOurs(String),
}

/// The base58 address of a 32-byte Ed25519 public key.
pub fn address(public_key: &[u8; 32]) -> String {
    bs58::encode(public_key).into_string()
}

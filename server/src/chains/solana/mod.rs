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

use coins_bip32::path::DerivationPath;
use keyward_policy::Intent;

use super::{AccountKey, AccountSettings, ChainError, hd};
use crate::keys::{Algorithm, PublicKey, Purpose};

/// The chain's name in the API, in wallet accounts and as the purpose of its keys.
pub const NAME: &str = "solana";
/// The purpose of its keys.
pub const PURPOSE: Purpose = Purpose::chain(NAME);

/// Solana: Ed25519 keys (SLIP-0010) at `m/44'/501'/{index}'/0'`.
pub struct Solana;

impl super::Chain for Solana {
    fn name(&self) -> &'static str {
        NAME
    }
    fn purpose(&self) -> Purpose {
        PURPOSE
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Ed25519
    }
    fn default_path(&self, index: u32) -> String {
        slip10::default_path(index)
    }
    fn check_path(&self, path: &DerivationPath) -> Result<(), ChainError> {
        slip10::parse_path(&hd::format_path(path)).map(|_| ())?;
        Ok(())
    }
    fn derive_key(&self, seed: &[u8], path: &DerivationPath) -> Result<AccountKey, ChainError> {
        let steps = slip10::parse_path(&hd::format_path(path))?;
        Ok(slip10::derive(seed, &steps).0)
    }
    fn address(
        &self,
        public_key: &PublicKey,
        _settings: &AccountSettings,
    ) -> Result<String, ChainError> {
        let bytes = public_key
            .ed25519_bytes()
            .map_err(|e| ChainError::Invalid(e.to_string()))?;
        Ok(address(&bytes))
    }
    fn owns(&self, intent: &Intent) -> bool {
        matches!(
            intent,
            Intent::SolanaTransaction(_) | Intent::SolanaMessage(_)
        )
    }
}

impl From<SolanaError> for ChainError {
    fn from(e: SolanaError) -> Self {
        ChainError::Invalid(e.to_string())
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

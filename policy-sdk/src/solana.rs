//! The intents of Solana transactions and off-chain messages, as decoded by the host.
//!
//! Amounts are integers in the chain's smallest unit (lamports, token base units). Addresses
//! are base58.

use serde::{Deserialize, Serialize};

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// A Solana transaction (legacy or v0 message) to be signed by a Solana account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SolanaTransactionIntent {
    /// `legacy` or `v0`.
    pub version: String,
    /// The fee payer (the first account; Keyward only signs as fee payer or co-signer named
    /// in the message).
    pub fee_payer: String,
    /// The recent blockhash (base58).
    pub recent_blockhash: String,
    /// Every account that must sign, the fee payer first.
    pub signers: Vec<String>,
    /// The programs the instructions call, in order of first use, without repeats.
    pub program_ids: Vec<String>,
    /// The number of instructions.
    pub instruction_count: u32,
    /// Accounts loaded from address lookup tables (v0): they cannot be named without the
    /// chain's state, and appear as `lookup:<table>:<index>` where an instruction uses them.
    pub lookup_accounts: u32,
    /// System program instructions that move SOL (transfers and account creations).
    pub system_transfers: Vec<SolanaSystemTransfer>,
    /// SPL Token (and Token-2022) `transfer` and `transferChecked` instructions.
    pub token_transfers: Vec<SolanaTokenTransfer>,
}

/// A System program instruction that moves lamports: `Transfer`, `TransferWithSeed`,
/// `CreateAccount` or `CreateAccountWithSeed` (which fund the new account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SolanaSystemTransfer {
    /// `transfer`, `transfer_with_seed`, `create_account` or `create_account_with_seed`.
    pub instruction: String,
    /// The paying account.
    pub from: String,
    /// The receiving account.
    pub to: String,
    /// The amount, in lamports.
    pub lamports: u64,
}

/// An SPL Token `Transfer` or `TransferChecked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SolanaTokenTransfer {
    /// The token program: `spl-token` or `spl-token-2022`.
    pub program: String,
    /// `transfer` or `transfer_checked`.
    pub instruction: String,
    /// The source token account.
    pub source: String,
    /// The destination token account.
    pub destination: String,
    /// The owner or delegate authorising the transfer.
    pub authority: String,
    /// The mint (`transfer_checked` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mint: Option<String>,
    /// The amount, in the token's base units.
    pub amount: u64,
    /// The mint's decimals (`transfer_checked` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decimals: Option<u8>,
}

/// A Solana off-chain message (signed with the `\xffsolana offchain` prefix, so it can never
/// be a valid transaction).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct SolanaMessageIntent {
    /// The off-chain message format: `restricted_ascii`, `limited_utf8` or `extended_utf8`.
    pub format: String,
    /// The message as text (every format is UTF-8).
    pub text: String,
    /// Length of the message in bytes.
    pub message_len: u64,
}

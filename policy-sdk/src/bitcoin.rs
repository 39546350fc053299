//! The intent of a Bitcoin PSBT, as decoded by the host.
//!
//! Amounts are integers in satoshis. Addresses are in Bitcoin's usual text form
//! (bech32/bech32m or base58).

use serde::{Deserialize, Serialize};

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// A BIP-174 PSBT to be signed by a Bitcoin account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct BitcoinPsbtIntent {
    /// `bitcoin` (mainnet), `testnet`, `signet` or `regtest`: the account's network.
    pub network: String,
    /// The id of the transaction (it does not change when segwit inputs are signed).
    pub txid: String,
    /// The inputs, in order.
    pub inputs: Vec<BitcoinInput>,
    /// The outputs, in order.
    pub outputs: Vec<BitcoinOutput>,
    /// Inputs minus outputs, in satoshis.
    pub fee_sat: u64,
    /// Estimated virtual size of the signed transaction, in vbytes.
    pub vsize: u64,
    /// `fee_sat` per 1000 estimated vbytes (divide by 1000 for sat/vB).
    pub fee_rate_sat_per_kvb: u64,
}

/// One input of a PSBT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct BitcoinInput {
    /// The output it spends, `txid:vout`.
    pub outpoint: String,
    /// The amount of that output, in satoshis.
    pub amount_sat: u64,
    /// The address of that output, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whether the key signs this input (it spends the account's address).
    pub ours: bool,
    /// The sighash type the key signs this input with (`ALL`, or `DEFAULT` for taproot);
    /// absent for inputs that are not ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sighash: Option<String>,
}

/// One output of a PSBT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
pub struct BitcoinOutput {
    /// The address paid; absent for scripts without one (e.g. `OP_RETURN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The output script, hex.
    pub script_hex: String,
    /// The amount, in satoshis.
    pub amount_sat: u64,
    /// Whether it pays back to the wallet (the account's own address, or another account of
    /// the same wallet).
    pub change: bool,
}

//! Ethereum: addresses (EIP-55), and the decoders and assemblers for what an Ethereum key
//! signs — transactions (legacy with EIP-155, EIP-2930, EIP-1559), EIP-191 messages and
//! EIP-712 typed data. RLP, transaction encodings and EIP-712 hashing come from the alloy
//! crates; signing itself stays in the key backend, reached only through the pipeline.
//!
//! Parts: `tx` (transactions), `message` (EIP-191), `typed_data` (EIP-712), `erc20` (token
//! calls policies see decoded), `intent` (the intents and digests handed to the pipeline).

use std::collections::BTreeMap;

use alloy_primitives::Address;
use keyward_policy::{Intent, SpendContext};

use super::Chain;
use crate::keys::{Algorithm, KeyError, PublicKey, Purpose};
use crate::store::usage::{UsageDelta, UsageWindow};

/// The chain's name in the API, in wallet accounts and as the purpose of its keys.
pub const NAME: &str = "ethereum";
/// The purpose of its keys.
pub const PURPOSE: Purpose = Purpose::chain(NAME);

/// Ethereum and EVM chains: secp256k1 keys at `m/44'/60'/0'/0/{index}`.
pub struct Ethereum;

impl Chain for Ethereum {
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
        format!("m/44'/60'/0'/0/{index}")
    }
    fn account_options(&self) -> &'static [&'static str] {
        // The chain ids an account may sign for are kept with every account (empty: any).
        &["chain_ids"]
    }
    fn address(
        &self,
        public_key: &PublicKey,
        _settings: &super::AccountSettings,
    ) -> Result<String, super::ChainError> {
        address_of(public_key)
            .map(|a| a.to_checksum(None))
            .map_err(|e| super::ChainError::Invalid(e.to_string()))
    }
    fn owns(&self, intent: &Intent) -> bool {
        matches!(
            intent,
            Intent::EthereumTransaction(_)
                | Intent::EthereumMessage(_)
                | Intent::EthereumTypedData(_)
        )
    }
    fn usage_deltas(&self, key_id: &str, intent: &Intent, at_unix: i64) -> Vec<UsageDelta> {
        spend::usage_deltas(key_id, intent, at_unix)
    }
    fn spend_prefix(&self, intent: &Intent) -> Option<String> {
        spend::prefix_of(intent)
    }
    fn spend_context(
        &self,
        intent: &Intent,
        usage: &BTreeMap<String, UsageWindow>,
    ) -> Option<SpendContext> {
        spend::context(intent, usage)
    }
}

/// The Ethereum address of a secp256k1 public key: the last 20 bytes of the Keccak-256 of
/// the uncompressed point without its `04` prefix.
pub fn address_of(public_key: &PublicKey) -> Result<Address, KeyError> {
    let point = public_key.secp256k1_sec1(false)?;
    let xy: &[u8; 64] = point[1..]
        .try_into()
        .map_err(|_| KeyError::InvalidKeyMaterial("bad secp256k1 point".into()))?;
    Ok(Address::from_raw_public_key(xy))
}

pub mod erc20;
pub mod message;
pub mod signed;
pub mod spend;
pub mod tx;
pub mod typed_data;

use crate::intent::IntentError;

/// An address as policies see it: lower-case `0x` hex.
pub fn lower(address: &Address) -> String {
    format!("0x{}", hex::encode(address.as_slice()))
}

/// Decodes `0x` hex (the prefix is optional; an empty string is no bytes).
pub fn hex_bytes(field: &str, value: &str) -> Result<Vec<u8>, IntentError> {
    let v = value.trim();
    let v = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .unwrap_or(v);
    hex::decode(v).map_err(|e| IntentError::Malformed(format!("{field} is not valid hex: {e}")))
}

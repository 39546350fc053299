//! Ethereum: addresses (EIP-55), and the decoders and assemblers for what an Ethereum key
//! signs — transactions (legacy with EIP-155, EIP-2930, EIP-1559), EIP-191 messages and
//! EIP-712 typed data. RLP, transaction encodings and EIP-712 hashing come from the alloy
//! crates; signing itself stays in the key backend, reached only through the pipeline.
//!
//! Parts: `tx` (transactions), `message` (EIP-191), `typed_data` (EIP-712), `erc20` (token
//! calls policies see decoded), `intent` (the intents and digests handed to the pipeline).

use alloy_primitives::Address;

use crate::keys::{KeyError, PublicKey};

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
pub mod signer;
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

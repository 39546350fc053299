//! Ethereum transactions: legacy (with EIP-155 replay protection), EIP-2930 and EIP-1559,
//! given as fields or as an unsigned RLP/EIP-2718 encoding. Encoding, decoding, the signing
//! hash and the signed envelope come from `alloy-consensus`; this module only checks the input
//! (a chain id is required, a legacy one small enough for its EIP-155 `v` to fit in 64 bits,
//! no trailing bytes, only these three types) and maps fields.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEip2930, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::Encodable2718;
use alloy_eips::eip2930::{AccessList, AccessListItem};
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256};
use alloy_rlp::Decodable;
use keyward_policy::EthereumTransactionIntent;

use super::{erc20, hex_bytes, lower};
use crate::intent::IntentError;

/// Transaction fields as a caller gives them. Quantities are `0x` hex or decimal strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxFields {
    /// `legacy`/`0x0`, `eip2930`/`0x1` or `eip1559`/`0x2`; inferred from the fee fields when
    /// absent.
    pub tx_type: Option<String>,
    /// Chain id (required).
    pub chain_id: Option<String>,
    /// Nonce (default 0).
    pub nonce: Option<String>,
    /// Recipient; absent or empty for a contract creation.
    pub to: Option<String>,
    /// Value in wei (default 0).
    pub value: Option<String>,
    /// Gas limit (required).
    pub gas: Option<String>,
    /// Legacy and EIP-2930 gas price.
    pub gas_price: Option<String>,
    /// EIP-1559 max fee per gas.
    pub max_fee_per_gas: Option<String>,
    /// EIP-1559 max priority fee per gas.
    pub max_priority_fee_per_gas: Option<String>,
    /// Call data, `0x` hex.
    pub data: Option<String>,
    /// Access list: (address, storage keys).
    pub access_list: Option<Vec<(String, Vec<String>)>>,
}

/// An unsigned transaction of a supported type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsignedTx {
    /// Legacy, with EIP-155 chain id.
    Legacy(TxLegacy),
    /// EIP-2930.
    Eip2930(TxEip2930),
    /// EIP-1559.
    Eip1559(TxEip1559),
}

fn invalid(m: impl Into<String>) -> IntentError {
    IntentError::Invalid(m.into())
}

/// The largest chain id a legacy transaction can carry: its EIP-155 `v` is
/// `chainId * 2 + 35 + parity` and is returned as a 64-bit integer, so it must fit in a u64
/// for both parities.
pub const MAX_LEGACY_CHAIN_ID: u64 = (u64::MAX - 36) / 2;

/// The EIP-155 `v` of a legacy transaction on `chain_id` (`None` when it does not fit in 64
/// bits).
pub fn eip155_v(chain_id: u64, y_parity: bool) -> Option<u64> {
    chain_id
        .checked_mul(2)?
        .checked_add(35)?
        .checked_add(u64::from(y_parity))
}

/// The refusal of a legacy transaction whose chain id is too large for its `v`.
fn legacy_chain_id_too_large(chain_id: u64) -> IntentError {
    invalid(format!(
        "chain_id {chain_id} is too large for a legacy transaction's v (chainId * 2 + 36 must \
         fit in 64 bits, so at most {MAX_LEGACY_CHAIN_ID}); use an EIP-1559 (0x2) or EIP-2930 \
         (0x1) transaction for this chain"
    ))
}

/// Refuses a legacy transaction whose `v` would not fit in 64 bits, before anything is signed.
fn check_legacy_chain_id(chain_id: u64) -> Result<(), IntentError> {
    if eip155_v(chain_id, true).is_none() {
        return Err(legacy_chain_id_too_large(chain_id));
    }
    Ok(())
}

/// Parses a quantity: `0x` hex or a decimal string.
pub fn parse_u256(field: &str, value: &str) -> Result<U256, IntentError> {
    let v = value.trim();
    let parsed = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if h.is_empty() {
            Ok(U256::ZERO)
        } else {
            U256::from_str_radix(h, 16)
        }
    } else {
        U256::from_str_radix(v, 10)
    };
    parsed.map_err(|_| {
        invalid(format!(
            "{field} must be a non-negative integer as 0x hex or decimal, got {value:?}"
        ))
    })
}

fn parse_u64(field: &str, value: &str) -> Result<u64, IntentError> {
    u64::try_from(parse_u256(field, value)?)
        .map_err(|_| invalid(format!("{field} does not fit in 64 bits")))
}

fn parse_u128(field: &str, value: &str) -> Result<u128, IntentError> {
    u128::try_from(parse_u256(field, value)?)
        .map_err(|_| invalid(format!("{field} does not fit in 128 bits")))
}

/// Parses an address (any case; a mixed-case address must carry a valid EIP-55 checksum).
pub fn parse_address(field: &str, value: &str) -> Result<Address, IntentError> {
    let v = value.trim();
    let has_upper = v.chars().skip(2).any(|c| c.is_ascii_uppercase());
    let has_lower = v.chars().skip(2).any(|c| c.is_ascii_lowercase());
    if has_upper && has_lower {
        return Address::parse_checksummed(v, None)
            .map_err(|_| invalid(format!("{field} {value:?} has a wrong EIP-55 checksum")));
    }
    v.parse::<Address>().map_err(|_| {
        invalid(format!(
            "{field} must be a 20-byte 0x address, got {value:?}"
        ))
    })
}

impl TxFields {
    /// Builds the transaction these fields describe.
    pub fn build(&self) -> Result<UnsignedTx, IntentError> {
        let chain_id = match self.chain_id.as_deref() {
            Some(c) => parse_u64("chain_id", c)?,
            None => return Err(invalid("chain_id is required (EIP-155 replay protection)")),
        };
        if chain_id == 0 {
            return Err(invalid("chain_id must not be 0"));
        }
        let nonce = self
            .nonce
            .as_deref()
            .map(|n| parse_u64("nonce", n))
            .transpose()?
            .unwrap_or(0);
        let gas_limit = match self.gas.as_deref() {
            Some(g) => parse_u64("gas", g)?,
            None => return Err(invalid("gas (the gas limit) is required")),
        };
        let to = match self.to.as_deref().map(str::trim) {
            None | Some("") => TxKind::Create,
            Some(t) => TxKind::Call(parse_address("to", t)?),
        };
        let value = self
            .value
            .as_deref()
            .map(|v| parse_u256("value", v))
            .transpose()?
            .unwrap_or_default();
        let input: Bytes = match self.data.as_deref() {
            Some(d) => hex_bytes("data", d)?.into(),
            None => Bytes::new(),
        };
        let access_list = match &self.access_list {
            None => None,
            Some(items) => Some(AccessList(
                items
                    .iter()
                    .map(|(a, keys)| {
                        Ok(AccessListItem {
                            address: parse_address("access_list address", a)?,
                            storage_keys: keys
                                .iter()
                                .map(|k| {
                                    let b = hex_bytes("storage key", k)?;
                                    (b.len() == 32)
                                        .then(|| B256::from_slice(&b))
                                        .ok_or_else(|| invalid("a storage key is 32 bytes"))
                                })
                                .collect::<Result<_, _>>()?,
                        })
                    })
                    .collect::<Result<Vec<_>, IntentError>>()?,
            )),
        };
        let ty = match self.tx_type.as_deref().map(str::trim) {
            Some("legacy" | "0x0" | "0x00" | "0") => 0,
            Some("eip2930" | "0x1" | "0x01" | "1") => 1,
            Some("eip1559" | "0x2" | "0x02" | "2") => 2,
            Some(other) => {
                return Err(invalid(format!(
                    "transaction type {other:?} is not supported; use legacy (0x0), eip2930 (0x1) or eip1559 (0x2)"
                )));
            }
            None if self.max_fee_per_gas.is_some() || self.max_priority_fee_per_gas.is_some() => 2,
            None if access_list.is_some() => 1,
            None => 0,
        };
        let gas_price = |ty: &str| -> Result<u128, IntentError> {
            match self.gas_price.as_deref() {
                Some(p) => parse_u128("gas_price", p),
                None => Err(invalid(format!(
                    "gas_price is required for {ty} transactions"
                ))),
            }
        };
        Ok(match ty {
            0 => {
                if access_list.is_some() {
                    return Err(invalid("legacy transactions have no access list"));
                }
                check_legacy_chain_id(chain_id)?;
                UnsignedTx::Legacy(TxLegacy {
                    chain_id: Some(chain_id),
                    nonce,
                    gas_price: gas_price("legacy")?,
                    gas_limit,
                    to,
                    value,
                    input,
                })
            }
            1 => UnsignedTx::Eip2930(TxEip2930 {
                chain_id,
                nonce,
                gas_price: gas_price("eip2930")?,
                gas_limit,
                to,
                value,
                access_list: access_list.unwrap_or_default(),
                input,
            }),
            _ => {
                if self.gas_price.is_some() {
                    return Err(invalid(
                        "eip1559 transactions take max_fee_per_gas and max_priority_fee_per_gas, not gas_price",
                    ));
                }
                let max_fee = self.max_fee_per_gas.as_deref().ok_or_else(|| {
                    invalid("max_fee_per_gas is required for eip1559 transactions")
                })?;
                let tip = self.max_priority_fee_per_gas.as_deref().ok_or_else(|| {
                    invalid("max_priority_fee_per_gas is required for eip1559 transactions")
                })?;
                UnsignedTx::Eip1559(TxEip1559 {
                    chain_id,
                    nonce,
                    gas_limit,
                    max_fee_per_gas: parse_u128("max_fee_per_gas", max_fee)?,
                    max_priority_fee_per_gas: parse_u128("max_priority_fee_per_gas", tip)?,
                    to,
                    value,
                    access_list: access_list.unwrap_or_default(),
                    input,
                })
            }
        })
    }
}

fn malformed(e: impl std::fmt::Display) -> IntentError {
    IntentError::Malformed(format!("the transaction is not valid RLP: {e}"))
}

impl UnsignedTx {
    /// Decodes an unsigned transaction: an RLP list for legacy (6 fields, or the 9-field
    /// EIP-155 signing form `[.., chainId, 0, 0]`), or `0x01`/`0x02` followed by the RLP of
    /// the fields. A legacy transaction without a chain id is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, IntentError> {
        let Some(&first) = bytes.first() else {
            return Err(IntentError::Malformed("the transaction is empty".into()));
        };
        let mut buf = bytes;
        let tx = match first {
            0x01 => {
                buf = &buf[1..];
                UnsignedTx::Eip2930(TxEip2930::decode(&mut buf).map_err(malformed)?)
            }
            0x02 => {
                buf = &buf[1..];
                UnsignedTx::Eip1559(TxEip1559::decode(&mut buf).map_err(malformed)?)
            }
            0xc0..=0xff => {
                let header = alloy_rlp::Header::decode(&mut buf).map_err(malformed)?;
                if header.payload_length != buf.len() {
                    return Err(malformed("the list length does not match the input"));
                }
                let mut fields = &buf[..header.payload_length];
                let mut tx = {
                    use alloy_consensus::transaction::RlpEcdsaDecodableTx;
                    TxLegacy::rlp_decode_fields(&mut fields).map_err(malformed)?
                };
                if fields.is_empty() {
                    return Err(invalid(
                        "this legacy transaction has no chain id; encode the EIP-155 signing form [nonce, gasPrice, gas, to, value, data, chainId, 0, 0]",
                    ));
                }
                let chain_id = u64::decode(&mut fields).map_err(malformed)?;
                check_legacy_chain_id(chain_id)?;
                let r = U256::decode(&mut fields).map_err(malformed)?;
                let s = U256::decode(&mut fields).map_err(malformed)?;
                if !r.is_zero() || !s.is_zero() {
                    return Err(invalid(
                        "this legacy transaction is already signed; send the unsigned EIP-155 form",
                    ));
                }
                tx.chain_id = Some(chain_id);
                buf = fields;
                tx.into()
            }
            0x03..=0x7f => {
                return Err(invalid(format!(
                    "transaction type 0x{first:02x} is not supported; use legacy, 0x01 or 0x02"
                )));
            }
            _ => return Err(malformed("it starts with neither a type byte nor a list")),
        };
        if !buf.is_empty() {
            return Err(malformed("trailing bytes after the transaction"));
        }
        if tx.chain_id() == 0 {
            return Err(invalid("chain_id must not be 0"));
        }
        Ok(tx)
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        match self {
            UnsignedTx::Legacy(t) => t.chain_id.unwrap_or(0),
            UnsignedTx::Eip2930(t) => t.chain_id,
            UnsignedTx::Eip1559(t) => t.chain_id,
        }
    }

    /// The `v` of a signature with `y_parity` over this transaction: EIP-155
    /// `chainId * 2 + 35 + parity` for legacy transactions, the parity for typed ones. A
    /// legacy chain id too large for a 64-bit `v` is refused (`build` and `decode` already
    /// refuse it; this is the same check where `v` is computed).
    pub fn v(&self, y_parity: bool) -> Result<u64, IntentError> {
        match self {
            UnsignedTx::Legacy(_) => eip155_v(self.chain_id(), y_parity)
                .ok_or_else(|| legacy_chain_id_too_large(self.chain_id())),
            UnsignedTx::Eip2930(_) | UnsignedTx::Eip1559(_) => Ok(u64::from(y_parity)),
        }
    }

    /// The hash the key signs.
    pub fn signing_hash(&self) -> B256 {
        match self {
            UnsignedTx::Legacy(t) => t.signature_hash(),
            UnsignedTx::Eip2930(t) => t.signature_hash(),
            UnsignedTx::Eip1559(t) => t.signature_hash(),
        }
    }

    /// The unsigned encoding (what `decode` reads).
    pub fn encode_unsigned(&self) -> Vec<u8> {
        match self {
            UnsignedTx::Legacy(t) => t.encoded_for_signing(),
            UnsignedTx::Eip2930(t) => t.encoded_for_signing(),
            UnsignedTx::Eip1559(t) => t.encoded_for_signing(),
        }
    }

    /// The signed, ready-to-broadcast encoding and the transaction hash.
    pub fn into_signed(self, signature: Signature) -> (Vec<u8>, B256) {
        let envelope: TxEnvelope = match self {
            UnsignedTx::Legacy(t) => t.into_signed(signature).into(),
            UnsignedTx::Eip2930(t) => t.into_signed(signature).into(),
            UnsignedTx::Eip1559(t) => t.into_signed(signature).into(),
        };
        (envelope.encoded_2718(), *envelope.tx_hash())
    }

    /// The intent policies see.
    pub fn intent(&self, from: &str) -> EthereumTransactionIntent {
        let (tx_type, nonce, gas_limit, to, value, input, access) = match self {
            UnsignedTx::Legacy(t) => (
                "legacy",
                t.nonce,
                t.gas_limit,
                t.to,
                t.value,
                &t.input,
                None,
            ),
            UnsignedTx::Eip2930(t) => (
                "eip2930",
                t.nonce,
                t.gas_limit,
                t.to,
                t.value,
                &t.input,
                Some(&t.access_list),
            ),
            UnsignedTx::Eip1559(t) => (
                "eip1559",
                t.nonce,
                t.gas_limit,
                t.to,
                t.value,
                &t.input,
                Some(&t.access_list),
            ),
        };
        let (gas_price, max_fee, tip) = match self {
            UnsignedTx::Legacy(t) => (Some(t.gas_price.to_string()), None, None),
            UnsignedTx::Eip2930(t) => (Some(t.gas_price.to_string()), None, None),
            UnsignedTx::Eip1559(t) => (
                None,
                Some(t.max_fee_per_gas.to_string()),
                Some(t.max_priority_fee_per_gas.to_string()),
            ),
        };
        let to = to.to().copied();
        EthereumTransactionIntent {
            tx_type: tx_type.into(),
            chain_id: self.chain_id(),
            from: from.to_string(),
            to: to.map(|a| lower(&a)),
            nonce,
            value: value.to_string(),
            gas_limit,
            gas_price,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
            data: format!("0x{}", hex::encode(input)),
            selector: (input.len() >= 4).then(|| format!("0x{}", hex::encode(&input[..4]))),
            access_list: access
                .map(|l| l.0.iter().map(|i| lower(&i.address)).collect())
                .unwrap_or_default(),
            erc20: to.and_then(|token| erc20::decode(&token, input)),
            unsigned: format!("0x{}", hex::encode(self.encode_unsigned())),
        }
    }
}

impl From<TxLegacy> for UnsignedTx {
    fn from(t: TxLegacy) -> Self {
        UnsignedTx::Legacy(t)
    }
}

#[cfg(test)]
mod tests;

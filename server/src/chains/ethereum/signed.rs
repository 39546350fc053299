//! What an Ethereum key is asked to sign, before and after the signing path: a request decoded
//! into its intent and signing hash (`EthRequest::decode`, then `Decoded::prepare` with the key's address), and the backend's `r || s` and
//! recovery id assembled into the form each standard expects (a signed raw transaction, or a
//! 65-byte `r || s || v` signature). The REST routes and the JSON-RPC endpoint share both.
//!
//! Never signs by itself, and never assembles a signature that does not recover to the key's
//! address.

use alloy_primitives::{Address, B256, Signature, U256};
use keyward_policy::Intent;

use super::tx::{TxFields, UnsignedTx};
use super::{message, typed_data};
use crate::chains::ChainError;
use crate::intent::IntentError;

/// What to sign.
#[derive(Debug, Clone)]
pub enum EthRequest {
    /// A transaction given as fields.
    Transaction(Box<TxFields>),
    /// A transaction given as its unsigned encoding.
    UnsignedTransaction(Vec<u8>),
    /// An EIP-191 message.
    Message(Vec<u8>),
    /// EIP-712 typed data (the `eth_signTypedData_v4` JSON).
    TypedData(serde_json::Value),
}

/// A 65-byte recoverable signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverableSignature {
    /// r.
    pub r: B256,
    /// s (low-S).
    pub s: B256,
    /// The y parity (recovery id) of the signature point.
    pub y_parity: bool,
}

/// A signature in the standard's form.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// The key's address.
    pub from: Address,
    /// The hash that was signed.
    pub hash: B256,
    /// The signature.
    pub signature: RecoverableSignature,
    /// The `v` of the standard: 27/28 for messages and typed data, EIP-155 `chainId * 2 + 35 +
    /// parity` for legacy transactions (computed with checked arithmetic; a legacy chain id
    /// above `tx::MAX_LEGACY_CHAIN_ID`, whose `v` would not fit, is refused when the
    /// transaction is parsed, before anything is signed), the parity for typed transactions.
    pub v: u64,
    /// Transactions: the signed encoding, ready to broadcast, and its hash.
    pub transaction: Option<(Vec<u8>, B256)>,
}

impl Assembled {
    /// `r || s || v` (65 bytes), `v` as one byte (27/28 for messages; for legacy transactions
    /// with large chain ids only `raw_transaction` carries the full `v`).
    pub fn signature_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        out.extend_from_slice(self.signature.r.as_slice());
        out.extend_from_slice(self.signature.s.as_slice());
        out.push(self.v as u8);
        out
    }
}

/// A request decoded: what to sign, what policies see, and what assembles the signature.
pub struct Prepared {
    /// The Keccak-256 digest the key signs.
    pub hash: B256,
    /// The chain id the request is for (transactions and typed data with a domain chain id).
    pub chain_id: Option<u64>,
    /// The intent policies see.
    pub intent: Intent,
    /// The transaction, to put the signature into afterwards.
    pub transaction: Option<UnsignedTx>,
}

/// A request that decoded; `prepare` makes its intent once the key's address is known.
pub enum Decoded {
    /// A transaction.
    Tx(UnsignedTx),
    /// An EIP-191 message.
    Message(Vec<u8>),
    /// EIP-712 typed data and its hash.
    Typed(Box<alloy_dyn_abi::TypedData>, B256),
}

impl Decoded {
    /// The intent and digest for a key with the address `from` (lower-case hex, as policies
    /// see it; empty when the key has none).
    pub fn prepare(self, from: &str) -> Result<Prepared, IntentError> {
        Ok(match self {
            Decoded::Tx(tx) => Prepared {
                hash: tx.signing_hash(),
                chain_id: Some(tx.chain_id()),
                intent: Intent::EthereumTransaction(tx.intent(from)),
                transaction: Some(tx),
            },
            Decoded::Message(m) => {
                let (intent, hash) = message::intent(from, &m);
                Prepared {
                    hash,
                    chain_id: None,
                    intent: Intent::EthereumMessage(intent),
                    transaction: None,
                }
            }
            Decoded::Typed(t, hash) => {
                let intent = typed_data::intent(from, &t, hash)?;
                Prepared {
                    hash,
                    chain_id: intent.domain.chain_id,
                    intent: Intent::EthereumTypedData(intent),
                    transaction: None,
                }
            }
        })
    }
}

impl EthRequest {
    /// The operation name of the route that signs this kind of request.
    pub fn operation(&self) -> &'static str {
        match self {
            EthRequest::Transaction(_) | EthRequest::UnsignedTransaction(_) => {
                "ethereum.sign_transaction"
            }
            EthRequest::Message(_) => "ethereum.sign_message",
            EthRequest::TypedData(_) => "ethereum.sign_typed_data",
        }
    }

    /// Decodes the request (before anything about the key is looked up).
    pub fn decode(self) -> Result<Decoded, IntentError> {
        Ok(match self {
            EthRequest::Transaction(f) => Decoded::Tx(f.build()?),
            EthRequest::UnsignedTransaction(b) => Decoded::Tx(UnsignedTx::decode(&b)?),
            EthRequest::Message(m) => Decoded::Message(m),
            EthRequest::TypedData(v) => {
                let (typed, hash) = typed_data::parse(&v)?;
                Decoded::Typed(Box::new(typed), hash)
            }
        })
    }
}

/// Puts the backend's signature (`signature_b64`, base64 `r || s`, and its recovery id) into
/// the standard's form: the signed transaction for `tx`, or a 65-byte signature with
/// v = 27/28.
pub fn assemble(
    tx: Option<UnsignedTx>,
    signature_b64: &str,
    recovery_id: Option<u8>,
    hash: B256,
    from: Address,
) -> Result<Assembled, ChainError> {
    let signature = recoverable(signature_b64, recovery_id, &hash, &from)?;
    let (v, transaction) = match tx {
        Some(tx) => {
            let v = tx
                .v(signature.y_parity)
                .map_err(|e| ChainError::Invalid(e.to_string()))?;
            let sig = Signature::new(
                U256::from_be_bytes(signature.r.0),
                U256::from_be_bytes(signature.s.0),
                signature.y_parity,
            );
            (v, Some(tx.into_signed(sig)))
        }
        None => (27 + u64::from(signature.y_parity), None),
    };
    Ok(Assembled {
        from,
        hash,
        signature,
        v,
        transaction,
    })
}

/// The Ethereum result of a request signed after approval: the signed transaction (rebuilt
/// from the unsigned encoding kept in the intent) or the 65-byte signature. `None` for
/// intents of other kinds.
pub fn finish_approved(
    signature_b64: &str,
    recovery_id: Option<u8>,
    intent: &Intent,
) -> Result<Option<Assembled>, ChainError> {
    let corrupt = |m: &str| ChainError::Corrupt(format!("stored Ethereum intent: {m}"));
    let parse_hash = |h: &str| -> Result<B256, ChainError> {
        super::hex_bytes("hash", h)
            .ok()
            .filter(|b| b.len() == 32)
            .map(|b| B256::from_slice(&b))
            .ok_or_else(|| corrupt("bad hash"))
    };
    let (from, tx, hash) = match intent {
        Intent::EthereumTransaction(t) => {
            let bytes =
                super::hex_bytes("unsigned", &t.unsigned).map_err(|_| corrupt("bad unsigned"))?;
            let tx = UnsignedTx::decode(&bytes).map_err(|_| corrupt("unsigned does not decode"))?;
            let hash = tx.signing_hash();
            (&t.from, Some(tx), hash)
        }
        Intent::EthereumMessage(m) => (&m.from, None, parse_hash(&m.hash)?),
        Intent::EthereumTypedData(d) => (&d.from, None, parse_hash(&d.hash)?),
        _ => return Ok(None),
    };
    let from: Address = from.parse().map_err(|_| corrupt("bad from"))?;
    assemble(tx, signature_b64, recovery_id, hash, from).map(Some)
}

/// Reads `r || s` (base64) and the recovery id the backend gave and checks they recover to
/// `from`.
pub fn recoverable(
    signature_b64: &str,
    recovery_id: Option<u8>,
    hash: &B256,
    from: &Address,
) -> Result<RecoverableSignature, ChainError> {
    use base64::Engine as _;
    let fail = |m: &str| ChainError::BadSignature(m.to_string());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(signature_b64)
        .map_err(|_| fail("the backend's signature is not base64"))?;
    let recid = recovery_id.ok_or_else(|| fail("the backend gave no recovery id"))?;
    if bytes.len() != 64 || recid > 1 {
        return Err(fail("the backend's signature is not a 64-byte r || s"));
    }
    let sig = k256::ecdsa::Signature::from_slice(&bytes)
        .map_err(|_| fail("the backend's signature does not parse"))?;
    let id = k256::ecdsa::RecoveryId::from_byte(recid).ok_or_else(|| fail("bad recovery id"))?;
    let key = k256::ecdsa::VerifyingKey::recover_from_prehash(hash.as_slice(), &sig, id)
        .map_err(|_| fail("the signature does not recover"))?;
    let point = key.to_sec1_point(false);
    let xy: &[u8; 64] = point.as_bytes()[1..]
        .try_into()
        .map_err(|_| fail("bad recovered point"))?;
    if Address::from_raw_public_key(xy) != *from {
        return Err(fail("the signature does not recover to the key's address"));
    }
    Ok(RecoverableSignature {
        r: B256::from_slice(&bytes[..32]),
        s: B256::from_slice(&bytes[32..]),
        y_parity: recid == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chains::ethereum::tx::MAX_LEGACY_CHAIN_ID;
    use alloy_consensus::TxLegacy;
    use alloy_primitives::TxKind;

    fn legacy(chain_id: u64, nonce: u64) -> UnsignedTx {
        UnsignedTx::Legacy(TxLegacy {
            chain_id: Some(chain_id),
            nonce,
            gas_price: 20_000_000_000,
            gas_limit: 21_000,
            to: TxKind::Call(Address::repeat_byte(0x35)),
            value: U256::from(1u64),
            input: Default::default(),
        })
    }

    /// What a secp256k1 backend would hand back for `hash` (base64 `r || s`, recovery id),
    /// and the key's address.
    fn receipt(hash: &B256) -> ((String, Option<u8>), Address) {
        use base64::Engine as _;
        let key = k256::ecdsa::SigningKey::from_slice(&[0x46; 32]).unwrap();
        let (sig, recid) = key.sign_prehash_recoverable(hash.as_slice());
        let point = key.verifying_key().to_sec1_point(false);
        let xy: &[u8; 64] = point.as_bytes()[1..].try_into().unwrap();
        let receipt = (
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
            Some(recid.to_byte()),
        );
        (receipt, Address::from_raw_public_key(xy))
    }

    /// Chain id 1 gives the EIP-155 v 37/38; a chain id whose v does not fit in 64 bits is
    /// refused with an invalid-input error instead of a wrapped v.
    #[test]
    fn legacy_v_is_checked() {
        let mut seen = [false; 2];
        for nonce in 0..64 {
            let tx = legacy(1, nonce);
            let hash = tx.signing_hash();
            let (receipt, from) = receipt(&hash);
            let signed = assemble(Some(tx), &receipt.0, receipt.1, hash, from).unwrap();
            let parity = signed.signature.y_parity;
            assert_eq!(signed.v, 37 + u64::from(parity));
            assert!(signed.transaction.is_some());
            seen[usize::from(parity)] = true;
            if seen == [true, true] {
                break;
            }
        }
        assert_eq!(seen, [true, true], "both parities, so both 37 and 38");

        for chain_id in [u64::MAX, MAX_LEGACY_CHAIN_ID + 1] {
            // The route refuses it while parsing, before the pipeline is called.
            let bytes = legacy(chain_id, 0).encode_unsigned();
            let err = EthRequest::UnsignedTransaction(bytes)
                .decode()
                .err()
                .unwrap();
            assert!(
                matches!(&err, IntentError::Invalid(m) if m.contains("too large for a legacy transaction's v")),
                "{err}"
            );
            // And where v is computed, the same refusal rather than a wrapped value.
            let tx = legacy(chain_id, 0);
            let hash = tx.signing_hash();
            let (receipt, from) = receipt(&hash);
            let err = assemble(Some(tx), &receipt.0, receipt.1, hash, from)
                .err()
                .unwrap();
            assert!(
                matches!(&err, ChainError::Invalid(m) if m.contains("EIP-1559")),
                "{err}"
            );
        }
    }
}

//! The Ethereum signer shared by the REST routes and the JSON-RPC endpoint: decodes a request
//! into its intent and signing hash, hands them to `SigningPath::submit` (the only way anything
//! gets signed), and assembles the backend's `r || s` and recovery id into the form each
//! standard expects (a signed raw transaction, or a 65-byte `r || s || v` signature).
//!
//! Never signs by itself, and never returns a signature that does not recover to the key's
//! address.

use alloy_primitives::{Address, B256, Signature, U256};
use keyward_policy::Intent;

use super::tx::{TxFields, UnsignedTx};
use super::{address_of, lower, message, typed_data};
use crate::auth::Principal;
use crate::intent::{IntentError, SignIntent};
use crate::keys::{EcdsaFormat, HashAlg, KeyError, Purpose, SignOptions, ToSign};
use crate::pipeline::SigningPath;
use crate::pipeline::{self, Idempotency, PendingReceipt, PipelineError, SignCall, SignReceipt};

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

/// Errors of Ethereum signing.
#[derive(Debug, thiserror::Error)]
pub enum EthError {
    /// The input does not decode or does not make sense.
    #[error(transparent)]
    Intent(#[from] IntentError),
    /// The pipeline refused or failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
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

/// What a signing produced.
#[derive(Debug, Clone)]
pub struct EthSigned {
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
    /// The pipeline's receipt.
    pub receipt: SignReceipt,
}

impl EthSigned {
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

/// A signature, or a request waiting for approvers.
#[derive(Debug, Clone)]
pub enum EthOutcome {
    /// Signed.
    Signed(Box<EthSigned>),
    /// Waiting for approvers.
    Pending(Box<PendingReceipt>),
}

enum Decoded {
    Tx(UnsignedTx),
    Message(Vec<u8>),
    Typed(Box<alloy_dyn_abi::TypedData>, B256),
}

impl EthRequest {
    fn operation(&self) -> &'static str {
        match self {
            EthRequest::Transaction(_) | EthRequest::UnsignedTransaction(_) => {
                "ethereum.sign_transaction"
            }
            EthRequest::Message(_) => "ethereum.sign_message",
            EthRequest::TypedData(_) => "ethereum.sign_typed_data",
        }
    }

    fn decode(self) -> Result<Decoded, IntentError> {
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

/// Hands `request` to the pipeline for the key `key_id` and assembles the result.
pub async fn sign(
    path: &SigningPath,
    principal: Principal,
    key_id: String,
    request: EthRequest,
    idempotency: Option<Idempotency>,
    request_id: String,
    dry_run: bool,
) -> Result<Result<EthOutcome, pipeline::DryRunReport>, EthError> {
    let operation = request.operation();
    let decoded = request.decode()?;
    let key = path
        .check_access(
            &principal,
            &key_id,
            crate::keys::Purpose::Ethereum,
            operation,
            &request_id,
        )
        .await?;
    let from = address_of(&key.meta.public_key).ok();
    let from_text = from.as_ref().map(lower).unwrap_or_default();
    let allowed_chains = crate::wallets::allowed_chain_ids(path, &key_id)
        .await
        .map_err(PipelineError::from)?;
    let (hash, chain_id, intent) = match &decoded {
        Decoded::Tx(tx) => {
            let intent = Intent::EthereumTransaction(tx.intent(&from_text));
            (tx.signing_hash(), Some(tx.chain_id()), intent)
        }
        Decoded::Message(m) => {
            let (intent, hash) = message::intent(&from_text, m);
            (hash, None, Intent::EthereumMessage(intent))
        }
        Decoded::Typed(t, hash) => {
            let intent = typed_data::intent(&from_text, t, *hash)?;
            let chain = intent.domain.chain_id;
            (*hash, chain, Intent::EthereumTypedData(intent))
        }
    };
    let key_label = key_id.clone();
    let call = SignCall {
        principal,
        key_id,
        operation,
        build: Box::new(move |_algorithm| {
            if let Some(chain_id) = chain_id
                && !allowed_chains.is_empty()
                && !allowed_chains.contains(&chain_id)
            {
                return Err(PipelineError::Forbidden(format!(
                    "key {key_label} may sign for chain ids {allowed_chains:?} only, not {chain_id}"
                )));
            }
            let intent = SignIntent {
                purpose: Purpose::Ethereum,
                intent,
                // The digest is Keccak-256; the hash label only sizes the 32-byte slot, and
                // ECDSA backends sign the digest as given.
                to_sign: ToSign::Digest {
                    hash: HashAlg::Sha256,
                    digest: hash.to_vec(),
                },
            };
            let options = SignOptions {
                format: EcdsaFormat::Raw,
                ..Default::default()
            };
            Ok((intent, options))
        }),
        idempotency,
        request_id,
    };
    if dry_run {
        return Ok(Err(path.dry_run(call).await?));
    }
    let receipt = match path.submit(call).await? {
        pipeline::Submitted::Signed(r) => r,
        pipeline::Submitted::Pending(p) => return Ok(Ok(EthOutcome::Pending(Box::new(p)))),
    };
    let from = from.ok_or_else(|| {
        PipelineError::Key(KeyError::Unavailable(
            "the key has no Ethereum address".into(),
        ))
    })?;
    let tx = match decoded {
        Decoded::Tx(tx) => Some(tx),
        Decoded::Message(_) | Decoded::Typed(..) => None,
    };
    let signed = assemble(tx, receipt, hash, from)?;
    Ok(Ok(EthOutcome::Signed(Box::new(signed))))
}

/// Puts the backend's signature in the receipt into the standard's form: the signed
/// transaction for `tx`, or a 65-byte signature with v = 27/28.
fn assemble(
    tx: Option<UnsignedTx>,
    receipt: SignReceipt,
    hash: B256,
    from: Address,
) -> Result<EthSigned, PipelineError> {
    let signature = recoverable(&receipt, &hash, &from)?;
    let (v, transaction) = match tx {
        Some(tx) => {
            let v = tx
                .v(signature.y_parity)
                .map_err(|e| PipelineError::Invalid(e.to_string()))?;
            let sig = Signature::new(
                U256::from_be_bytes(signature.r.0),
                U256::from_be_bytes(signature.s.0),
                signature.y_parity,
            );
            (v, Some(tx.into_signed(sig)))
        }
        None => (27 + u64::from(signature.y_parity), None),
    };
    Ok(EthSigned {
        from,
        hash,
        signature,
        v,
        transaction,
        receipt,
    })
}

/// The Ethereum result of a request signed after approval: the signed transaction (rebuilt
/// from the unsigned encoding kept in the intent) or the 65-byte signature. `None` for
/// intents of other kinds.
pub fn finish_approved(
    receipt: &SignReceipt,
    intent: &Intent,
) -> Result<Option<EthSigned>, PipelineError> {
    let corrupt = |m: &str| {
        PipelineError::Store(crate::store::StoreError::Corrupt(format!(
            "stored Ethereum intent: {m}"
        )))
    };
    let parse_hash = |h: &str| -> Result<B256, PipelineError> {
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
    assemble(tx, receipt.clone(), hash, from).map(Some)
}

/// Reads `r || s` and the recovery id from a receipt and checks they recover to `from`.
pub fn recoverable(
    receipt: &SignReceipt,
    hash: &B256,
    from: &Address,
) -> Result<RecoverableSignature, PipelineError> {
    use base64::Engine as _;
    let fail = |m: &str| PipelineError::Key(KeyError::Unavailable(m.to_string()));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&receipt.signature)
        .map_err(|_| fail("the backend's signature is not base64"))?;
    let recid = receipt
        .recovery_id
        .ok_or_else(|| fail("the backend gave no recovery id"))?;
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
    use crate::policy::{Verdict, VerdictSource};
    use alloy_consensus::TxLegacy;
    use alloy_primitives::TxKind;
    use keyward_policy::Decision;

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

    /// What a secp256k1 backend would hand back for `hash`, and the key's address.
    fn receipt(hash: &B256) -> (SignReceipt, Address) {
        use base64::Engine as _;
        let key = k256::ecdsa::SigningKey::from_slice(&[0x46; 32]).unwrap();
        let (sig, recid) = key.sign_prehash_recoverable(hash.as_slice());
        let point = key.verifying_key().to_sec1_point(false);
        let xy: &[u8; 64] = point.as_bytes()[1..].try_into().unwrap();
        let receipt = SignReceipt {
            request_id: "r".into(),
            key_id: "k".into(),
            algorithm: "secp256k1".into(),
            signature: base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()),
            recovery_id: Some(recid.to_byte()),
            signatures: Vec::new(),
            signed_at: "now".into(),
            verdict: Verdict {
                decision: Decision::Allow,
                source: VerdictSource::Default,
                trace: Vec::new(),
                requirements: Vec::new(),
            },
        };
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
            let signed = assemble(Some(tx), receipt, hash, from).unwrap();
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
            let err = assemble(Some(tx), receipt, hash, from).err().unwrap();
            assert!(
                matches!(&err, PipelineError::Invalid(m) if m.contains("EIP-1559")),
                "{err}"
            );
        }
    }
}

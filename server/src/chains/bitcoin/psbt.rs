//! PSBT (BIP-174) signing for one account.
//!
//! `PsbtPlan::new` decodes a PSBT, finds the inputs that spend the account's script, computes
//! their sighashes (BIP-143 for P2WPKH with `SIGHASH_ALL`, BIP-341 key path for P2TR with
//! `SIGHASH_DEFAULT` or `ALL`) and builds the intent policies see. Every input must carry the
//! output it spends (`witness_utxo`, or `non_witness_utxo` whose txid matches), otherwise the
//! amounts, and so the fee, are unknown and the PSBT is refused. `PsbtPlan::complete` puts the
//! signatures made by the pipeline back into the PSBT and, when asked, finalizes the signed
//! inputs. Sighash types that let others change the transaction (`NONE`, `SINGLE`,
//! `ANYONECANPAY`) are refused: a policy that allowed the outputs it saw must get them.

use bitcoin::hashes::Hash as _;
use bitcoin::psbt::Psbt;
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{Address, Amount, ScriptBuf, TxOut, Witness};
use keyward_policy::{BitcoinInput, BitcoinOutput, BitcoinPsbtIntent};

use super::account::network_name;
use super::{BitcoinAccount, BitcoinError, ScriptKind};
use crate::keys::{HashAlg, ToSign};

/// Witness weight units of a signed P2WPKH input (items count, DER signature with its
/// sighash byte at most 73 bytes, 33-byte key, with their length prefixes).
const P2WPKH_WITNESS_WU: u64 = 1 + 1 + 73 + 1 + 33;
/// Witness weight units of a signed P2TR key-path input (count, length, 64- or 65-byte
/// signature).
const P2TR_WITNESS_WU: u64 = 1 + 1 + 65;

/// A decoded PSBT, ready to be signed by the account.
#[derive(Debug, Clone)]
pub struct PsbtPlan {
    psbt: Psbt,
    account: BitcoinAccount,
    /// The inputs the account signs, in order.
    signing: Vec<usize>,
    /// What policies see.
    pub intent: BitcoinPsbtIntent,
    /// The digests to sign, one per entry of `signing`.
    pub to_sign: Vec<ToSign>,
}

/// A PSBT with the account's signatures.
#[derive(Debug, Clone)]
pub struct SignedPsbt {
    /// The PSBT (BIP-174 bytes).
    pub psbt: Vec<u8>,
    /// The inputs signed.
    pub signed_inputs: Vec<usize>,
    /// Whether every input is now finalized.
    pub complete: bool,
    /// The network transaction (hex) when every input is finalized.
    pub tx_hex: Option<String>,
}

fn ours_to_sign(
    cache: &mut SighashCache<&bitcoin::Transaction>,
    index: usize,
    account: &BitcoinAccount,
    utxo: &TxOut,
    prevouts: &[TxOut],
    requested: Option<bitcoin::psbt::PsbtSighashType>,
) -> Result<(ToSign, &'static str), BitcoinError> {
    let refuse = |what: String| {
        BitcoinError::Invalid(format!(
            "input {index} asks for sighash {what}; Keyward signs with SIGHASH_ALL (or DEFAULT for taproot) only"
        ))
    };
    match account.kind {
        ScriptKind::P2wpkh => {
            if let Some(t) = requested {
                let t = t.ecdsa_hash_ty().map_err(|_| refuse(t.to_string()))?;
                if t != EcdsaSighashType::All {
                    return Err(refuse(t.to_string()));
                }
            }
            let hash = cache
                .p2wpkh_signature_hash(
                    index,
                    &utxo.script_pubkey,
                    utxo.value,
                    EcdsaSighashType::All,
                )
                .map_err(|e| BitcoinError::Invalid(format!("input {index}: {e}")))?;
            Ok((
                ToSign::Digest {
                    hash: HashAlg::Sha256,
                    digest: hash.to_byte_array().to_vec(),
                },
                "ALL",
            ))
        }
        ScriptKind::P2tr => {
            let ty = match requested {
                None => TapSighashType::Default,
                Some(t) => match t.taproot_hash_ty() {
                    Ok(t @ (TapSighashType::Default | TapSighashType::All)) => t,
                    _ => return Err(refuse(t.to_string())),
                },
            };
            let hash = cache
                .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), ty)
                .map_err(|e| BitcoinError::Invalid(format!("input {index}: {e}")))?;
            Ok((
                ToSign::Schnorr {
                    digest: hash.to_byte_array().to_vec(),
                    tweak: account.taproot_tweak().map(|t| t.to_vec()),
                },
                if ty == TapSighashType::All {
                    "ALL"
                } else {
                    "DEFAULT"
                },
            ))
        }
    }
}

fn address_of(script: &ScriptBuf, account: &BitcoinAccount) -> Option<String> {
    Address::from_script(script, account.network)
        .ok()
        .map(|a| a.to_string())
}

impl PsbtPlan {
    /// Decodes `bytes` (BIP-174) for `account`. Outputs whose script is in `wallet_scripts`
    /// (or is the account's own) are reported as change.
    pub fn new(
        bytes: &[u8],
        account: &BitcoinAccount,
        wallet_scripts: &[ScriptBuf],
    ) -> Result<Self, BitcoinError> {
        let psbt = Psbt::deserialize(bytes)
            .map_err(|e| BitcoinError::Malformed(format!("the PSBT does not decode: {e}")))?;
        let tx = &psbt.unsigned_tx;
        if tx.input.is_empty() || tx.output.is_empty() {
            return Err(BitcoinError::Invalid(
                "the PSBT's transaction has no inputs or no outputs".into(),
            ));
        }

        // The output every input spends.
        let mut prevouts = Vec::with_capacity(tx.input.len());
        for (i, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
            let utxo = if let Some(utxo) = &input.witness_utxo {
                utxo.clone()
            } else if let Some(prev) = &input.non_witness_utxo {
                let vout = txin.previous_output.vout as usize;
                if prev.compute_txid() != txin.previous_output.txid || vout >= prev.output.len() {
                    return Err(BitcoinError::Invalid(format!(
                        "input {i}: its non_witness_utxo is not the transaction it spends"
                    )));
                }
                prev.output[vout].clone()
            } else {
                return Err(BitcoinError::MissingUtxo(format!(
                    "input {i} ({}) has no witness_utxo or non_witness_utxo, so its amount is unknown; \
                     add the output it spends to the PSBT",
                    txin.previous_output
                )));
            };
            prevouts.push(utxo);
        }

        let ours_script = account.script_pubkey();
        let mut cache = SighashCache::new(tx);
        let mut inputs = Vec::with_capacity(prevouts.len());
        let mut signing = Vec::new();
        let mut to_sign = Vec::new();
        let mut witness_wu: u64 = 0;
        for (i, utxo) in prevouts.iter().enumerate() {
            let input = &psbt.inputs[i];
            let ours = utxo.script_pubkey == ours_script;
            let finalized =
                input.final_script_witness.is_some() || input.final_script_sig.is_some();
            let mut sighash = None;
            if ours && !finalized {
                let (digest, name) =
                    ours_to_sign(&mut cache, i, account, utxo, &prevouts, input.sighash_type)?;
                signing.push(i);
                to_sign.push(digest);
                sighash = Some(name.to_string());
            }
            witness_wu += match &input.final_script_witness {
                Some(w) => w.size() as u64,
                None if utxo.script_pubkey.is_p2tr() => P2TR_WITNESS_WU,
                None => P2WPKH_WITNESS_WU,
            };
            inputs.push(BitcoinInput {
                outpoint: tx.input[i].previous_output.to_string(),
                amount_sat: utxo.value.to_sat(),
                address: address_of(&utxo.script_pubkey, account),
                ours,
                sighash,
            });
        }
        if signing.is_empty() {
            return Err(BitcoinError::NoInputsOurs(format!(
                "no unsigned input of this PSBT spends the account's address {}",
                account.address()
            )));
        }

        let total_in = prevouts
            .iter()
            .try_fold(Amount::ZERO, |a, o| a.checked_add(o.value))
            .ok_or_else(|| BitcoinError::Invalid("input amounts overflow".into()))?;
        let total_out = tx
            .output
            .iter()
            .try_fold(Amount::ZERO, |a, o| a.checked_add(o.value))
            .ok_or_else(|| BitcoinError::Invalid("output amounts overflow".into()))?;
        let fee = total_in.checked_sub(total_out).ok_or_else(|| {
            BitcoinError::Invalid(format!(
                "the outputs ({} sat) exceed the inputs ({} sat)",
                total_out.to_sat(),
                total_in.to_sat()
            ))
        })?;
        // Unsigned transaction (no witnesses) plus the segwit marker and flag and the witnesses.
        let weight = tx.weight().to_wu() + 2 + witness_wu;
        let vsize = weight.div_ceil(4);
        let outputs = tx
            .output
            .iter()
            .map(|o| BitcoinOutput {
                address: address_of(&o.script_pubkey, account),
                script_hex: hex::encode(o.script_pubkey.as_bytes()),
                amount_sat: o.value.to_sat(),
                change: o.script_pubkey == ours_script || wallet_scripts.contains(&o.script_pubkey),
            })
            .collect();
        let intent = BitcoinPsbtIntent {
            network: network_name(account.network).to_string(),
            txid: tx.compute_txid().to_string(),
            inputs,
            outputs,
            fee_sat: fee.to_sat(),
            vsize,
            fee_rate_sat_per_kvb: fee.to_sat().saturating_mul(1000) / vsize.max(1),
        };
        Ok(PsbtPlan {
            psbt,
            account: account.clone(),
            signing,
            intent,
            to_sign,
        })
    }

    /// What the pipeline signs: one digest, or a batch when several inputs are ours.
    pub fn to_sign(&self) -> ToSign {
        match self.to_sign.as_slice() {
            [one] => one.clone(),
            many => ToSign::Batch(many.to_vec()),
        }
    }

    /// Puts `signatures` (one per signed input, DER for P2WPKH, 64-byte BIP-340 for P2TR) into
    /// the PSBT; with `finalize`, turns the signed inputs into final witnesses (BIP-174
    /// finalizer: the other fields of those inputs are cleared).
    pub fn complete(
        mut self,
        signatures: &[Vec<u8>],
        finalize: bool,
    ) -> Result<SignedPsbt, BitcoinError> {
        if signatures.len() != self.signing.len() {
            return Err(BitcoinError::Invalid(format!(
                "{} signatures for {} inputs",
                signatures.len(),
                self.signing.len()
            )));
        }
        let bad = |e: String| BitcoinError::Invalid(format!("the signature does not encode: {e}"));
        for (&i, sig) in self.signing.iter().zip(signatures) {
            let input = &mut self.psbt.inputs[i];
            match self.account.kind {
                ScriptKind::P2wpkh => {
                    let signature = bitcoin::ecdsa::Signature {
                        signature: bitcoin::secp256k1::ecdsa::Signature::from_der(sig)
                            .map_err(|e| bad(e.to_string()))?,
                        sighash_type: EcdsaSighashType::All,
                    };
                    if finalize {
                        let witness = Witness::p2wpkh(&signature, &self.account.public_key.0);
                        clear_for_final(input);
                        input.final_script_witness = Some(witness);
                    } else {
                        input
                            .partial_sigs
                            .insert(self.account.public_key.into(), signature);
                    }
                }
                ScriptKind::P2tr => {
                    let ty = match input.sighash_type.map(|t| t.taproot_hash_ty()) {
                        Some(Ok(TapSighashType::All)) => TapSighashType::All,
                        _ => TapSighashType::Default,
                    };
                    let signature = bitcoin::taproot::Signature {
                        signature: bitcoin::secp256k1::schnorr::Signature::from_slice(sig)
                            .map_err(|e| bad(e.to_string()))?,
                        sighash_type: ty,
                    };
                    if finalize {
                        clear_for_final(input);
                        input.final_script_witness = Some(Witness::p2tr_key_spend(&signature));
                    } else {
                        input.tap_internal_key = Some(self.account.internal_key());
                        input.tap_key_sig = Some(signature);
                    }
                }
            }
        }
        let complete = self
            .psbt
            .inputs
            .iter()
            .all(|i| i.final_script_witness.is_some() || i.final_script_sig.is_some());
        let tx_hex = if complete {
            let tx = self.psbt.clone().extract_tx_unchecked_fee_rate();
            Some(bitcoin::consensus::encode::serialize_hex(&tx))
        } else {
            None
        };
        Ok(SignedPsbt {
            psbt: self.psbt.serialize(),
            signed_inputs: self.signing,
            complete,
            tx_hex,
        })
    }
}

fn clear_for_final(input: &mut bitcoin::psbt::Input) {
    let utxo = input.witness_utxo.take();
    let non_witness = input.non_witness_utxo.take();
    *input = bitcoin::psbt::Input::default();
    input.witness_utxo = utxo;
    input.non_witness_utxo = non_witness;
}

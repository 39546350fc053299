//! PSBTs (BIP-174), as `POST /v1/keys/{id}/bitcoin/sign-psbt` takes them, for a P2WPKH and a
//! P2TR account (the first byte picks the account and `finalize`).
//!
//! Invariants: the plan of a PSBT the parser accepts lists only inputs that spend the account;
//! the route refuses whatever the parser refuses, with no signature; a PSBT the route signs
//! is the same transaction as the one sent (same txid, inputs and outputs), and each input it
//! says it signed carries the account's signature over that input's sighash.

use crate::{Account, b64, harness, unb64};
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash as _;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{Amount, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use keyward_server::chains::bitcoin::{BitcoinAccount, PsbtPlan, ScriptKind};
use serde_json::json;

fn account(a: &Account, kind: ScriptKind) -> BitcoinAccount {
    BitcoinAccount::new(&a.public_key, kind, Network::Regtest).expect("the harness's account")
}

fn psbt_for(spends: &BitcoinAccount, change: &BitcoinAccount, inputs: usize) -> Vec<u8> {
    let payee = ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([7; 20]));
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: (0..inputs)
            .map(|i| TxIn {
                previous_output: OutPoint::new(
                    bitcoin::Txid::from_byte_array([i as u8 + 1; 32]),
                    i as u32,
                ),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: vec![
            TxOut {
                value: Amount::from_sat(60_000),
                script_pubkey: payee,
            },
            TxOut {
                value: Amount::from_sat(30_000),
                script_pubkey: change.script_pubkey(),
            },
        ],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).expect("an unsigned transaction");
    for input in &mut psbt.inputs {
        input.witness_utxo = Some(TxOut {
            value: Amount::from_sat(100_000),
            script_pubkey: spends.script_pubkey(),
        });
    }
    psbt.serialize()
}

/// The output input `i` spends, as the PSBT sent carries it.
fn spent(psbt: &Psbt, i: usize) -> TxOut {
    let input = &psbt.inputs[i];
    if let Some(utxo) = &input.witness_utxo {
        return utxo.clone();
    }
    let vout = psbt.unsigned_tx.input[i].previous_output.vout as usize;
    input
        .non_witness_utxo
        .as_ref()
        .expect("the input carries its UTXO")
        .output[vout]
        .clone()
}

/// Panics unless input `i` of `signed` carries a valid signature by `account` over its
/// sighash (BIP-143 for P2WPKH, BIP-341 key path for P2TR), checked with the `bitcoin`
/// crate's sighash code and libsecp256k1.
fn assert_input_signed(sent: &Psbt, signed: &Psbt, i: usize, account: &BitcoinAccount) {
    use bitcoin::secp256k1::{Message, Secp256k1, schnorr};
    use bitcoin::sighash::{Prevouts, SighashCache};
    let secp = Secp256k1::verification_only();
    let input = &signed.inputs[i];
    let witness: Vec<Vec<u8>> = input
        .final_script_witness
        .as_ref()
        .map(|w| w.iter().map(<[u8]>::to_vec).collect())
        .unwrap_or_default();
    let mut cache = SighashCache::new(&sent.unsigned_tx);
    match account.kind {
        ScriptKind::P2wpkh => {
            let sig = match witness.first() {
                Some(bytes) => {
                    bitcoin::ecdsa::Signature::from_slice(bytes).expect("a DER signature")
                }
                None => *input
                    .partial_sigs
                    .values()
                    .next()
                    .expect("a partial signature"),
            };
            let utxo = spent(sent, i);
            let hash = cache
                .p2wpkh_signature_hash(i, &utxo.script_pubkey, utxo.value, sig.sighash_type)
                .expect("a BIP-143 sighash");
            let msg = Message::from_digest(hash.to_byte_array());
            secp.verify_ecdsa(&msg, &sig.signature, &account.public_key.0)
                .expect("the P2WPKH signature verifies");
            assert_eq!(
                sig.signature,
                {
                    let mut low = sig.signature;
                    low.normalize_s();
                    low
                },
                "a high-S signature"
            );
        }
        ScriptKind::P2tr => {
            let sig = match witness.first() {
                Some(bytes) => {
                    bitcoin::taproot::Signature::from_slice(bytes).expect("a Schnorr signature")
                }
                None => input.tap_key_sig.expect("a key-path signature"),
            };
            let prevouts: Vec<TxOut> = (0..sent.inputs.len()).map(|j| spent(sent, j)).collect();
            let hash = cache
                .taproot_key_spend_signature_hash(i, &Prevouts::All(&prevouts), sig.sighash_type)
                .expect("a BIP-341 sighash");
            let msg = Message::from_digest(hash.to_byte_array());
            let output_key = bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(
                bitcoin::XOnlyPublicKey::from_slice(&account.script_pubkey().as_bytes()[2..])
                    .expect("a P2TR output key"),
            );
            let sig: schnorr::Signature = sig.signature;
            secp.verify_schnorr(&sig, &msg, &output_key.to_x_only_public_key())
                .expect("the P2TR key-path signature verifies under the output key");
        }
    }
    crate::count_verified();
}

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    let h = harness();
    let wpkh = account(&h.bitcoin_wpkh, ScriptKind::P2wpkh);
    let tr = account(&h.bitcoin_tr, ScriptKind::P2tr);
    let mut seeds = Vec::new();
    for (selector, spends, change) in [
        (0u8, &wpkh, &tr),
        (1, &tr, &wpkh),
        (2, &wpkh, &wpkh),
        (3, &tr, &tr),
    ] {
        for inputs in [1, 2] {
            let mut seed = vec![selector];
            seed.extend(psbt_for(spends, change, inputs));
            seeds.push(seed);
        }
    }
    seeds
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let h = harness();
    let wpkh = account(&h.bitcoin_wpkh, ScriptKind::P2wpkh);
    let tr = account(&h.bitcoin_tr, ScriptKind::P2tr);
    let (key, ours, wallet) = if selector & 1 == 0 {
        (&h.bitcoin_wpkh.key, &wpkh, [tr.script_pubkey()])
    } else {
        (&h.bitcoin_tr.key, &tr, [wpkh.script_pubkey()])
    };
    let plan = PsbtPlan::new(bytes, ours, &wallet);
    if let Ok(plan) = &plan {
        let _ = plan.to_sign();
    }
    let path = format!("/v1/keys/{key}/bitcoin/sign-psbt");
    let finalize = selector & 2 == 0;
    let (answer, real) = h.sign(
        &path,
        json!({"psbt": b64(bytes), "finalize": finalize}),
        data,
    );
    if plan.is_err() {
        assert!(
            !answer.is_success(),
            "signed a PSBT the parser refuses: {}",
            answer.body
        );
    }
    if answer.is_success() && real {
        let sent = Psbt::deserialize(bytes).expect("the PSBT sent decodes");
        let signed =
            Psbt::deserialize(&unb64(answer.text("psbt"))).expect("the signed PSBT decodes");
        assert_eq!(
            signed.unsigned_tx, sent.unsigned_tx,
            "the signed PSBT is another transaction"
        );
        assert_eq!(
            answer.text("txid"),
            sent.unsigned_tx.compute_txid().to_string()
        );
        let inputs: Vec<usize> = answer.body["signed_inputs"]
            .as_array()
            .expect("signed_inputs")
            .iter()
            .map(|i| i.as_u64().expect("an input index") as usize)
            .collect();
        assert!(
            !inputs.is_empty(),
            "a signed PSBT with no signed input: {}",
            answer.body
        );
        for i in inputs {
            assert_input_signed(&sent, &signed, i, ours);
        }
    }
}

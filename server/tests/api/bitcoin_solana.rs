//! Bitcoin and Solana accounts and signing over the API: BIP-84/86 and Solana addresses of
//! `abandon ... about`, PSBTs signed for P2WPKH and P2TR (signatures checked with libsecp256k1
//! against sighashes computed here), Solana transactions and off-chain messages (checked with
//! ed25519-dalek), the example policies judging decoded outputs and transfers, and refusals.

use std::str::FromStr;

use bitcoin::hashes::Hash as _;
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{Address, Amount, OutPoint, ScriptBuf, Transaction, TxIn, TxOut, Txid, transaction};
use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};
use solana_message::{Address as SolAddress, Hash, Message as SolMessage, VersionedMessage};

use crate::policies::{bind, example_wasm, upload};
use crate::wallets::{account, import_abandon};
use crate::{TestServer, assert_error, b64, setup};

const FRIEND: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

async fn btc_account(server: &TestServer, wallet: &str, body: Value) -> (String, String) {
    let resp = account(server, wallet, body).await;
    (
        resp["key"]["id"].as_str().unwrap().to_string(),
        resp["account"]["address"].as_str().unwrap().to_string(),
    )
}

/// A PSBT spending `inputs` (amount, script) to `outputs` (address, amount).
pub fn psbt(inputs: &[(u64, ScriptBuf)], outputs: &[(&str, u64)], with_utxo: bool) -> Psbt {
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: (0..inputs.len())
            .map(|i| TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([i as u8 + 1; 32]),
                    vout: i as u32,
                },
                ..Default::default()
            })
            .collect(),
        output: outputs
            .iter()
            .map(|(a, v)| TxOut {
                value: Amount::from_sat(*v),
                script_pubkey: Address::from_str(a)
                    .unwrap()
                    .assume_checked()
                    .script_pubkey(),
            })
            .collect(),
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    if with_utxo {
        for (input, (amount, script)) in psbt.inputs.iter_mut().zip(inputs) {
            input.witness_utxo = Some(TxOut {
                value: Amount::from_sat(*amount),
                script_pubkey: script.clone(),
            });
        }
    }
    psbt
}

pub fn script_of(address: &str) -> ScriptBuf {
    Address::from_str(address)
        .unwrap()
        .assume_checked()
        .script_pubkey()
}

async fn sign_psbt(
    server: &TestServer,
    key: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    server
        .call(
            "POST",
            &format!("/v1/keys/{key}/bitcoin/sign-psbt"),
            Some(token),
            Some(body),
        )
        .await
}

#[tokio::test]
async fn bip84_bip86_and_solana_accounts_of_abandon_about() {
    let server = setup().await;
    let wallet = import_abandon(&server, "w").await;
    let resp = account(&server, &wallet, json!({"chain": "bitcoin", "index": 0})).await;
    assert_eq!(
        resp["account"]["address"],
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    );
    assert_eq!(resp["account"]["path"], "m/84'/0'/0'/0/0");
    assert_eq!(resp["key"]["purpose"], "bitcoin");
    assert_eq!(
        resp["account"]["public_key"],
        "0x0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c"
    );
    let resp = account(&server, &wallet, json!({"chain": "bitcoin", "index": 1})).await;
    assert_eq!(
        resp["account"]["address"],
        "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
    );
    let resp = account(
        &server,
        &wallet,
        json!({"chain": "bitcoin", "path": "m/84'/0'/0'/1/0"}),
    )
    .await;
    assert_eq!(
        resp["account"]["address"],
        "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"
    );
    let resp = account(
        &server,
        &wallet,
        json!({"chain": "bitcoin", "address_type": "p2tr"}),
    )
    .await;
    assert_eq!(resp["account"]["path"], "m/86'/0'/0'/0/0");
    assert_eq!(
        resp["account"]["address"],
        "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
    );
    let resp = account(
        &server,
        &wallet,
        json!({"chain": "bitcoin", "address_type": "p2tr", "index": 1}),
    )
    .await;
    assert_eq!(
        resp["account"]["address"],
        "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh"
    );
    let resp = account(
        &server,
        &wallet,
        json!({"chain": "bitcoin", "network": "testnet"}),
    )
    .await;
    assert_eq!(resp["account"]["path"], "m/84'/1'/0'/0/0");
    assert!(
        resp["account"]["address"]
            .as_str()
            .unwrap()
            .starts_with("tb1q")
    );
    let resp = account(&server, &wallet, json!({"chain": "solana", "index": 0})).await;
    assert_eq!(resp["account"]["path"], "m/44'/501'/0'/0'");
    assert_eq!(resp["key"]["algorithm"], "ed25519");
    assert_eq!(resp["key"]["purpose"], "solana");
    // The address of `abandon ... about` at m/44'/501'/0'/0' (as Phantom and the Solana CLI derive it).
    assert_eq!(
        resp["account"]["address"],
        "HAgk14JpMQLgt6rVgv7cBQFJWFto5Dqxi472uT3DKpqk"
    );

    // Refusals: a non-hardened Solana path, Bitcoin options on another chain, an unknown network.
    for body in [
        json!({"chain": "solana", "path": "m/44'/501'/0'/0"}),
        json!({"chain": "ethereum", "network": "regtest"}),
        json!({"chain": "bitcoin", "network": "dogecoin"}),
        json!({"chain": "bitcoin", "address_type": "p2pkh"}),
    ] {
        let (status, resp) = server
            .call(
                "POST",
                &format!("/v1/wallets/{wallet}/accounts"),
                Some(&server.admin),
                Some(body.clone()),
            )
            .await;
        assert_error(
            status,
            &resp,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
    }
}

#[tokio::test]
async fn psbts_are_signed_for_p2wpkh_and_p2tr_and_verify() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    let wallet = import_abandon(&server, "w").await;
    let secp = Secp256k1::verification_only();
    for kind in ["p2wpkh", "p2tr"] {
        let (key, address) = btc_account(
            &server,
            &wallet,
            json!({"chain": "bitcoin", "network": "regtest", "address_type": kind}),
        )
        .await;
        let ours = script_of(&address);
        // Two inputs of ours, one of someone else's; a payment and change.
        let other = script_of(FRIEND);
        let unsigned = psbt(
            &[
                (60_000, ours.clone()),
                (25_000, other.clone()),
                (40_000, ours.clone()),
            ],
            &[(FRIEND, 100_000), (&address, 23_000)],
            true,
        );
        let (status, body) = sign_psbt(
            &server,
            &key,
            &signer,
            json!({"psbt": b64(&unsigned.serialize()), "finalize": false}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["signed_inputs"], json!([0, 2]), "{body}");
        assert_eq!(body["fee_sat"], 2000);
        assert_eq!(body["complete"], false);
        let signed = Psbt::deserialize(&unb64(body["psbt"].as_str().unwrap())).unwrap();
        let prevouts: Vec<TxOut> = signed
            .inputs
            .iter()
            .map(|i| i.witness_utxo.clone().unwrap())
            .collect();
        let mut cache = SighashCache::new(&signed.unsigned_tx);
        for i in [0usize, 2] {
            let input = &signed.inputs[i];
            if kind == "p2wpkh" {
                let (pk, sig) = input.partial_sigs.iter().next().unwrap();
                let hash = cache
                    .p2wpkh_signature_hash(i, &ours, prevouts[i].value, EcdsaSighashType::All)
                    .unwrap();
                secp.verify_ecdsa(
                    &Message::from_digest(hash.to_byte_array()),
                    &sig.signature,
                    &pk.inner,
                )
                .unwrap();
            } else {
                let sig = input.tap_key_sig.unwrap();
                let hash = cache
                    .taproot_key_spend_signature_hash(
                        i,
                        &Prevouts::All(&prevouts),
                        TapSighashType::Default,
                    )
                    .unwrap();
                let output_key =
                    bitcoin::XOnlyPublicKey::from_slice(&ours.as_bytes()[2..]).unwrap();
                secp.verify_schnorr(
                    &sig.signature,
                    &Message::from_digest(hash.to_byte_array()),
                    &output_key,
                )
                .unwrap();
            }
        }
        assert!(signed.inputs[1].partial_sigs.is_empty() && signed.inputs[1].tap_key_sig.is_none());

        // Finalized: the audit and request rows hold one decision for both signatures.
        let (status, body) = sign_psbt(
            &server,
            &key,
            &signer,
            json!({"psbt": b64(&psbt(&[(60_000, ours.clone())], &[(FRIEND, 59_000)], true).serialize())}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["complete"], true);
        let tx: Transaction =
            bitcoin::consensus::encode::deserialize_hex(body["transaction"].as_str().unwrap())
                .unwrap();
        assert_eq!(
            tx.compute_txid().to_string(),
            body["txid"].as_str().unwrap()
        );
        assert_eq!(
            tx.input[0].witness.len(),
            if kind == "p2wpkh" { 2 } else { 1 }
        );
    }
}

#[tokio::test]
async fn psbt_refusals_give_no_signature() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    let wallet = import_abandon(&server, "w").await;
    let (key, address) = btc_account(
        &server,
        &wallet,
        json!({"chain": "bitcoin", "network": "regtest"}),
    )
    .await;
    let ours = script_of(&address);
    let cases = [
        (
            json!({"psbt": b64(b"not a psbt")}),
            StatusCode::BAD_REQUEST,
            "INVALID_PSBT",
        ),
        (
            json!({"psbt": "%%%"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            json!({"psbt": b64(&psbt(&[(10_000, script_of(FRIEND))], &[(FRIEND, 9_000)], true).serialize())}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "NO_INPUTS_TO_SIGN",
        ),
        (
            json!({"psbt": b64(&psbt(&[(10_000, ours.clone())], &[(FRIEND, 9_000)], false).serialize())}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "MISSING_UTXO",
        ),
        (
            json!({"psbt": b64(&psbt(&[(10_000, ours.clone())], &[(FRIEND, 11_000)], true).serialize())}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
    ];
    for (body, status_want, code) in cases {
        let (status, resp) = sign_psbt(&server, &key, &signer, body).await;
        assert_error(status, &resp, status_want, code);
        assert!(resp.get("psbt").is_none(), "{resp}");
    }
    // SIGHASH_NONE would let anyone change the outputs the policy saw.
    let mut none = psbt(&[(10_000, ours.clone())], &[(FRIEND, 9_000)], true);
    none.inputs[0].sighash_type = Some(EcdsaSighashType::None.into());
    let (status, resp) = sign_psbt(
        &server,
        &key,
        &signer,
        json!({"psbt": b64(&none.serialize())}),
    )
    .await;
    assert_error(
        status,
        &resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
    // A key of another purpose.
    let eth = account(&server, &wallet, json!({"chain": "ethereum"})).await;
    let (status, resp) = sign_psbt(
        &server,
        eth["key"]["id"].as_str().unwrap(),
        &signer,
        json!({"psbt": b64(&psbt(&[(10_000, ours)], &[(FRIEND, 9_000)], true).serialize())}),
    )
    .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "WRONG_KEY_PURPOSE");
    assert!(resp.get("psbt").is_none());
}

#[tokio::test]
async fn btc_allowlist_sees_outputs_and_fee() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    let wallet = import_abandon(&server, "w").await;
    let (key, address) = btc_account(
        &server,
        &wallet,
        json!({"chain": "bitcoin", "network": "regtest"}),
    )
    .await;
    // Another account of the same wallet counts as change.
    let (_, other_account) = btc_account(
        &server,
        &wallet,
        json!({"chain": "bitcoin", "network": "regtest", "index": 7}),
    )
    .await;
    let ours = script_of(&address);
    let policy = upload(
        &server,
        "btc",
        &example_wasm("btc-output-allowlist"),
        Value::Null,
    )
    .await;
    let (status, body) = bind(
        &server,
        &key,
        &[(&policy, json!({"addresses": [FRIEND], "max_fee_sat": 5000}))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ok = psbt(
        &[(100_000, ours.clone())],
        &[(FRIEND, 50_000), (&other_account, 48_000)],
        true,
    );
    let (status, body) = sign_psbt(
        &server,
        &key,
        &signer,
        json!({"psbt": b64(&ok.serialize())}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stranger = Address::p2wsh(&ScriptBuf::new(), bitcoin::Network::Regtest).to_string();
    let stranger = stranger.as_str();
    for (bad, reason) in [
        (
            psbt(
                &[(100_000, ours.clone())],
                &[(stranger, 50_000), (&address, 48_000)],
                true,
            ),
            "not in the allowlist",
        ),
        (
            psbt(&[(100_000, ours.clone())], &[(FRIEND, 90_000)], true),
            "above the cap",
        ),
    ] {
        let (status, body) = sign_psbt(
            &server,
            &key,
            &signer,
            json!({"psbt": b64(&bad.serialize())}),
        )
        .await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "POLICY_DENIED");
        assert!(body.get("psbt").is_none());
        assert!(body["message"].as_str().unwrap().contains(reason), "{body}");
    }
}

async fn sol(
    server: &TestServer,
    key: &str,
    what: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    server
        .call(
            "POST",
            &format!("/v1/keys/{key}/solana/{what}"),
            Some(token),
            Some(body),
        )
        .await
}

pub fn transfer_message(payer: &SolAddress, to: &SolAddress, lamports: u64) -> Vec<u8> {
    let ix = solana_system_interface::instruction::transfer(payer, to, lamports);
    let msg = SolMessage::new_with_blockhash(&[ix], Some(payer), &Hash::new_from_array([9; 32]));
    VersionedMessage::Legacy(msg).serialize()
}

#[tokio::test]
async fn solana_transactions_and_messages_are_signed_and_judged() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    let wallet = import_abandon(&server, "w").await;
    let resp = account(&server, &wallet, json!({"chain": "solana"})).await;
    let key = resp["key"]["id"].as_str().unwrap().to_string();
    let pk: [u8; 32] = hex::decode(
        resp["account"]["public_key"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
    )
    .unwrap()
    .try_into()
    .unwrap();
    let payer = SolAddress::new_from_array(pk);
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
    let friend = SolAddress::new_from_array([5; 32]);

    // A message, and the same as a transaction with an empty signature slot.
    let message = transfer_message(&payer, &friend, 1_000);
    let (status, body) = sol(
        &server,
        &key,
        "sign-transaction",
        &signer,
        json!({"message": b64(&message)}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sig =
        ed25519_dalek::Signature::from_slice(&unb64(body["signature_base64"].as_str().unwrap()))
            .unwrap();
    vk.verify_strict(&message, &sig).unwrap();
    let tx = unb64(body["transaction"].as_str().unwrap());
    assert_eq!(tx[0], 1);
    assert_eq!(&tx[1..65], &sig.to_bytes());
    assert_eq!(&tx[65..], &message[..]);
    let mut unsigned = vec![1u8];
    unsigned.extend_from_slice(&[0; 64]);
    unsigned.extend_from_slice(&message);
    let (status, body2) = sol(
        &server,
        &key,
        "sign-transaction",
        &signer,
        json!({"transaction": b64(&unsigned)}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body2}");
    assert_eq!(body2["transaction"], body["transaction"]);

    // Off-chain message.
    let (status, body) = sol(
        &server,
        &key,
        "sign-message",
        &signer,
        json!({"message": "hello keyward"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let signed = unb64(body["signed_message"].as_str().unwrap());
    assert!(signed.starts_with(b"\xffsolana offchain"));
    let sig =
        ed25519_dalek::Signature::from_slice(&unb64(body["signature_base64"].as_str().unwrap()))
            .unwrap();
    vk.verify_strict(&signed, &sig).unwrap();

    // Refusals: malformed, fee payer not ours, trailing bytes, a key of another purpose.
    let mut trailing = message.clone();
    trailing.push(0);
    let stranger = transfer_message(&friend, &payer, 1);
    for (body, status_want, code) in [
        (
            json!({"message": b64(b"\x01\x00\x01garbage")}),
            StatusCode::BAD_REQUEST,
            "INVALID_SOLANA_MESSAGE",
        ),
        (
            json!({"message": b64(&trailing)}),
            StatusCode::BAD_REQUEST,
            "INVALID_SOLANA_MESSAGE",
        ),
        (
            json!({"transaction": b64(&message)}),
            StatusCode::BAD_REQUEST,
            "INVALID_SOLANA_MESSAGE",
        ),
        (
            json!({"message": b64(&stranger)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "FEE_PAYER_NOT_OURS",
        ),
        (
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
    ] {
        let (status, resp) = sol(&server, &key, "sign-transaction", &signer, body).await;
        assert_error(status, &resp, status_want, code);
        assert!(resp.get("transaction").is_none());
    }

    // The transfer limit judges decoded transfers.
    let policy = upload(
        &server,
        "sol",
        &example_wasm("sol-transfer-limit"),
        Value::Null,
    )
    .await;
    let (status, body) = bind(&server, &key, &[(&policy, json!({"max_lamports": 5000}))]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = sol(
        &server,
        &key,
        "sign-transaction",
        &signer,
        json!({"message": b64(&transfer_message(&payer, &friend, 5000))}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = sol(
        &server,
        &key,
        "sign-transaction",
        &signer,
        json!({"message": b64(&transfer_message(&payer, &friend, 5001))}),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "POLICY_DENIED");
    assert!(body["message"].as_str().unwrap().contains("5001"), "{body}");
    assert!(body.get("transaction").is_none());
}

#[tokio::test]
async fn an_approved_psbt_is_signed_once_and_replayed_with_its_idempotency_key() {
    use crate::policies::constant_policy;
    let server = setup().await;
    let alice = server.token_named("alice", &["signer"]);
    let wallet = import_abandon(&server, "w").await;
    let (key, address) = btc_account(
        &server,
        &wallet,
        json!({"chain": "bitcoin", "network": "regtest", "address_type": "p2tr"}),
    )
    .await;
    let ours = script_of(&address);
    let policy = upload(
        &server,
        "approve-all",
        &constant_policy(r#"{"decision":"require_approval","reason":"treasury","approvals":1,"approver_roles":["treasury"],"ttl_seconds":600}"#),
        Value::Null,
    )
    .await;
    let (status, body) = bind(&server, &key, &[(&policy, Value::Null)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let unsigned = psbt(
        &[(30_000, ours.clone()), (30_000, ours.clone())],
        &[(FRIEND, 59_000)],
        true,
    );
    let body = json!({"psbt": b64(&unsigned.serialize())});
    let headers = [("Idempotency-Key", "psbt-1")];
    let path = format!("/v1/keys/{key}/bitcoin/sign-psbt");
    let (status, pending) = server
        .call_with("POST", &path, Some(&alice), Some(body.clone()), &headers)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert!(pending.get("psbt").is_none());
    let id = pending["request_id"].as_str().unwrap();
    let bob = server.token_named("bob", &["approver", "treasury"]);
    let (status, voted) = server
        .call(
            "POST",
            &format!("/v1/requests/{id}/approve"),
            Some(&bob),
            Some(json!({"comment": "ok"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{voted}");
    // The same request with the same key now answers the signed, finalized PSBT.
    let (status, signed) = server
        .call_with("POST", &path, Some(&alice), Some(body), &headers)
        .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    assert_eq!(signed["request_id"], id);
    assert_eq!(signed["complete"], true, "{signed}");
    let tx: Transaction =
        bitcoin::consensus::encode::deserialize_hex(signed["transaction"].as_str().unwrap())
            .unwrap();
    let prevouts: Vec<TxOut> = unsigned
        .inputs
        .iter()
        .map(|i| i.witness_utxo.clone().unwrap())
        .collect();
    let secp = Secp256k1::verification_only();
    let output_key = bitcoin::XOnlyPublicKey::from_slice(&ours.as_bytes()[2..]).unwrap();
    let mut cache = SighashCache::new(&unsigned.unsigned_tx);
    for i in 0..2 {
        let sig = bitcoin::taproot::Signature::from_slice(&tx.input[i].witness[0]).unwrap();
        let hash = cache
            .taproot_key_spend_signature_hash(i, &Prevouts::All(&prevouts), TapSighashType::Default)
            .unwrap();
        secp.verify_schnorr(
            &sig.signature,
            &Message::from_digest(hash.to_byte_array()),
            &output_key,
        )
        .unwrap();
    }
}

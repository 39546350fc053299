//! Solana end to end: the real binary over HTTP, @solana/web3.js and tweetnacl (npm) as the
//! independent libraries. web3.js builds a transfer paid by the account, Keyward signs it,
//! web3.js verifies the signed transaction (`verifySignatures`) and decodes the transfer; the
//! off-chain message is rebuilt byte for byte in JavaScript and its signature checked with
//! nacl. The transfer limit policy denies a larger transfer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_e2e::{ABANDON, Keyward, b64, example_policy, node_json};
use serde_json::json;

const TO: &str = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";

#[tokio::test]
async fn web3js_builds_keyward_signs_web3js_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let admin = kw.admin().to_string();
    let signer = kw.token("alice", &["signer"]);
    let wallet_id = kw.import_wallet("sol", ABANDON).await;
    let account = kw
        .derive_account(&wallet_id, json!({"chain": "solana", "index": 0}))
        .await;
    let key = account["key"]["id"].as_str().unwrap().to_string();
    let address = account["account"]["address"].as_str().unwrap().to_string();

    let built = node_json(
        "solana-check.mjs",
        "build",
        dir.path(),
        json!({"address": address, "to": TO, "lamports": 250_000}),
    );
    let (status, signed) = kw
        .call(
            "POST",
            &format!("/v1/keys/{key}/solana/sign-transaction"),
            Some(&signer),
            Some(&json!({"message": built["message"]})),
        )
        .await;
    assert_eq!(status, 200, "{signed}");
    let text = "Keyward e2e: sign in";
    let (status, message) = kw
        .call(
            "POST",
            &format!("/v1/keys/{key}/solana/sign-message"),
            Some(&signer),
            Some(&json!({"message": text})),
        )
        .await;
    assert_eq!(status, 200, "{message}");
    let checked = node_json(
        "solana-check.mjs",
        "verify",
        dir.path(),
        json!({"transaction": signed["transaction"], "address": address, "text": text,
               "signed_message": message["signed_message"],
               "message_signature": message["signature_base64"]}),
    );
    assert_eq!(checked["verified"], true, "{checked}");
    assert_eq!(checked["fee_payer"], address.as_str());
    assert_eq!(checked["signer"], address.as_str());
    assert_eq!(checked["to"], TO);
    assert_eq!(checked["lamports"], 250_000);
    assert_eq!(checked["offchain_bytes_match"], true, "{checked}");
    assert_eq!(checked["offchain_verified"], true, "{checked}");

    // The transfer limit denies a larger transfer.
    let (status, policy) = kw
        .call(
            "POST",
            "/v1/policies",
            Some(&admin),
            Some(&json!({"name": "sol-limit", "version": "1.0.0",
                         "module": b64(&example_policy("sol-transfer-limit"))})),
        )
        .await;
    assert_eq!(status, 201, "{policy}");
    let (status, bound) = kw
        .call(
            "PUT",
            &format!("/v1/keys/{key}/policies"),
            Some(&admin),
            Some(&json!({"policies": [{"policy_id": policy["id"], "settings": {"max_lamports": 250_000}}]})),
        )
        .await;
    assert_eq!(status, 200, "{bound}");
    let (status, ok) = kw
        .call(
            "POST",
            &format!("/v1/keys/{key}/solana/sign-transaction"),
            Some(&signer),
            Some(&json!({"message": built["message"]})),
        )
        .await;
    assert_eq!(status, 200, "{ok}");
    let larger = node_json(
        "solana-check.mjs",
        "build",
        dir.path(),
        json!({"address": address, "to": TO, "lamports": 250_001}),
    );
    let (status, denied) = kw
        .call(
            "POST",
            &format!("/v1/keys/{key}/solana/sign-transaction"),
            Some(&signer),
            Some(&json!({"message": larger["message"]})),
        )
        .await;
    assert_eq!(status, 403, "{denied}");
    assert_eq!(denied["code"], "POLICY_DENIED");
    assert!(denied.get("transaction").is_none() && denied.get("signature").is_none());
}

//! Ethereum end to end: the real binary over HTTP, ethers v6 (npm) as the independent
//! verifier. ethers recovers the account's address from each kind of signature, parses the
//! signed transactions of all three types, hashes the EIP-712 data itself, and uses
//! `/rpc/ethereum` as its remote signer (JsonRpcProvider + JsonRpcSigner with the bearer
//! token), including a policy denial coming back as a JSON-RPC error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use keyward_e2e::{ABANDON, Keyward, b64, example_policy, js_dir};
use serde_json::{Value, json};

const ADDRESS: &str = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94";
const TO: &str = "0x3535353535353535353535353535353535353535";

/// Typed data with nested structs and arrays (ethers hashes it on its own).
fn group_mail() -> Value {
    json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "Person": [{"name": "name", "type": "string"}, {"name": "wallets", "type": "address[]"}],
            "Mail": [
                {"name": "from", "type": "Person"},
                {"name": "to", "type": "Person[]"},
                {"name": "contents", "type": "string"},
                {"name": "amounts", "type": "uint256[2]"},
                {"name": "tag", "type": "bytes32"}
            ]
        },
        "primaryType": "Mail",
        "domain": {"name": "Ether Mail", "version": "1", "chainId": 1,
                   "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
        "message": {
            "from": {"name": "Cow", "wallets": ["0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826",
                                               "0xDeaDbeefdEAdbeefdEadbEEFdeadbeEFdEaDbeeF"]},
            "to": [{"name": "Bob", "wallets": ["0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"]},
                   {"name": "Alice", "wallets": []}],
            "contents": "Hello, Bob!",
            "amounts": ["1", "340282366920938463463374607431768211456"],
            "tag": format!("0x{}", "ab".repeat(32))
        }
    })
}

async fn eth(kw: &Keyward, key: &str, what: &str, token: &str, body: Value) -> Value {
    let (status, resp) = kw
        .call(
            "POST",
            &format!("/v1/keys/{key}/ethereum/{what}"),
            Some(token),
            Some(&body),
        )
        .await;
    assert_eq!(status, 200, "{what}: {resp}");
    resp
}

#[tokio::test]
async fn ethers_verifies_signatures_parses_transactions_and_uses_the_rpc_signer() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let admin = kw.admin().to_string();
    let wallet_id = kw.import_wallet("e2e", ABANDON).await;
    let account = kw
        .derive_account(&wallet_id, json!({"chain": "ethereum", "index": 0}))
        .await;
    assert_eq!(account["account"]["address"], ADDRESS);
    let key = account["key"]["id"].as_str().unwrap().to_string();
    // Only transfers to TO: the RPC signer's second transaction is denied.
    let (status, policy) = kw
        .call(
            "POST",
            "/v1/policies",
            Some(&admin),
            Some(&json!({"name": "eth-allowlist", "version": "1.0.0",
                         "module": b64(&example_policy("eth-allowlist"))})),
        )
        .await;
    assert_eq!(status, 201, "{policy}");
    let (status, bound) = kw
        .call(
            "PUT",
            &format!("/v1/keys/{key}/policies"),
            Some(&admin),
            Some(&json!({"policies": [{"policy_id": policy["id"], "settings": {"recipients": [TO]}}]})),
        )
        .await;
    assert_eq!(status, 200, "{bound}");
    let signer = kw.token("alice", &["signer"]);

    let mut messages = Vec::new();
    for (body, hex_message) in [
        (
            json!({"message": "hello keyward"}),
            hex::encode("hello keyward"),
        ),
        (json!({"message_hex": "0x00ff10"}), "00ff10".to_string()),
    ] {
        let resp = eth(&kw, &key, "sign-message", &signer, body).await;
        messages.push(
            json!({"message_hex": format!("0x{hex_message}"), "signature": resp["signature"]}),
        );
    }
    let mut txs = Vec::new();
    let mut expected = Vec::new();
    for (tx, ty) in [
        (
            json!({"chain_id": "1", "nonce": "9", "gas_price": "20000000000", "gas": "21000",
                "to": TO, "value": "1000000000000000000"}),
            0,
        ),
        (
            json!({"type": "0x1", "chain_id": "1", "nonce": "10", "gas_price": "1000000000",
                "gas": "30000", "to": TO, "value": "2", "data": "0xdeadbeef",
                "access_list": [{"address": TO, "storage_keys": []}]}),
            1,
        ),
        (
            json!({"chain_id": "1", "nonce": "11", "max_fee_per_gas": "3000000000",
                "max_priority_fee_per_gas": "2", "gas": "21000", "to": TO, "value": "3"}),
            2,
        ),
    ] {
        let resp = eth(
            &kw,
            &key,
            "sign-transaction",
            &signer,
            json!({"transaction": tx.clone()}),
        )
        .await;
        txs.push(resp["raw_transaction"].clone());
        expected.push((ty, tx, resp["transaction_hash"].clone()));
    }
    let mut typed = Vec::new();
    for data in [mail(), group_mail()] {
        let resp = eth(
            &kw,
            &key,
            "sign-typed-data",
            &signer,
            json!({"typed_data": data.clone()}),
        )
        .await;
        typed.push(
            json!({"typed_data": data, "signature": resp["signature"], "hash": resp["hash"]}),
        );
    }

    let input = json!({"url": kw.url, "token": signer, "address": ADDRESS,
                       "messages": messages, "txs": txs, "typed": typed});
    let file = dir.path().join("ethers-input.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let out = Command::new("node")
        .arg("ethereum-check.mjs")
        .arg(&file)
        .current_dir(js_dir())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "ethereum-check.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("script output");

    assert_eq!(v["messages"], json!([ADDRESS, ADDRESS]));
    for (i, t) in typed.iter().enumerate() {
        assert_eq!(v["typed"][i]["hash"], t["hash"], "EIP-712 hash {i}");
        assert_eq!(v["typed"][i]["signer"], ADDRESS);
    }
    assert_eq!(
        v["typed"][0]["hash"],
        "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    );
    for (i, (ty, tx, hash)) in expected.iter().enumerate() {
        let p = &v["txs"][i];
        assert_eq!(p["type"], *ty, "{p}");
        assert_eq!(p["from"], ADDRESS, "{p}");
        assert_eq!(p["to"], TO, "{p}");
        assert_eq!(p["value"], tx["value"], "{p}");
        assert_eq!(p["chainId"], "1");
        assert_eq!(p["hash"], *hash);
        assert_eq!(p["gasLimit"], tx["gas"]);
    }
    assert_eq!(v["txs"][0]["nonce"], 9);
    assert_eq!(v["txs"][1]["data"], "0xdeadbeef");
    assert_eq!(v["txs"][1]["accessList"], json!([TO]));

    let rpc = &v["rpc"];
    assert_eq!(rpc["accounts"], json!([ADDRESS]));
    assert_eq!(rpc["personal_sign"], ADDRESS);
    assert_eq!(rpc["transaction"]["from"], ADDRESS);
    assert_eq!(rpc["transaction"]["type"], 2);
    assert_eq!(rpc["transaction"]["value"], "5");
    assert_eq!(rpc["transaction"]["nonce"], 4);
    assert_eq!(rpc["legacy"]["from"], ADDRESS);
    assert_eq!(rpc["legacy"]["type"], 0);
    assert_eq!(rpc["typed"], ADDRESS);
    assert_eq!(rpc["denied"]["code"], 4001, "{rpc}");
    assert!(
        rpc["denied"]["message"]
            .as_str()
            .unwrap()
            .contains("not in the allowlist"),
        "{rpc}"
    );
}

fn mail() -> Value {
    json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
            "Mail": [
                {"name": "from", "type": "Person"},
                {"name": "to", "type": "Person"},
                {"name": "contents", "type": "string"}
            ]
        },
        "primaryType": "Mail",
        "domain": {"name": "Ether Mail", "version": "1", "chainId": 1,
                   "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
        "message": {
            "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
            "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
            "contents": "Hello, Bob!"
        }
    })
}

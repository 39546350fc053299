//! Bitcoin end to end: the real binary over HTTP, bitcoinjs-lib (npm) as the independent
//! library. bitcoinjs builds a regtest PSBT spending the account's outputs, Keyward signs it,
//! and bitcoinjs validates every signature against its own sighash and the input's script
//! (`validateSignaturesOfInput`), finalizes and extracts the transaction. Both BIP-84 (P2WPKH)
//! and BIP-86 (P2TR key path) accounts; the output allowlist policy denies an unknown output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_e2e::{ABANDON, Keyward, b64, example_policy, node_json};
use serde_json::json;

/// A regtest address of nobody in the wallet (a P2WSH of 32 bytes 0x42).
const TO: &str = "bcrt1qgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpyysjzgfpqrgmtn9";

#[tokio::test]
async fn bitcoinjs_builds_keyward_signs_bitcoinjs_validates_and_finalizes() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let admin = kw.admin().to_string();
    let signer = kw.token("alice", &["signer"]);
    let wallet_id = kw.import_wallet("btc", ABANDON).await;

    for kind in ["p2wpkh", "p2tr"] {
        let account = kw
            .derive_account(
                &wallet_id,
                json!({"chain": "bitcoin", "network": "regtest", "address_type": kind}),
            )
            .await;
        let key = account["key"]["id"].as_str().unwrap().to_string();
        let address = account["account"]["address"].as_str().unwrap().to_string();
        let public_key = account["account"]["public_key"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x");
        let built = node_json(
            "bitcoin-check.mjs",
            "build",
            dir.path(),
            json!({"address": address, "to": TO, "kind": kind, "internal_key": &public_key[2..]}),
        );
        let (status, signed) = kw
            .call(
                "POST",
                &format!("/v1/keys/{key}/bitcoin/sign-psbt"),
                Some(&signer),
                Some(&json!({"psbt": built["psbt"], "finalize": false})),
            )
            .await;
        assert_eq!(status, 200, "{signed}");
        assert_eq!(signed["signed_inputs"], json!([0, 1]), "{signed}");
        assert_eq!(signed["fee_sat"], 1500);
        let checked = node_json(
            "bitcoin-check.mjs",
            "verify",
            dir.path(),
            json!({"psbt": signed["psbt"], "kind": kind}),
        );
        assert_eq!(checked["valid"], json!([true, true]), "{kind}: {checked}");
        assert_eq!(checked["txid"], signed["txid"], "{kind}");
        assert_eq!(
            checked["witness_items"],
            if kind == "p2wpkh" {
                json!([2, 2])
            } else {
                json!([1, 1])
            }
        );
        assert_eq!(
            checked["outputs"][0],
            json!({"address": TO, "value": 100_000})
        );

        // Keyward's own finalization gives the same transaction id.
        let (status, finalized) = kw
            .call(
                "POST",
                &format!("/v1/keys/{key}/bitcoin/sign-psbt"),
                Some(&signer),
                Some(&json!({"psbt": built["psbt"]})),
            )
            .await;
        assert_eq!(status, 200, "{finalized}");
        assert_eq!(finalized["complete"], true);
        assert_eq!(finalized["txid"], checked["txid"]);

        // The allowlist (only our own change allowed) denies the payment to TO.
        let (status, policy) = kw
            .call(
                "POST",
                "/v1/policies",
                Some(&admin),
                Some(&json!({"name": format!("btc-{kind}"), "version": "1.0.0",
                             "module": b64(&example_policy("btc-output-allowlist"))})),
            )
            .await;
        assert_eq!(status, 201, "{policy}");
        let (status, bound) = kw
            .call(
                "PUT",
                &format!("/v1/keys/{key}/policies"),
                Some(&admin),
                Some(&json!({"policies": [{"policy_id": policy["id"], "settings": {"addresses": []}}]})),
            )
            .await;
        assert_eq!(status, 200, "{bound}");
        let (status, denied) = kw
            .call(
                "POST",
                &format!("/v1/keys/{key}/bitcoin/sign-psbt"),
                Some(&signer),
                Some(&json!({"psbt": built["psbt"]})),
            )
            .await;
        assert_eq!(status, 403, "{denied}");
        assert_eq!(denied["code"], "POLICY_DENIED");
        assert!(denied["message"].as_str().unwrap().contains(TO), "{denied}");
        assert!(denied.get("psbt").is_none());
    }
}

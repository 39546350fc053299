//! The SDK's test builders (`keyward_policy::testing`) against the server's own intents: for
//! every intent kind, a real request goes through its sign route to a policy that denies
//! with its whole input as the reason, and the `SignRequest` it saw is compared with what the
//! builder makes for the same values: the same keys at every level with the same JSON types,
//! and equal values everywhere except the few the builders cannot compute (hashes, ids,
//! times), which are listed per case.

use bitcoin::psbt::Psbt;
use keyward_policy::testing::{self, BITCOIN_ACCOUNT, ETHEREUM_FROM, SOLANA_ACCOUNT};
use keyward_policy::{Intent, SignRequest};
use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::bitcoin_solana::{psbt, script_of, transfer_message};
use crate::policies::{bind, upload, wat_policy};
use crate::wallets::{account, import_abandon};
use crate::{TestServer, b64, setup};

/// Fields of the request no builder can match: set by the server for each request.
const PER_REQUEST: &[&str] = &[
    "/request_id",
    "/time",
    "/unix_time",
    "/key/id",
    "/principal/issuer",
];

/// A module that denies with its input document, JSON-escaped, as the reason (only `"` and
/// `\` need escaping: the host's JSON has every control character escaped already).
fn mirror_policy() -> Vec<u8> {
    let prefix = r#"{"decision":"deny","reason":""#;
    let evaluate = format!(
        r#"(local $out i32) (local $o i32) (local $i i32) (local $c i32)
    (local.set $out (global.get $next))
    (memory.copy (local.get $out) (i32.const 16) (i32.const {len}))
    (local.set $o (i32.add (local.get $out) (i32.const {len})))
    (block $done (loop $each
      (br_if $done (i32.ge_u (local.get $i) (local.get 1)))
      (local.set $c (i32.load8_u (i32.add (local.get 0) (local.get $i))))
      (if (i32.or (i32.eq (local.get $c) (i32.const 34)) (i32.eq (local.get $c) (i32.const 92)))
        (then
          (i32.store8 (local.get $o) (i32.const 92))
          (local.set $o (i32.add (local.get $o) (i32.const 1)))))
      (i32.store8 (local.get $o) (local.get $c))
      (local.set $o (i32.add (local.get $o) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $each)))
    (i32.store8 (local.get $o) (i32.const 34))
    (i32.store8 offset=1 (local.get $o) (i32.const 125))
    (local.set $o (i32.add (local.get $o) (i32.const 2)))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.sub (local.get $o) (local.get $out))))"#,
        len = prefix.len()
    );
    wat_policy(&evaluate, &prefix.replace('"', "\\\""), "")
}

/// Uploads the mirror policy; returns its id.
async fn mirror(server: &TestServer) -> String {
    upload(server, "mirror", &mirror_policy(), Value::Null).await
}

/// Binds the mirror policy `id` to `key`.
async fn mirror_on(server: &TestServer, id: &str, key: &str) {
    let (status, body) = bind(server, key, &[(id, Value::Null)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The request the mirror policy saw, from a sign route's denial.
fn seen(status: StatusCode, body: &Value) -> Value {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "POLICY_DENIED", "{body}");
    let reason = body["details"]["policy"]["trace"][0]["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("no reason in {body}"));
    let input: Value = serde_json::from_str(reason).expect("the mirrored input is JSON");
    assert_eq!(input["abi"], 1);
    input["request"].clone()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Fails unless `ours` has the keys of `theirs` at every level, with the same JSON types.
fn assert_same_shape(at: &str, theirs: &Value, ours: &Value) {
    assert_eq!(
        kind_of(theirs),
        kind_of(ours),
        "{at}: the server sends {theirs}, the builder makes {ours}"
    );
    match (theirs, ours) {
        (Value::Object(t), Value::Object(o)) => {
            let tk: Vec<&String> = t.keys().collect();
            let ok: Vec<&String> = o.keys().collect();
            assert_eq!(
                tk, ok,
                "{at}: keys differ between the server and the builder"
            );
            for (k, v) in t {
                assert_same_shape(&format!("{at}/{k}"), v, &o[k]);
            }
        }
        (Value::Array(t), Value::Array(o)) => {
            assert_eq!(t.len(), o.len(), "{at}: lengths differ: {theirs} vs {ours}");
            for (i, (t, o)) in t.iter().zip(o).enumerate() {
                assert_same_shape(&format!("{at}/{i}"), t, o);
            }
        }
        _ => {}
    }
}

/// Fails unless the builder's request has the server's shape and the server's values
/// everywhere but at `derived` (JSON pointers under `/intent`, besides `PER_REQUEST`).
fn assert_matches(case: &str, server: &Value, builder: &SignRequest, derived: &[&str]) {
    let mut ours = serde_json::to_value(builder).unwrap();
    assert_same_shape(case, server, &ours);
    let pointers = PER_REQUEST
        .iter()
        .map(|p| p.to_string())
        .chain(derived.iter().map(|p| format!("/intent{p}")));
    for p in pointers {
        let theirs = server
            .pointer(&p)
            .unwrap_or_else(|| panic!("{case}: the server has no {p}"))
            .clone();
        *ours
            .pointer_mut(&p)
            .unwrap_or_else(|| panic!("{case}: the builder has no {p}")) = theirs;
    }
    assert_eq!(
        &ours, server,
        "{case}: the builder's values differ from the server's"
    );
}

/// The builder's request for the same caller (`alice`, signer) and key.
fn request_for(key_name: &str, intent: impl Into<Intent>) -> testing::RequestBuilder {
    testing::request().key_name(key_name).intent(intent)
}

fn hex32(byte: u8) -> String {
    hex::encode([byte; 32])
}

#[tokio::test]
async fn raw_and_document_builders_match_the_server() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    let mirror = mirror(&server).await;
    let key = server.create_key("raw-key", "ed25519").await;
    let kid = key["id"].as_str().unwrap();
    mirror_on(&server, &mirror, kid).await;
    let path = format!("/v1/keys/{kid}/sign");

    let body = json!({"digest": b64(&[7u8; 32])});
    let (status, resp) = server.call("POST", &path, Some(&signer), Some(body)).await;
    let want = request_for("raw-key", testing::raw_digest("sha256", &hex32(7))).build();
    assert_matches("raw digest", &seen(status, &resp), &want, &[]);

    let body = json!({"message": b64(b"hello")});
    let (status, resp) = server.call("POST", &path, Some(&signer), Some(body)).await;
    let want = request_for("raw-key", testing::raw_message(5)).build();
    assert_matches("raw message", &seen(status, &resp), &want, &["/digest"]);
    // The default request of `testing::request()` is the digest case.
    let (status, resp) = server
        .call(
            "POST",
            &path,
            Some(&signer),
            Some(json!({"digest": b64(&[0u8; 32])})),
        )
        .await;
    let want = testing::request().key_name("raw-key").build();
    assert_matches("default request", &seen(status, &resp), &want, &[]);

    // A certified document key, both formats.
    let (status, doc) = server
        .call(
            "POST",
            "/v1/keys",
            Some(&server.admin),
            Some(json!({"name": "doc-key", "algorithm": "p256", "purpose": "document"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{doc}");
    let doc = doc["id"].as_str().unwrap();
    let (status, cert) = server
        .call(
            "POST",
            &format!("/v1/keys/{doc}/certificate"),
            Some(&server.admin),
            Some(json!({"subject": {"common_name": "Test Signer", "organization": "Example"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    mirror_on(&server, &mirror, doc).await;
    for format in ["cms", "raw"] {
        let body = json!({"key_id": doc, "document_hash": b64(&[3u8; 32]),
                          "hash_algorithm": "sha256", "format": format,
                          "document_name": "contract.pdf"});
        let (status, resp) = server
            .call("POST", "/v1/documents/sign", Some(&signer), Some(body))
            .await;
        let mut intent = testing::document(format, &hex32(3));
        intent.document_name = Some("contract.pdf".into());
        let want = request_for("doc-key", intent).algorithm("p256").build();
        let derived: &[&str] = match format {
            "cms" => &["/certificate_serial", "/signing_time"],
            _ => &["/certificate_serial"],
        };
        assert_matches(format, &seen(status, &resp), &want, derived);
    }
}

const TO: &str = "0x3535353535353535353535353535353535353535";
const DAI: &str = "0x6B175474E89094C44Da98b954EedeAC495271d0F";

#[tokio::test]
async fn ethereum_builders_match_the_server() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    let mirror = mirror(&server).await;
    let wallet = import_abandon(&server, "w").await;
    let resp = account(&server, &wallet, json!({"chain": "ethereum", "index": 0})).await;
    assert_eq!(
        resp["account"]["address"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref(),
        Some(ETHEREUM_FROM)
    );
    let kid = resp["key"]["id"].as_str().unwrap().to_string();
    let name = resp["key"]["name"].as_str().unwrap().to_string();
    mirror_on(&server, &mirror, &kid).await;
    let call = |what: &'static str, body: Value| {
        let (server, signer, kid) = (&server, &signer, &kid);
        async move {
            let path = format!("/v1/keys/{kid}/ethereum/{what}");
            let (status, resp) = server.call("POST", &path, Some(signer), Some(body)).await;
            seen(status, &resp)
        }
    };
    let unsigned = &["/unsigned"];

    let got = call(
        "sign-transaction",
        json!({"transaction": {"chain_id": "1", "nonce": "0", "gas_price": "20000000000",
               "gas": "21000", "to": TO, "value": "1000000000000000000"}}),
    )
    .await;
    let want = testing::ethereum_legacy_transaction(1, TO, "1000000000000000000");
    assert_matches("legacy", &got, &request_for(&name, want).build(), unsigned);

    let got = call(
        "sign-transaction",
        json!({"transaction": {"type": "eip2930", "chain_id": "5", "nonce": "0",
               "gas_price": "20000000000", "gas": "21000", "to": TO, "value": "7",
               "access_list": [{"address": DAI, "storage_keys": [format!("0x{}", hex32(0x11))]}]}}),
    )
    .await;
    let want = testing::ethereum_eip2930_transaction(5, TO, "7", &[DAI]);
    assert_matches("eip2930", &got, &request_for(&name, want).build(), unsigned);

    let got = call(
        "sign-transaction",
        json!({"transaction": {"chain_id": "10", "nonce": "0", "max_fee_per_gas": "2000000000",
               "max_priority_fee_per_gas": "1000000000", "gas": "21000", "to": TO,
               "value": "12345"}}),
    )
    .await;
    let want = testing::ethereum_transaction(10, TO, "12345");
    assert_matches("eip1559", &got, &request_for(&name, want).build(), unsigned);

    // ERC-20: the transfer's call data made by the server's own encoder, the others by the
    // builders and decoded by the server.
    let amount = "250000000000000000000";
    let data = keyward_server::chains::ethereum::erc20::transfer_data(
        TO.parse().unwrap(),
        amount.parse().unwrap(),
    );
    let erc20 = |data: String| {
        json!({"transaction": {"chain_id": "1", "nonce": "0", "max_fee_per_gas": "2000000000",
               "max_priority_fee_per_gas": "1000000000", "gas": "65000", "to": DAI,
               "value": "0", "data": data}})
    };
    let got = call(
        "sign-transaction",
        erc20(format!("0x{}", hex::encode(data))),
    )
    .await;
    let want = testing::erc20_transfer(1, DAI, TO, amount);
    assert_matches(
        "erc20 transfer",
        &got,
        &request_for(&name, want).build(),
        unsigned,
    );
    for want in [
        testing::erc20_approve(1, DAI, TO, "0"),
        testing::erc20_transfer_from(
            1,
            DAI,
            "0xd8da6bf26964af9d7eed9e03e53415d37aa96045",
            TO,
            "42",
        ),
    ] {
        let got = call("sign-transaction", erc20(want.data.clone())).await;
        let case = want.erc20.as_ref().unwrap().function.clone();
        assert_matches(&case, &got, &request_for(&name, want).build(), unsigned);
    }

    for (body, bytes) in [
        (
            json!({"message": "hello keyward"}),
            b"hello keyward".to_vec(),
        ),
        (json!({"message_hex": "0x00ff10"}), vec![0x00, 0xff, 0x10]),
    ] {
        let got = call("sign-message", body).await;
        let want = testing::ethereum_message(&bytes);
        assert_matches(
            "eip191",
            &got,
            &request_for(&name, want).build(),
            &["/hash"],
        );
    }

    let mail = crate::ethereum::mail();
    let got = call("sign-typed-data", json!({"typed_data": mail})).await;
    let domain = testing::eip712_domain(
        "Ether Mail",
        "1",
        1,
        "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC",
    );
    let want = testing::ethereum_typed_data(domain, "Mail", mail["message"].clone());
    assert_matches(
        "eip712 mail",
        &got,
        &request_for(&name, want).build(),
        &["/hash"],
    );

    let spender = "0x1111111254eeb25477b68fb85ed929f73a960582";
    let want = testing::erc20_permit(1, "Dai Stablecoin", DAI, spender, "1000", 1_767_618_000);
    let permit = json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"}
            ]
        },
        "primaryType": "Permit",
        "domain": {"name": "Dai Stablecoin", "version": "1", "chainId": 1, "verifyingContract": DAI},
        "message": want.message,
    });
    let got = call("sign-typed-data", json!({"typed_data": permit})).await;
    assert_matches(
        "eip2612 permit",
        &got,
        &request_for(&name, want).build(),
        &["/hash"],
    );
}

#[tokio::test]
async fn bitcoin_and_solana_builders_match_the_server() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    let mirror = mirror(&server).await;
    let wallet = import_abandon(&server, "w").await;

    let resp = account(&server, &wallet, json!({"chain": "bitcoin", "index": 0})).await;
    assert_eq!(resp["account"]["address"], BITCOIN_ACCOUNT);
    let kid = resp["key"]["id"].as_str().unwrap().to_string();
    let name = resp["key"]["name"].as_str().unwrap().to_string();
    mirror_on(&server, &mirror, &kid).await;
    // Ours (P2WPKH) and someone else's taproot input; a payment and change.
    let friend = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";
    let taproot = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0";
    let unsigned: Psbt = psbt(
        &[
            (100_000, script_of(BITCOIN_ACCOUNT)),
            (20_000, script_of(taproot)),
        ],
        &[(friend, 60_000), (BITCOIN_ACCOUNT, 58_000)],
        true,
    );
    let (status, resp) = server
        .call(
            "POST",
            &format!("/v1/keys/{kid}/bitcoin/sign-psbt"),
            Some(&signer),
            Some(json!({"psbt": b64(&unsigned.serialize())})),
        )
        .await;
    let want = testing::bitcoin_psbt(
        "bitcoin",
        vec![
            testing::bitcoin_input(100_000, BITCOIN_ACCOUNT, true),
            testing::bitcoin_input(20_000, taproot, false),
        ],
        vec![
            testing::bitcoin_output(friend, 60_000, false),
            testing::bitcoin_output(BITCOIN_ACCOUNT, 58_000, true),
        ],
    );
    assert_matches(
        "psbt",
        &seen(status, &resp),
        &request_for(&name, want).build(),
        &["/txid", "/inputs/0/outpoint", "/inputs/1/outpoint"],
    );

    let resp = account(&server, &wallet, json!({"chain": "solana", "index": 0})).await;
    assert_eq!(resp["account"]["address"], SOLANA_ACCOUNT);
    let kid = resp["key"]["id"].as_str().unwrap().to_string();
    let name = resp["key"]["name"].as_str().unwrap().to_string();
    mirror_on(&server, &mirror, &kid).await;
    let sol = |what: &'static str, body: Value| {
        let (server, signer, kid) = (&server, &signer, &kid);
        async move {
            let path = format!("/v1/keys/{kid}/solana/{what}");
            let (status, resp) = server.call("POST", &path, Some(signer), Some(body)).await;
            seen(status, &resp)
        }
    };
    let payer: solana_message::Address = SOLANA_ACCOUNT.parse().unwrap();
    let friend = solana_message::Address::new_from_array([5; 32]);
    let message = transfer_message(&payer, &friend, 1_000);
    let got = sol("sign-transaction", json!({"message": b64(&message)})).await;
    let want = testing::solana_transfer(SOLANA_ACCOUNT, &friend.to_string(), 1_000);
    assert_matches(
        "solana transfer",
        &got,
        &request_for(&name, want).build(),
        &["/recent_blockhash"],
    );

    // SPL Token transferChecked: tag 12, the amount little-endian, the decimals.
    let (source, mint, destination) = (
        solana_message::Address::new_from_array([7; 32]),
        solana_message::Address::new_from_array([8; 32]),
        solana_message::Address::new_from_array([9; 32]),
    );
    let mut data = vec![12u8];
    data.extend_from_slice(&2_500_000u64.to_le_bytes());
    data.push(6);
    let ix = solana_message::Instruction {
        program_id: testing::TOKEN_PROGRAM.parse().unwrap(),
        accounts: vec![
            solana_message::AccountMeta::new(source, false),
            solana_message::AccountMeta::new_readonly(mint, false),
            solana_message::AccountMeta::new(destination, false),
            solana_message::AccountMeta::new_readonly(payer, true),
        ],
        data,
    };
    let msg = solana_message::Message::new_with_blockhash(
        &[ix],
        Some(&payer),
        &solana_message::Hash::new_from_array([9; 32]),
    );
    let bytes = solana_message::VersionedMessage::Legacy(msg).serialize();
    let got = sol("sign-transaction", json!({"message": b64(&bytes)})).await;
    let want = testing::spl_token_transfer(
        SOLANA_ACCOUNT,
        &source.to_string(),
        &destination.to_string(),
        &mint.to_string(),
        2_500_000,
        6,
    );
    assert_matches(
        "spl token transfer",
        &got,
        &request_for(&name, want).build(),
        &["/recent_blockhash"],
    );

    for text in ["hello keyward", "héllo keyward"] {
        let got = sol("sign-message", json!({"message": text})).await;
        let want = testing::solana_message(text);
        assert_matches(
            "solana message",
            &got,
            &request_for(&name, want).build(),
            &[],
        );
    }
}

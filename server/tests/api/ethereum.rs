//! Ethereum signing over the API: the three transaction types, EIP-191 and EIP-712 with
//! signatures recovered independently of the server's own check, chain id lists, purposes,
//! bad input, the JSON-RPC signer, and the example policies judging decoded transactions.

use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256, U256};
use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::wallets::{ABANDON_ADDRESS, account, import_abandon};
use crate::{TestServer, assert_error, b64, setup};

/// Recovers the address that signed `hash` (k256, not the server's code path).
pub fn recover(hash: &[u8], r: &[u8], s: &[u8], parity: bool) -> Address {
    let mut rs = [0u8; 64];
    rs[..32].copy_from_slice(r);
    rs[32..].copy_from_slice(s);
    let sig = k256::ecdsa::Signature::from_slice(&rs).unwrap();
    assert!(sig.normalize_s() == sig, "high S");
    let id = k256::ecdsa::RecoveryId::new(parity, false);
    let key = k256::ecdsa::VerifyingKey::recover_from_prehash(hash, &sig, id).unwrap();
    let point = key.to_sec1_point(false);
    Address::from_raw_public_key(point.as_bytes()[1..].try_into().unwrap())
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap()
}

/// A server with the `abandon ... about` account 0 (optionally restricted to chain ids).
pub async fn with_account(chain_ids: Option<Vec<u64>>) -> (TestServer, String) {
    let server = setup().await;
    let wallet = import_abandon(&server, "w").await;
    let mut req = json!({"chain": "ethereum", "index": 0});
    if let Some(c) = chain_ids {
        req["chain_ids"] = json!(c);
    }
    let resp = account(&server, &wallet, req).await;
    let key = resp["key"]["id"].as_str().unwrap().to_string();
    (server, key)
}

pub async fn eth(
    server: &TestServer,
    key: &str,
    what: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    server
        .call(
            "POST",
            &format!("/v1/keys/{key}/ethereum/{what}"),
            Some(token),
            Some(body),
        )
        .await
}

/// Checks a signed transaction: it decodes, recovers to the account, and matches the answer.
fn check_signed_tx(body: &Value) -> TxEnvelope {
    let raw = unhex(body["raw_transaction"].as_str().unwrap());
    let env = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    let sig = env.signature();
    let from = recover(
        env.signature_hash().as_slice(),
        &sig.r().to_be_bytes::<32>(),
        &sig.s().to_be_bytes::<32>(),
        sig.v(),
    );
    assert_eq!(from.to_checksum(None), ABANDON_ADDRESS);
    assert_eq!(body["from"], ABANDON_ADDRESS);
    assert_eq!(
        body["transaction_hash"].as_str().unwrap(),
        format!("0x{}", hex::encode(env.tx_hash()))
    );
    assert_eq!(
        body["transaction_hash"].as_str().unwrap(),
        format!("0x{}", hex::encode(alloy_primitives::keccak256(&raw)))
    );
    env
}

const TO: &str = "0x3535353535353535353535353535353535353535";

#[tokio::test]
async fn signs_all_three_transaction_types_as_fields_and_rlp() {
    let (server, key) = with_account(None).await;
    let signer = server.token("alice", &[Role::Signer]);
    // Legacy (EIP-155): v = chainId * 2 + 35 + parity.
    let (status, body) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        json!({"transaction": {"chain_id": "1", "nonce": "9", "gas_price": "20000000000",
               "gas": "21000", "to": TO, "value": "1000000000000000000"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let env = check_signed_tx(&body);
    assert!(env.is_legacy());
    let v = body["v"].as_u64().unwrap();
    assert!(v == 37 || v == 38, "{body}");
    assert_eq!(env.chain_id(), Some(1));
    assert_eq!(env.value(), U256::from(10u64).pow(U256::from(18u64)));
    // EIP-2930 on chain 5 with an access list.
    let (status, body) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        json!({"transaction": {"type": "eip2930", "chain_id": "0x5", "nonce": "1", "gas_price": "0x3b9aca00",
               "gas": "30000", "to": TO, "value": "7", "data": "0xdeadbeef",
               "access_list": [{"address": TO, "storage_keys": [format!("0x{}", "11".repeat(32))]}]}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let env = check_signed_tx(&body);
    assert!(env.is_eip2930());
    assert!(body["v"].as_u64().unwrap() <= 1);
    assert_eq!(env.input().as_ref(), &[0xde, 0xad, 0xbe, 0xef]);
    // EIP-1559 as an unsigned encoding.
    let tx = alloy_consensus::TxEip1559 {
        chain_id: 10,
        nonce: 3,
        gas_limit: 21000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: alloy_primitives::TxKind::Call(TO.parse().unwrap()),
        value: U256::from(12345u64),
        access_list: Default::default(),
        input: Default::default(),
    };
    use alloy_consensus::SignableTransaction;
    let unsigned = format!("0x{}", hex::encode(tx.encoded_for_signing()));
    let (status, body) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        json!({"unsigned": unsigned}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let env = check_signed_tx(&body);
    assert!(env.is_eip1559());
    assert_eq!(env.chain_id(), Some(10));
    assert_eq!(env.nonce(), 3);
    assert_eq!(
        body["hash"].as_str().unwrap(),
        format!("0x{}", hex::encode(tx.signature_hash()))
    );
    // The intent policies saw is in the decision trace's request (dry run).
    let (status, body) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        json!({"unsigned": unsigned, "dry_run": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dry_run"], true);
    assert!(body.get("raw_transaction").is_none());
}

#[tokio::test]
async fn signs_eip191_messages_and_eip712_typed_data() {
    let (server, key) = with_account(None).await;
    let signer = server.token("alice", &[Role::Signer]);
    for (body, bytes) in [
        (
            json!({"message": "hello keyward"}),
            b"hello keyward".to_vec(),
        ),
        (json!({"message_hex": "0x00ff10"}), vec![0x00, 0xff, 0x10]),
    ] {
        let (status, resp) = eth(&server, &key, "sign-message", &signer, body).await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        let sig = unhex(resp["signature"].as_str().unwrap());
        assert_eq!(sig.len(), 65);
        assert!(sig[64] == 27 || sig[64] == 28);
        let hash = alloy_primitives::eip191_hash_message(&bytes);
        assert_eq!(
            resp["hash"].as_str().unwrap(),
            format!("0x{}", hex::encode(hash))
        );
        let from = recover(hash.as_slice(), &sig[..32], &sig[32..64], sig[64] == 28);
        assert_eq!(from.to_checksum(None), ABANDON_ADDRESS);
    }
    let mail = mail();
    let (status, resp) = eth(
        &server,
        &key,
        "sign-typed-data",
        &signer,
        json!({"typed_data": mail}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(
        resp["hash"],
        "0xbe609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
    );
    let sig = unhex(resp["signature"].as_str().unwrap());
    let hash = unhex(resp["hash"].as_str().unwrap());
    let from = recover(&hash, &sig[..32], &sig[32..64], sig[64] == 28);
    assert_eq!(from.to_checksum(None), ABANDON_ADDRESS);
}

pub fn mail() -> Value {
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

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_no_signature() {
    let (server, key) = with_account(Some(vec![1, 10])).await;
    let signer = server.token("alice", &[Role::Signer]);
    let legacy = |chain: Value| json!({"transaction": {"chain_id": chain, "gas_price": "1", "gas": "21000", "to": TO, "value": "1"}});
    let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        (
            "sign-transaction",
            json!({"unsigned": "0xec0985"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "RLP",
        ),
        (
            "sign-transaction",
            json!({"unsigned": "0x02c3"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "RLP",
        ),
        (
            "sign-transaction",
            json!({"unsigned": "0xzz"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "hex",
        ),
        (
            "sign-transaction",
            json!({"unsigned": "0xe9098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
            "chain id",
        ),
        (
            "sign-transaction",
            json!({"transaction": {"gas_price": "1", "gas": "21000", "to": TO}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
            "chain_id is required",
        ),
        (
            "sign-transaction",
            legacy(json!("5")),
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "chain ids",
        ),
        (
            "sign-transaction",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
            "transaction",
        ),
        (
            "sign-message",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
            "message",
        ),
    ];
    let mut undefined = mail();
    undefined["types"]["Mail"][0]["type"] = json!("Sender");
    let mut bad_value = mail();
    bad_value["message"]["to"]["wallet"] = json!("0x1234");
    let mut too_big = mail();
    too_big["types"]["Mail"][2]["type"] = json!("uint8");
    too_big["message"]["contents"] = json!(256);
    let mut cases = cases;
    for (t, why) in [
        (undefined, "types"),
        (bad_value, "types"),
        (too_big, "types"),
    ] {
        cases.push((
            "sign-typed-data",
            json!({"typed_data": t}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
            why,
        ));
    }
    for (what, body, status_want, code, needle) in cases {
        let (status, resp) = eth(&server, &key, what, &signer, body.clone()).await;
        assert_error(status, &resp, status_want, code);
        assert!(
            resp["message"].as_str().unwrap().contains(needle),
            "{what} {body}: {resp}"
        );
        assert!(resp.get("raw_transaction").is_none() && resp.get("r").is_none());
    }
    // Allowed chain ids sign.
    let (status, resp) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        legacy(json!("10")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resp}");

    // sign-transaction on a key of another purpose.
    let raw_key = server.create_key("raw-k1", "secp256k1").await;
    let raw_id = raw_key["id"].as_str().unwrap();
    let (status, resp) = eth(
        &server,
        raw_id,
        "sign-transaction",
        &signer,
        legacy(json!("1")),
    )
    .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "WRONG_KEY_PURPOSE");
    let (status, resp) = eth(
        &server,
        raw_id,
        "sign-message",
        &signer,
        json!({"message": "x"}),
    )
    .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "WRONG_KEY_PURPOSE");
    // A raw digest on an Ethereum key: blind signing refused.
    let (status, resp) = server
        .call(
            "POST",
            &format!("/v1/keys/{key}/sign"),
            Some(&signer),
            Some(json!({"digest": b64(&[7u8; 32])})),
        )
        .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "WRONG_KEY_PURPOSE");
    assert!(
        resp["message"].as_str().unwrap().contains("blind signing"),
        "{resp}"
    );
    // Role signer is needed.
    let auditor = server.token("eve", &[Role::Auditor]);
    let (status, resp) = eth(
        &server,
        &key,
        "sign-message",
        &auditor,
        json!({"message": "x"}),
    )
    .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");
    // None of the refusals was signed: the audit log has exactly one signature by this key.
    let signed = server
        .state
        .signing()
        .store()
        .usage_of(
            &keyward_server::store::usage::key_scope(&key),
            keyward_server::store::usage::SIGNATURES,
            time_now(),
        )
        .await
        .unwrap();
    assert_eq!(signed.count_hour, 1);
    let _ = B256::ZERO;
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn rpc(server: &TestServer, token: &str, method: &str, params: Value) -> Value {
    let (status, body) = server
        .call(
            "POST",
            "/rpc/ethereum",
            Some(token),
            Some(json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], 7);
    body
}

#[tokio::test]
async fn json_rpc_signer() {
    let (server, _key) = with_account(None).await;
    let signer = server.token("alice", &[Role::Signer]);
    let accounts = rpc(&server, &signer, "eth_accounts", json!([])).await;
    assert_eq!(accounts["result"], json!([ABANDON_ADDRESS]));
    let resp = rpc(
        &server,
        &signer,
        "personal_sign",
        json!(["0x68656c6c6f", ABANDON_ADDRESS.to_lowercase()]),
    )
    .await;
    let sig = unhex(resp["result"].as_str().unwrap());
    let hash = alloy_primitives::eip191_hash_message(b"hello");
    assert_eq!(
        recover(hash.as_slice(), &sig[..32], &sig[32..64], sig[64] == 28).to_checksum(None),
        ABANDON_ADDRESS
    );
    let resp = rpc(
        &server,
        &signer,
        "eth_signTransaction",
        json!([{"from": ABANDON_ADDRESS, "to": TO, "gas": "0x5208", "maxFeePerGas": "0x3b9aca00",
                "maxPriorityFeePerGas": "0x1", "nonce": "0x0", "value": "0x1", "chainId": "0x1", "type": "0x2"}]),
    )
    .await;
    let raw = unhex(resp["result"].as_str().unwrap());
    let env = TxEnvelope::decode_2718(&mut raw.as_slice()).unwrap();
    assert!(env.is_eip1559(), "{resp}");
    let resp = rpc(
        &server,
        &signer,
        "eth_signTypedData_v4",
        json!([ABANDON_ADDRESS, mail().to_string()]),
    )
    .await;
    assert_eq!(unhex(resp["result"].as_str().unwrap()).len(), 65, "{resp}");
    // Errors are JSON-RPC errors with Keyward's code and the request id.
    let resp = rpc(&server, &signer, "eth_sendTransaction", json!([])).await;
    assert_eq!(resp["error"]["code"], -32601);
    let resp = rpc(&server, &signer, "personal_sign", json!(["0x00", TO])).await;
    assert_eq!(resp["error"]["code"], -32602, "{resp}");
    let resp = rpc(
        &server,
        &signer,
        "eth_signTransaction",
        json!([{"from": ABANDON_ADDRESS, "to": TO, "gas": "0x5208", "gasPrice": "0x1"}]),
    )
    .await;
    assert_eq!(resp["error"]["code"], -32602, "{resp}");
    assert_eq!(resp["error"]["data"]["code"], "INVALID_REQUEST");
    assert!(
        resp["error"]["data"]["request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(resp.get("result").is_none());
    // Without a token: 401.
    let (status, body) = server
        .call(
            "POST",
            "/rpc/ethereum",
            None,
            Some(json!({"jsonrpc": "2.0", "id": 1, "method": "eth_accounts"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // A caller without the signer role sees no accounts.
    let auditor = server.token("eve", &[Role::Auditor]);
    let accounts = rpc(&server, &auditor, "eth_accounts", json!([])).await;
    assert_eq!(accounts["result"], json!([]));
}

fn denied_by(status: StatusCode, body: &Value, reason: &str) {
    assert_error(status, body, StatusCode::FORBIDDEN, "POLICY_DENIED");
    assert!(body.get("raw_transaction").is_none() && body.get("r").is_none());
    let trace = body["details"]["policy"]["trace"].as_array().unwrap();
    assert!(
        trace
            .iter()
            .any(|t| t["decision"] == "deny" && t["reason"].as_str().unwrap().contains(reason)),
        "want {reason}: {body}"
    );
}

const DAI: &str = "0x6b175474e89094c44da98b954eedeac495271d0f";
const ETHER: u128 = 1_000_000_000_000_000_000;

fn send(value: u128) -> Value {
    json!({"transaction": {"chain_id": "1", "max_fee_per_gas": "2000000000",
           "max_priority_fee_per_gas": "1", "gas": "21000", "to": TO, "value": value.to_string()}})
}

fn send_token(to: &str, amount: u128) -> Value {
    let data = keyward_server::chains::ethereum::erc20::transfer_data(
        to.parse().unwrap(),
        U256::from(amount),
    );
    json!({"transaction": {"chain_id": "1", "max_fee_per_gas": "2000000000",
           "max_priority_fee_per_gas": "1", "gas": "60000", "to": DAI,
           "data": format!("0x{}", hex::encode(data))}})
}

#[tokio::test]
async fn spend_limits_judge_decoded_transactions() {
    use crate::policies::{bind, example_wasm, upload};
    let (server, key) = with_account(None).await;
    let signer = server.token("alice", &[Role::Signer]);
    let policy = upload(
        &server,
        "eth-spend-limit",
        &example_wasm("eth-spend-limit"),
        Value::Null,
    )
    .await;
    let settings = json!({
        "max_value_per_tx": (ETHER).to_string(),
        "max_value_per_day": (ETHER * 2).to_string(),
        "tokens": {DAI: {"max_per_tx": "1000", "max_per_day": "1500"}}
    });
    let (status, body) = bind(&server, &key, &[(&policy, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Above the per-transaction limit.
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, send(ETHER + 1)).await;
    denied_by(status, &body, "above the per-transaction limit");
    // Within it, twice; the second crosses the rolling 24-hour limit only when it adds up.
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, send(ETHER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, send(ETHER / 2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        send(ETHER / 2 + 1),
    )
    .await;
    denied_by(
        status,
        &body,
        "would bring the last 24 hours to 2000000000000000001",
    );
    // The refused ones did not count: exactly the limit still passes.
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, send(ETHER / 2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ERC-20: above the token's per-transaction limit, then across its day limit.
    let (status, body) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        send_token(TO, 1001),
    )
    .await;
    denied_by(status, &body, "above the per-transaction limit of 1000");
    let (status, body) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        send_token(TO, 1000),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        send_token(TO, 501),
    )
    .await;
    denied_by(status, &body, "would bring the last 24 hours to 1501");
    // The totals the host reports are per chain: chain 10 starts from zero.
    let mut other_chain = send(ETHER);
    other_chain["transaction"]["chain_id"] = json!("10");
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, other_chain).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn allowlists_deny_unknown_recipients_chains_and_domains() {
    use crate::policies::{bind, example_wasm, upload};
    let (server, key) = with_account(None).await;
    let signer = server.token("alice", &[Role::Signer]);
    let policy = upload(
        &server,
        "eth-allowlist",
        &example_wasm("eth-allowlist"),
        Value::Null,
    )
    .await;
    let verifying = "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC";
    let settings = json!({
        "chain_ids": [1],
        "recipients": [TO],
        "eip712_domains": [{"verifying_contract": verifying, "chain_id": 1}]
    });
    let (status, body) = bind(&server, &key, &[(&policy, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, send(1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut unknown = send(1);
    unknown["transaction"]["to"] = json!("0x4545454545454545454545454545454545454545");
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, unknown).await;
    denied_by(
        status,
        &body,
        "recipient 0x4545454545454545454545454545454545454545 is not in the allowlist",
    );
    let (status, body) = eth(
        &server,
        &key,
        "sign-transaction",
        &signer,
        send_token("0x4545454545454545454545454545454545454545", 1),
    )
    .await;
    denied_by(status, &body, "token recipient");
    let mut goerli = send(1);
    goerli["transaction"]["chain_id"] = json!("5");
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, goerli).await;
    denied_by(status, &body, "chain id 5 is not allowed");
    // A permit for the listed contract passes; for another contract it is denied.
    let (status, body) = eth(
        &server,
        &key,
        "sign-typed-data",
        &signer,
        json!({"typed_data": mail()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut other = mail();
    other["domain"]["verifyingContract"] = json!("0x4545454545454545454545454545454545454545");
    let (status, body) = eth(
        &server,
        &key,
        "sign-typed-data",
        &signer,
        json!({"typed_data": other}),
    )
    .await;
    denied_by(
        status,
        &body,
        "EIP-712 domain 0x4545454545454545454545454545454545454545",
    );
}

#[tokio::test]
async fn approval_above_a_value_waits_and_json_rpc_reports_it() {
    use crate::policies::{bind, example_wasm, upload};
    let (server, key) = with_account(None).await;
    let signer = server.token("alice", &[Role::Signer]);
    let policy = upload(
        &server,
        "approval-above",
        &example_wasm("approval-above"),
        Value::Null,
    )
    .await;
    let settings = json!({"max_message_len": 1000, "max_value_wei": ETHER.to_string(),
                          "approvals": 1, "approver_roles": ["approver"]});
    let (status, body) = bind(&server, &key, &[(&policy, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, send(ETHER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, send(ETHER + 1)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "pending_approval");
    assert!(body.get("raw_transaction").is_none());
    // Once approved, the request holds the signed transaction, ready to broadcast.
    let id = body["request_id"].as_str().unwrap();
    let approver = server.token("bob", &[Role::Approver]);
    let (status, voted) = server
        .call(
            "POST",
            &format!("/v1/requests/{id}/approve"),
            Some(&approver),
            Some(json!({"comment": "ok"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{voted}");
    let (status, request) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&signer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{request}");
    assert_eq!(request["status"], "signed", "{request}");
    let env = check_signed_tx(&request["ethereum"]);
    assert_eq!(env.value(), U256::from(ETHER + 1));
    // The approved value counts in the spend totals like any signed transaction.
    let spent = server
        .state
        .signing()
        .store()
        .usage_of(
            &keyward_server::store::usage::key_scope(&key),
            "ethereum:1:native",
            time_now(),
        )
        .await
        .unwrap();
    assert_eq!(spent.amount_day, ruint::aliases::U256::from(ETHER * 2 + 1));
    // Over JSON-RPC: a pending approval is an error with the request id.
    let resp = rpc(
        &server,
        &signer,
        "eth_signTransaction",
        json!([{"from": ABANDON_ADDRESS, "to": TO, "gas": "0x5208", "gasPrice": "0x1",
                "value": format!("0x{:x}", ETHER * 3), "chainId": "0x1"}]),
    )
    .await;
    assert_eq!(resp["error"]["code"], -32010, "{resp}");
    assert_eq!(resp["error"]["data"]["code"], "PENDING_APPROVAL");
    assert!(
        resp["error"]["data"]["request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(resp.get("result").is_none());
}

#[tokio::test]
async fn json_rpc_reports_policy_denials() {
    use crate::policies::{bind, example_wasm, upload};
    let (server, key) = with_account(None).await;
    let signer = server.token("alice", &[Role::Signer]);
    let policy = upload(
        &server,
        "eth-allowlist",
        &example_wasm("eth-allowlist"),
        Value::Null,
    )
    .await;
    let (status, body) = bind(&server, &key, &[(&policy, json!({"recipients": [TO]}))]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let resp = rpc(
        &server,
        &signer,
        "eth_signTransaction",
        json!([{"from": ABANDON_ADDRESS, "to": "0x4545454545454545454545454545454545454545",
                "gas": "0x5208", "gasPrice": "0x1", "chainId": "0x1"}]),
    )
    .await;
    assert_eq!(resp["error"]["code"], 4001, "{resp}");
    assert_eq!(resp["error"]["data"]["code"], "POLICY_DENIED");
    assert!(
        resp["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in the allowlist")
    );
    assert!(
        resp["error"]["data"]["request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
}

//! The JSON-RPC signer (`POST /rpc/ethereum`: eth_accounts, eth_sign, personal_sign,
//! eth_signTransaction, eth_signTypedData_v4), single calls and batches, as an ethers.js
//! wallet sends them.
//!
//! Requests that would sign are sent for one input in 32 (each signature is audited); the
//! others always. Invariants: never a server error; every answer is JSON-RPC 2.0 with either
//! a result or an error (code and message), never both, and nothing (204) only for a
//! notification; an `eth_sign` result is the
//! account's signature over the EIP-191 hash of the data.

use crate::{ethereum, harness};
use keyward_server::chains::ethereum::message;
use poem::http::Method;
use serde_json::{Value, json};

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    let h = harness();
    let from = &h.ethereum.address;
    let calls = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_accounts", "params": []}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "eth_sign", "params": [from, "0x48656c6c6f"]}),
        json!({"jsonrpc": "2.0", "id": "a", "method": "personal_sign", "params": ["Hello", from]}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "eth_signTransaction", "params": [{
            "from": from, "to": "0x3535353535353535353535353535353535353535", "value": "0xde0b6b3a7640000",
            "gas": "0x5208", "maxFeePerGas": "0x6fc23ac00", "maxPriorityFeePerGas": "0x3b9aca00",
            "nonce": "0x9", "chainId": "0x1"}]}),
        json!([{"jsonrpc": "2.0", "id": 4, "method": "eth_accounts"},
               {"jsonrpc": "2.0", "id": 5, "method": "eth_chainId"}]),
    ];
    crate::json_seeds(&calls)
}

fn signs(call: &Value) -> bool {
    call.get("method")
        .and_then(Value::as_str)
        .is_some_and(|m| m.starts_with("eth_sign") || m == "personal_sign")
}

fn check_answer(call: Option<&Value>, answer: &Value) {
    assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
    let result = answer.get("result");
    let error = answer.get("error");
    assert!(
        result.is_some() != error.is_some(),
        "result xor error: {answer}"
    );
    if let Some(error) = error {
        assert!(error["code"].is_i64(), "{answer}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        return;
    }
    let Some(call) = call else { return };
    if call["method"] == "eth_sign"
        && let (Some(data), Some(signature)) =
            (call["params"][1].as_str(), result.and_then(Value::as_str))
    {
        let bytes = hex::decode(data.trim_start_matches("0x")).expect("signed data is hex");
        let (_, hash) = message::intent(&harness().ethereum.address, &bytes);
        ethereum::assert_message_signature(&harness().ethereum, signature, hash.as_slice());
    }
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let h = harness();
    let parsed: Option<Value> = serde_json::from_slice(data).ok();
    let would_sign = match &parsed {
        Some(Value::Array(calls)) => calls.iter().any(signs),
        Some(call) => signs(call),
        None => false,
    };
    if would_sign && !crate::real_signature(data) {
        return;
    }
    let answer = h.call(Method::POST, "/rpc/ethereum", data);
    assert!(
        !answer.status.is_server_error(),
        "{} {}",
        answer.status,
        answer.body
    );
    if !answer.is_success() {
        answer.check("/rpc/ethereum");
        return;
    }
    if answer.status == poem::http::StatusCode::NO_CONTENT {
        // A notification (a call without an id) is answered with nothing.
        let call = parsed.as_ref().and_then(Value::as_object);
        assert!(
            call.is_some_and(|c| !c.contains_key("id")),
            "204 for a call with an id: {data:?}"
        );
        return;
    }
    match (&parsed, &answer.body) {
        (Some(Value::Array(calls)), Value::Array(answers)) => {
            for a in answers {
                let call = calls
                    .iter()
                    .find(|c| c.get("id") == a.get("id") && a.get("id").is_some());
                check_answer(call, a);
            }
        }
        (call, Value::Object(_)) => check_answer(call.as_ref(), &answer.body),
        (_, other) => panic!("not a JSON-RPC answer: {other}"),
    }
}

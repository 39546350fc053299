//! EIP-712 typed data (the `eth_signTypedData_v4` JSON), as
//! `POST /v1/keys/{id}/ethereum/sign-typed-data` takes it.
//!
//! Invariants: what parses hashes the same after a serialize → parse round trip, and its
//! intent builds or is refused; the route refuses whatever does not parse, with no signature;
//! a signature it gives recovers to the account over the parsed hash.

use crate::{ethereum, harness};
use keyward_server::chains::ethereum::typed_data;
use serde_json::{Value, json};

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    // EIP-712's example message, and an EIP-2612 permit.
    let mail = json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
            "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
            "Mail": [{"name": "from", "type": "Person"}, {"name": "to", "type": "Person"},
                     {"name": "contents", "type": "string"}]},
        "primaryType": "Mail",
        "domain": {"name": "Ether Mail", "version": "1", "chainId": 1,
                   "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},
        "message": {
            "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
            "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
            "contents": "Hello, Bob!"}
    });
    let permit = json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
            "Permit": [
                {"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"}]},
        "primaryType": "Permit",
        "domain": {"name": "USD Coin", "version": "2", "chainId": "0x1",
                   "verifyingContract": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"},
        "message": {
            "owner": "0x9858EfFD232B4033E47d90003D41EC34EcaEda94",
            "spender": "0x3535353535353535353535353535353535353535",
            "value": "1000000", "nonce": 0, "deadline": "115792089237316195423570985008687907853269984665640564039457584007913129639935"}
    });
    let arrays = json!({
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "salt", "type": "bytes32"}],
            "Batch": [{"name": "items", "type": "Item[]"}, {"name": "tags", "type": "bytes[2]"},
                      {"name": "flag", "type": "bool"}, {"name": "delta", "type": "int64"}],
            "Item": [{"name": "id", "type": "uint8"}, {"name": "data", "type": "bytes"}]},
        "primaryType": "Batch",
        "domain": {"name": "Arrays", "salt": format!("0x{}", "ab".repeat(32))},
        "message": {"items": [{"id": 1, "data": "0x00ff"}, {"id": 255, "data": "0x"}],
                    "tags": ["0x01", "0x0203"], "flag": true, "delta": -5}
    });
    crate::json_seeds(&[mail, permit, arrays])
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let h = harness();
    let parsed = typed_data::parse(&value);
    if let Ok((typed, hash)) = &parsed {
        let round = serde_json::to_value(typed).expect("typed data serializes");
        let (_, again) = typed_data::parse(&round).expect("its own serialization parses");
        assert_eq!(
            &again, hash,
            "the hash changes across a serialize/parse round trip"
        );
        let _ = typed_data::intent(&h.ethereum.address, typed, *hash);
    }
    let path = format!("/v1/keys/{}/ethereum/sign-typed-data", h.ethereum.key);
    let (answer, real) = h.sign(&path, json!({"typed_data": value}), data);
    match parsed {
        Err(_) => assert!(
            !answer.is_success(),
            "signed what does not parse: {}",
            answer.body
        ),
        Ok((_, hash)) if answer.is_success() && real => {
            assert_eq!(
                answer.body["hash"]
                    .as_str()
                    .map(|t| t.trim_start_matches("0x").to_lowercase()),
                Some(hex::encode(hash)),
                "the answer's hash is not the parsed hash: {}",
                answer.body
            );
            let signature = answer.text("signature");
            ethereum::assert_message_signature(&h.ethereum, signature, hash.as_slice());
        }
        Ok(_) => {}
    }
}

//! EIP-712 typed structured data, in the `eth_signTypedData_v4` JSON form
//! (`types`, `primaryType`, `domain`, `message`). Parsing, type checking and hashing are
//! `alloy-dyn-abi`'s; an undefined type or a value that does not fit its type is refused
//! before anything reaches the policies.

use alloy_dyn_abi::TypedData;
use alloy_primitives::B256;
use keyward_policy::{Eip712Domain, EthereumTypedDataIntent};

use super::lower;
use crate::intent::IntentError;

/// Parses typed data (a JSON object, or a string holding one) and computes its signing hash.
pub fn parse(value: &serde_json::Value) -> Result<(TypedData, B256), IntentError> {
    let owned;
    let value = match value {
        serde_json::Value::String(s) => {
            owned = serde_json::from_str::<serde_json::Value>(s).map_err(|e| {
                IntentError::Malformed(format!("typed data is not valid JSON: {e}"))
            })?;
            &owned
        }
        v => v,
    };
    if !value.is_object() {
        return Err(IntentError::Malformed(
            "typed data must be a JSON object with types, primaryType, domain and message".into(),
        ));
    }
    let typed: TypedData = serde_json::from_value(value.clone())
        .map_err(|e| IntentError::Invalid(format!("typed data does not parse: {e}")))?;
    // Checks every type is defined and every value fits its type.
    typed
        .coerce()
        .map_err(|e| IntentError::Invalid(format!("typed data does not match its types: {e}")))?;
    let hash = typed
        .eip712_signing_hash()
        .map_err(|e| IntentError::Invalid(format!("typed data cannot be hashed: {e}")))?;
    Ok((typed, hash))
}

/// The intent policies see.
pub fn intent(
    from: &str,
    typed: &TypedData,
    hash: B256,
) -> Result<EthereumTypedDataIntent, IntentError> {
    let d = &typed.domain;
    let chain_id = d
        .chain_id
        .map(|c| {
            u64::try_from(c)
                .map_err(|_| IntentError::Invalid("domain chainId does not fit in 64 bits".into()))
        })
        .transpose()?;
    Ok(EthereumTypedDataIntent {
        from: from.to_string(),
        domain: Eip712Domain {
            name: d.name.as_ref().map(|n| n.to_string()),
            version: d.version.as_ref().map(|v| v.to_string()),
            chain_id,
            verifying_contract: d.verifying_contract.as_ref().map(lower),
            salt: d.salt.map(|s| format!("0x{}", hex::encode(s))),
        },
        primary_type: typed.primary_type.clone(),
        message: typed.message.clone(),
        hash: format!("0x{}", hex::encode(hash)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The `Mail` example of the EIP-712 specification.
    pub(crate) fn mail() -> serde_json::Value {
        json!({
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"}
                ],
                "Person": [
                    {"name": "name", "type": "string"},
                    {"name": "wallet", "type": "address"}
                ],
                "Mail": [
                    {"name": "from", "type": "Person"},
                    {"name": "to", "type": "Person"},
                    {"name": "contents", "type": "string"}
                ]
            },
            "primaryType": "Mail",
            "domain": {
                "name": "Ether Mail",
                "version": "1",
                "chainId": 1,
                "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
            },
            "message": {
                "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
                "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
                "contents": "Hello, Bob!"
            }
        })
    }

    #[test]
    fn eip712_mail_example() {
        let (typed, hash) = parse(&mail()).unwrap();
        assert_eq!(
            hex::encode(typed.domain.separator()),
            "f2cee375fa42b42143804025fc449deafd50cc031ca257e0b194a650a912090f"
        );
        assert_eq!(
            hex::encode(typed.hash_struct().unwrap()),
            "c52c0ee5d84264471806290a3f2c4cecfc5490626bf912d01f240d7a274b371e"
        );
        assert_eq!(
            hex::encode(hash),
            "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
        );
        // The specification's signature, by the key keccak256("cow").
        let key =
            k256::ecdsa::SigningKey::from_slice(alloy_primitives::keccak256(b"cow").as_slice())
                .unwrap();
        let (sig, recid) = key.sign_prehash_recoverable(hash.as_slice());
        let sig = sig.normalize_s().to_bytes();
        assert_eq!(
            hex::encode(&sig[..32]),
            "4355c47d63924e8a72e509b65029052eb6c299d53a04e167c5775fd466751c9d"
        );
        assert_eq!(
            hex::encode(&sig[32..]),
            "07299936d304c153f6443dfa05f40ff007d72911b6f72307f996231605b91562"
        );
        assert_eq!(27 + recid.to_byte(), 28);
        let i = intent("0x00", &typed, hash).unwrap();
        assert_eq!(i.domain.chain_id, Some(1));
        assert_eq!(
            i.domain.verifying_contract.as_deref(),
            Some("0xcccccccccccccccccccccccccccccccccccccccc")
        );
        // Also accepted as a JSON string (as some clients send it).
        assert_eq!(parse(&json!(mail().to_string())).unwrap().1, hash);
    }

    #[test]
    fn undefined_types_and_bad_values_are_refused() {
        let mut undefined = mail();
        undefined["types"]["Mail"][0]["type"] = json!("Sender");
        assert!(matches!(parse(&undefined), Err(IntentError::Invalid(_))));
        let mut bad_value = mail();
        bad_value["message"]["from"]["wallet"] = json!("not an address");
        assert!(matches!(parse(&bad_value), Err(IntentError::Invalid(_))));
        let mut too_big = mail();
        too_big["types"]["Mail"][2]["type"] = json!("uint8");
        too_big["message"]["contents"] = json!(300);
        assert!(matches!(parse(&too_big), Err(IntentError::Invalid(_))));
        assert!(matches!(parse(&json!([1])), Err(IntentError::Malformed(_))));
    }
}

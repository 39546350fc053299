//! Unsigned Ethereum transactions (RLP legacy with EIP-155, EIP-2930 and EIP-1559 envelopes),
//! as `POST /v1/keys/{id}/ethereum/sign-transaction` takes them in `unsigned`.
//!
//! Invariants: what decodes re-encodes to exactly the input (the hash signed is the hash of
//! the bytes sent) and its intent builds; the route refuses whatever does not decode, with no
//! signature; a signature it gives recovers to the account over the decoded signing hash.

use crate::{ethereum, harness};
use keyward_server::chains::ethereum::tx::{TxFields, UnsignedTx};
use serde_json::json;

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    let recipient = Some("0x3535353535353535353535353535353535353535".to_string());
    // ERC-20 transfer(0x35..35, 10^18).
    let erc20 = Some(format!(
        "0xa9059cbb{:0>64}{:0>64}",
        "3535353535353535353535353535353535353535", "de0b6b3a7640000"
    ));
    let fields = [
        TxFields {
            chain_id: Some("1".into()),
            nonce: Some("9".into()),
            to: recipient.clone(),
            value: Some("1000000000000000000".into()),
            gas: Some("21000".into()),
            gas_price: Some("20000000000".into()),
            ..TxFields::default()
        },
        TxFields {
            tx_type: Some("eip2930".into()),
            chain_id: Some("11155111".into()),
            to: recipient.clone(),
            gas: Some("50000".into()),
            gas_price: Some("0x3b9aca00".into()),
            data: erc20.clone(),
            access_list: Some(vec![(
                "0x3535353535353535353535353535353535353535".into(),
                vec![format!("0x{:0>64}", "1")],
            )]),
            ..TxFields::default()
        },
        TxFields {
            chain_id: Some("10".into()),
            nonce: Some("0x2a".into()),
            to: recipient,
            gas: Some("65000".into()),
            max_fee_per_gas: Some("30000000000".into()),
            max_priority_fee_per_gas: Some("1000000000".into()),
            data: erc20,
            ..TxFields::default()
        },
        TxFields {
            chain_id: Some("1".into()),
            gas: Some("1000000".into()),
            max_fee_per_gas: Some("1".into()),
            max_priority_fee_per_gas: Some("1".into()),
            data: Some("0x6080604052".into()),
            ..TxFields::default()
        },
    ];
    let mut seeds: Vec<Vec<u8>> = fields
        .iter()
        .map(|f| f.build().expect("a seed transaction").encode_unsigned())
        .collect();
    // The signing data of EIP-155's example.
    seeds.push(
        hex::decode("ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080")
            .expect("hex"),
    );
    seeds
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let h = harness();
    let decoded = UnsignedTx::decode(data);
    if let Ok(tx) = &decoded {
        assert_eq!(
            tx.encode_unsigned(),
            data,
            "decodes, but re-encodes otherwise"
        );
        let again = UnsignedTx::decode(&tx.encode_unsigned()).expect("its own encoding decodes");
        assert_eq!(&again, tx);
        let _ = tx.intent(&h.ethereum.address);
    }
    let path = format!("/v1/keys/{}/ethereum/sign-transaction", h.ethereum.key);
    let (answer, real) = h.sign(
        &path,
        json!({"unsigned": format!("0x{}", hex::encode(data))}),
        data,
    );
    match decoded {
        Err(_) => assert!(
            !answer.is_success(),
            "signed what does not decode: {}",
            answer.body
        ),
        Ok(tx) if answer.is_success() && real => {
            let legacy = matches!(tx, UnsignedTx::Legacy(_)).then(|| tx.chain_id());
            ethereum::assert_transaction_signature(
                &h.ethereum,
                &answer.body,
                tx.signing_hash().as_slice(),
                legacy,
            );
        }
        Ok(_) => {}
    }
}

//! Tests of `chains::ethereum::tx`.

use super::*;

fn eip155_example() -> TxFields {
    TxFields {
        chain_id: Some("1".into()),
        nonce: Some("9".into()),
        gas_price: Some("20000000000".into()),
        gas: Some("21000".into()),
        to: Some("0x3535353535353535353535353535353535353535".into()),
        value: Some("1000000000000000000".into()),
        ..Default::default()
    }
}

/// The example of EIP-155: signing data, signing hash, and (with the private key
/// 0x4646..46) v = 37 and the exact r and s.
#[test]
fn eip155_example_transaction() {
    let tx = eip155_example().build().unwrap();
    assert_eq!(
        hex::encode(tx.encode_unsigned()),
        "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080"
    );
    let hash = tx.signing_hash();
    assert_eq!(
        hex::encode(hash),
        "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
    );
    let key = k256::ecdsa::SigningKey::from_slice(&[0x46; 32]).unwrap();
    let (sig, recid) = key.sign_prehash_recoverable(hash.as_slice());
    let sig = sig.normalize_s();
    let bytes = sig.to_bytes();
    let signature = Signature::new(
        U256::from_be_slice(&bytes[..32]),
        U256::from_be_slice(&bytes[32..]),
        recid.is_y_odd(),
    );
    let (raw, _) = tx.clone().into_signed(signature);
    assert_eq!(
        hex::encode(raw),
        "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
    );
    // v = 37 = 1 * 2 + 35 + 0.
    assert_eq!(
        alloy_consensus::transaction::to_eip155_value(recid.is_y_odd(), Some(1)),
        37
    );
    // The unsigned form decodes back to the same transaction.
    assert_eq!(UnsignedTx::decode(&tx.encode_unsigned()).unwrap(), tx);
}

#[test]
fn typed_transactions_round_trip_and_bad_input_is_refused() {
    let mut f = eip155_example();
    f.max_fee_per_gas = Some("0x77359400".into());
    f.max_priority_fee_per_gas = Some("0x3b9aca00".into());
    f.gas_price = None;
    let tx = f.build().unwrap();
    assert!(matches!(tx, UnsignedTx::Eip1559(_)));
    let enc = tx.encode_unsigned();
    assert_eq!(enc[0], 2);
    assert_eq!(UnsignedTx::decode(&enc).unwrap(), tx);
    let mut g = eip155_example();
    g.access_list = Some(vec![(
        "0x3535353535353535353535353535353535353535".into(),
        vec![format!("0x{}", "00".repeat(32))],
    )]);
    let tx = g.build().unwrap();
    assert!(matches!(tx, UnsignedTx::Eip2930(_)));
    assert_eq!(UnsignedTx::decode(&tx.encode_unsigned()).unwrap(), tx);

    // Missing chain id: fields and the 6-field legacy RLP.
    let mut h = eip155_example();
    h.chain_id = None;
    assert!(matches!(h.build(), Err(IntentError::Invalid(m)) if m.contains("chain_id")));
    let six = hex::decode(
        "e9098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080",
    )
    .unwrap();
    assert!(
        matches!(UnsignedTx::decode(&six), Err(IntentError::Invalid(m)) if m.contains("chain id"))
    );
    // Malformed RLP, trailing bytes, unknown types.
    for bad in ["ec0985", "02c3", "ff", "", "05c0"] {
        assert!(
            UnsignedTx::decode(&hex::decode(bad).unwrap()).is_err(),
            "{bad}"
        );
    }
    let mut trailing = enc.clone();
    trailing.push(0);
    assert!(matches!(
        UnsignedTx::decode(&trailing),
        Err(IntentError::Malformed(_))
    ));
    let mut bad_checksum = eip155_example();
    bad_checksum.to = Some("0x9858EfFD232B4033E47d90003D41EC34EcaEda95".into());
    assert!(bad_checksum.build().is_err());
}

/// A legacy chain id whose EIP-155 `v` does not fit in 64 bits is refused when the
/// fields are built and when the unsigned encoding is decoded (before anything is
/// signed); the largest that fits is accepted, and typed transactions are not limited.
#[test]
fn legacy_chain_id_too_large_for_v_is_refused() {
    let too_large = |r: Result<UnsignedTx, IntentError>| {
        matches!(r, Err(IntentError::Invalid(m))
            if m.contains("too large for a legacy transaction's v")
                && m.contains("EIP-1559")
                && m.contains("EIP-2930"))
    };
    for chain_id in [u64::MAX, MAX_LEGACY_CHAIN_ID + 1] {
        let mut f = eip155_example();
        f.chain_id = Some(chain_id.to_string());
        assert!(too_large(f.build()), "fields, chain id {chain_id}");
        // The same transaction as its unsigned EIP-155 encoding.
        let tx = TxLegacy {
            chain_id: Some(chain_id),
            nonce: 9,
            gas_price: 20_000_000_000,
            gas_limit: 21_000,
            to: TxKind::Call(Address::repeat_byte(0x35)),
            value: U256::from(1u64),
            input: Bytes::new(),
        };
        let encoded = tx.encoded_for_signing();
        assert!(
            too_large(UnsignedTx::decode(&encoded)),
            "rlp, chain id {chain_id}"
        );
        // Where v is computed, the same refusal rather than a wrapped value.
        let tx = UnsignedTx::Legacy(tx);
        assert!(matches!(tx.v(true), Err(IntentError::Invalid(m)) if m.contains("too large")));
    }
    let mut f = eip155_example();
    f.chain_id = Some(MAX_LEGACY_CHAIN_ID.to_string());
    let tx = f.build().unwrap();
    assert_eq!(tx.v(false).unwrap(), u64::MAX - 2);
    assert_eq!(tx.v(true).unwrap(), u64::MAX - 1);
    // Typed transactions carry the parity, not the chain id, so any chain id works.
    let mut typed = eip155_example();
    typed.chain_id = Some(u64::MAX.to_string());
    typed.tx_type = Some("eip2930".into());
    assert_eq!(typed.build().unwrap().v(true).unwrap(), 1);
    // Chain id 1 keeps the EIP-155 values.
    let tx = eip155_example().build().unwrap();
    assert_eq!((tx.v(false).unwrap(), tx.v(true).unwrap()), (37, 38));
    assert_eq!(eip155_v(u64::MAX, false), None);
}

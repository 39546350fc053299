//! Solana transactions and messages (legacy and v0), as
//! `POST /v1/keys/{id}/solana/sign-transaction` takes them (the first byte picks
//! `transaction` or `message`).
//!
//! Invariants: the route refuses whatever the parser refuses, with no signature; a signature
//! it gives is the account's Ed25519 signature over exactly the message bytes sent, and the
//! signed transaction it answers is the one sent with only the account's slot filled.

use crate::{b64, harness, unb64};
use ed25519_dalek::{Signature, VerifyingKey};
use keyward_server::chains::solana::transaction::SolanaPlan;
use serde_json::json;

/// A compact-u16 length (Solana's short_vec) and the bytes after it.
fn short_vec_len(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut len = 0usize;
    for (i, &b) in bytes.iter().take(3).enumerate() {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((len, &bytes[i + 1..]));
        }
    }
    None
}

/// A legacy message: the account pays `lamports` to another account (System transfer).
fn transfer_message(from: &[u8], lamports: u64) -> Vec<u8> {
    let mut m = vec![1, 0, 1, 3];
    m.extend_from_slice(from);
    m.extend_from_slice(&[0x42; 32]);
    m.extend_from_slice(&[0; 32]); // the System program
    m.extend_from_slice(&[9; 32]); // recent blockhash
    m.extend_from_slice(&[1, 2, 2, 0, 1, 12]);
    m.extend_from_slice(&2u32.to_le_bytes());
    m.extend_from_slice(&lamports.to_le_bytes());
    m
}

fn transaction(message: &[u8], signers: usize) -> Vec<u8> {
    let mut tx = vec![signers as u8];
    tx.extend(std::iter::repeat_n(0u8, 64 * signers));
    tx.extend_from_slice(message);
    tx
}

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    let h = harness();
    let legacy = transfer_message(&h.solana.public_key, 1_000_000);
    let mut v0 = vec![0x80];
    v0.extend_from_slice(&legacy);
    v0.push(0); // no address table lookups
    let mut seeds = Vec::new();
    for message in [legacy, v0] {
        seeds.push([&[0u8][..], &transaction(&message, 1)].concat());
        seeds.push([&[1u8][..], &message].concat());
    }
    seeds
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let h = harness();
    let account: [u8; 32] = h.solana.public_key.as_slice().try_into().expect("32 bytes");
    let as_transaction = selector & 1 == 0;
    let (parsed, message, field) = if as_transaction {
        let message = short_vec_len(bytes).and_then(|(n, rest)| rest.get(n.checked_mul(64)?..));
        (
            SolanaPlan::from_transaction(bytes, &account).is_ok(),
            message,
            "transaction",
        )
    } else {
        (
            SolanaPlan::from_message(bytes, &account).is_ok(),
            Some(bytes),
            "message",
        )
    };
    let path = format!("/v1/keys/{}/solana/sign-transaction", h.solana.key);
    let (answer, real) = h.sign(&path, json!({field: b64(bytes)}), data);
    if !parsed {
        assert!(
            !answer.is_success(),
            "signed what the parser refuses: {}",
            answer.body
        );
        return;
    }
    if !(answer.is_success() && real) {
        return;
    }
    let message = message.expect("a transaction that parses has a message");
    let signature = unb64(answer.text("signature_base64"));
    let signature = Signature::from_slice(&signature).expect("a 64-byte signature");
    VerifyingKey::from_bytes(&account)
        .expect("the account key")
        .verify_strict(message, &signature)
        .expect("the signature verifies over the message sent");
    let signed = unb64(answer.text("transaction"));
    assert!(
        signed.ends_with(message),
        "the signed transaction carries another message"
    );
    if as_transaction {
        assert_eq!(
            signed.len(),
            bytes.len(),
            "the signed transaction has another length"
        );
    }
    crate::count_verified();
}

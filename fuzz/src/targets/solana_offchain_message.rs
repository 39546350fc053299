//! Solana off-chain messages, as `POST /v1/keys/{id}/solana/sign-message` takes them in
//! `message_base64`.
//!
//! Invariants: the bytes to sign start with the off-chain signing domain (so they can never
//! be a transaction) and end with the message; the route refuses what the parser refuses,
//! with no signature; a signature it gives verifies over the `signed_message` it answers,
//! which is what the parser prepared.

use crate::{b64, harness, unb64};
use ed25519_dalek::{Signature, VerifyingKey};
use keyward_server::chains::solana::offchain;
use serde_json::json;

const DOMAIN: &[u8] = b"\xffsolana offchain";

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        b"Sign in to example.com".to_vec(),
        "Grüße, Solana: ✓".as_bytes().to_vec(),
        "line one\nline two".as_bytes().to_vec(),
        vec![b'a'; 1300],
    ]
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let h = harness();
    let prepared = offchain::prepare(data);
    if let Ok((_, signed)) = &prepared {
        assert!(
            signed.starts_with(DOMAIN),
            "the signed bytes lack the signing domain"
        );
        assert!(
            signed.ends_with(data),
            "the signed bytes do not end with the message"
        );
        assert_ne!(
            signed.first(),
            Some(&0x80),
            "the signed bytes could be a v0 message"
        );
    }
    let path = format!("/v1/keys/{}/solana/sign-message", h.solana.key);
    let (answer, real) = h.sign(&path, json!({"message_base64": b64(data)}), data);
    match prepared {
        Err(_) => assert!(
            !answer.is_success(),
            "signed what the parser refuses: {}",
            answer.body
        ),
        Ok((_, prepared)) if answer.is_success() && real => {
            let signed = unb64(answer.text("signed_message"));
            assert_eq!(
                signed, prepared,
                "the route signed other bytes than the parser prepared"
            );
            let account: [u8; 32] = h.solana.public_key.as_slice().try_into().expect("32 bytes");
            let signature = Signature::from_slice(&unb64(answer.text("signature_base64")))
                .expect("a 64-byte signature");
            VerifyingKey::from_bytes(&account)
                .expect("the account key")
                .verify_strict(&signed, &signature)
                .expect("the signature verifies over the signed message");
            crate::count_verified();
        }
        Ok(_) => {}
    }
}

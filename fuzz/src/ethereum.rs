//! Checks shared by the Ethereum targets: a signature the server gives recovers to the account
//! over the hash the parser computed.

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use serde_json::Value;

use crate::Account;

fn hex32(body: &Value, field: &str) -> [u8; 32] {
    let text = body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"));
    let bytes = hex::decode(text.trim_start_matches("0x"))
        .unwrap_or_else(|e| panic!("{field} {text:?}: {e}"));
    let mut out = [0u8; 32];
    assert!(bytes.len() <= 32, "{field} is longer than 32 bytes: {text}");
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    out
}

/// Panics unless `(r, s, parity)` recovers `account`'s key over `hash`, with a low S.
pub fn assert_recovers(account: &Account, hash: &[u8], r: [u8; 32], s: [u8; 32], parity: bool) {
    let mut rs = [0u8; 64];
    rs[..32].copy_from_slice(&r);
    rs[32..].copy_from_slice(&s);
    let signature = Signature::from_slice(&rs).expect("r and s are scalars");
    assert!(
        signature.normalize_s() == signature,
        "a high S: {}",
        hex::encode(rs)
    );
    let key = VerifyingKey::recover_from_prehash(hash, &signature, RecoveryId::new(parity, false))
        .expect("the signature recovers a key");
    assert_eq!(
        key.to_sec1_point(true).as_bytes(),
        account.public_key.as_slice(),
        "the signature recovers another key than the account's"
    );
    crate::count_verified();
}

/// For a `sign-transaction` answer: `r`, `s` and `v` recover the account over `hash`.
pub fn assert_transaction_signature(
    account: &Account,
    body: &Value,
    hash: &[u8],
    legacy_chain: Option<u64>,
) {
    let v = body["v"]
        .as_u64()
        .unwrap_or_else(|| panic!("no v in {body}"));
    let parity = match legacy_chain {
        Some(chain) => {
            let base = chain * 2 + 35;
            assert!(
                v == base || v == base + 1,
                "v {v} is not EIP-155 for chain {chain}"
            );
            v == base + 1
        }
        None => {
            assert!(v <= 1, "v {v} of a typed transaction is not a parity");
            v == 1
        }
    };
    assert_recovers(account, hash, hex32(body, "r"), hex32(body, "s"), parity);
}

/// For a 65-byte `r || s || v` signature (v = 27/28), hex.
pub fn assert_message_signature(account: &Account, signature_hex: &str, hash: &[u8]) {
    let bytes = hex::decode(signature_hex.trim_start_matches("0x")).expect("hex signature");
    assert_eq!(bytes.len(), 65, "signature {signature_hex}");
    let v = bytes[64];
    assert!(v == 27 || v == 28, "v {v}");
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(&bytes[..32]);
    s.copy_from_slice(&bytes[32..64]);
    assert_recovers(account, hash, r, s, v == 28);
}

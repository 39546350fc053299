//! CMS/PKCS#7 SignedData given to `POST /v1/documents/verify`: the verifier the route calls,
//! against this instance's store and internal CA, over the harness's document.
//!
//! Invariants: never a panic; `valid` only when the signature, the digest and the chain are
//! all good, for the one certificate this instance issued to the signing key; and the route
//! itself (one input in 16, since each verification is audited) answers a result or the
//! uniform error body, never a server error.

use crate::{SIGNED_DOCUMENT, b64, harness, one_in};
use keyward_server::documents::verify::{ChainStatus, Signed, verify};
use serde_json::json;
use std::sync::OnceLock;

static SERIAL: OnceLock<String> = OnceLock::new();

fn seed_serial() -> &'static str {
    SERIAL.get_or_init(|| {
        let h = harness();
        let state = h.state();
        let seed = h
            .block_on(verify(
                state.signing(),
                state.documents(),
                &h.cms,
                &Signed::Document(SIGNED_DOCUMENT.to_vec()),
            ))
            .expect("the harness's signature verifies");
        assert!(
            seed.valid,
            "the harness's own signature is not valid: {:?}",
            seed.reasons
        );
        seed.signer_serial.expect("a signer serial")
    })
}

/// Seed inputs: the harness's own signature.
pub fn seeds() -> Vec<Vec<u8>> {
    vec![harness().cms.clone()]
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let h = harness();
    let state = h.state();
    let result = h.block_on(verify(
        state.signing(),
        state.documents(),
        data,
        &Signed::Document(SIGNED_DOCUMENT.to_vec()),
    ));
    if let Ok(v) = &result
        && v.valid
    {
        assert!(v.signature_valid && v.digest_matches && v.chain_status == ChainStatus::Good);
        assert_eq!(
            v.signer_serial.as_deref(),
            Some(seed_serial()),
            "valid for another signer"
        );
    }
    if one_in(data, 16) {
        let answer = h.post(
            "/v1/documents/verify",
            &json!({"signature": b64(data), "document": b64(SIGNED_DOCUMENT)}),
        );
        answer.check("/v1/documents/verify");
        if answer.is_success() {
            assert_eq!(
                answer.body["valid"].as_bool(),
                result.as_ref().ok().map(|v| v.valid)
            );
        }
    }
}

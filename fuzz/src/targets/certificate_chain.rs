//! Certificate chains (PEM, leaf first) given to `POST /v1/keys/{id}/certificate/import`:
//! the importer the route calls, for the harness's document key.
//!
//! Invariants: a list of certificates that parses re-encodes (PEM → DER → PEM) to the same
//! certificates; an import succeeds only for a chain whose leaf certifies exactly the key and
//! whose certificates are in issuer order; whatever fails is a clear error, never a panic.

use crate::harness;
use der::{Decode, Encode, EncodePem};
use keyward_server::documents::{import::import, parse_pem_chain};
use x509_cert::Certificate;

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    let h = harness();
    let mut seeds = vec![h.chain_pem.clone().into_bytes()];
    const END: &str = "-----END CERTIFICATE-----\n";
    if let Some(at) = h.chain_pem.find(END) {
        seeds.push(h.chain_pem.as_bytes()[..at + END.len()].to_vec());
    }
    seeds
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let h = harness();
    if let Ok(certs) = parse_pem_chain("chain_pem", data) {
        for cert in &certs {
            let der = cert.to_der().expect("a parsed certificate encodes");
            let pem = cert.to_pem(der::pem::LineEnding::LF).expect("and as PEM");
            let again = parse_pem_chain("again", pem.as_bytes()).expect("its PEM parses");
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].to_der().expect("encodes"), der, "PEM round trip");
            assert_eq!(Certificate::from_der(&der).expect("its DER parses"), *cert);
        }
    }
    let principal = h.principal();
    let state = h.state();
    let imported = h.block_on(import(
        state.signing(),
        &principal,
        &h.document_key,
        text,
        None,
    ));
    if imported.is_ok() {
        let certs = parse_pem_chain("chain_pem", data).expect("an imported chain parses");
        let key_spki = h.document_spki();
        let leaf_spki = certs[0]
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .expect("encodes");
        assert_eq!(leaf_spki, key_spki, "imported a chain for another key");
        for pair in certs.windows(2) {
            assert_eq!(
                pair[0].tbs_certificate().issuer(),
                pair[1].tbs_certificate().subject()
            );
        }
    }
}

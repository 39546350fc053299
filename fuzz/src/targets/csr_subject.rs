//! The subject a caller gives `POST /v1/keys/{id}/csr` (and certificate issuance): Keyward
//! never parses a CSR, it makes one from this subject, signed by the key.
//!
//! Invariants: a subject that is accepted becomes an X.509 name that DER round-trips and
//! carries the common name exactly; the route refuses what the name builder refuses, with no
//! CSR; a CSR the route makes (one input in 32, each is audited) parses as PKCS#10, with the
//! name built here and the key's own public key.

use crate::{harness, one_in};
use der::{Decode, DecodePem, Encode};
use keyward_server::documents::issue::SubjectSpec;
use serde_json::{Value, json};
use x509_cert::name::Name;
use x509_cert::request::CertReq;

/// The subject as the route reads it, when every field has the type the route takes.
fn spec(value: &Value) -> Option<SubjectSpec> {
    let object = value.as_object()?;
    let field = |name: &str| match object.get(name) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    };
    Some(SubjectSpec {
        common_name: field("common_name")??,
        email: field("email")?,
        organization: field("organization")?,
        organizational_unit: field("organizational_unit")?,
        country: field("country")?,
    })
}

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    crate::json_seeds(&[
        json!({"common_name": "Alice Example"}),
        json!({"common_name": "Jürgen Müller", "email": "juergen@example.de",
               "organization": "Example GmbH", "organizational_unit": "Legal", "country": "DE"}),
        json!({"common_name": "a,b=c+d\"<e>;f\\g", "country": "fr"}),
    ])
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let h = harness();
    let spec = spec(&value);
    let name = spec.as_ref().map(SubjectSpec::to_name);
    if let (Some(spec), Some(Ok(name))) = (&spec, &name) {
        let der = name.to_der().expect("the name encodes");
        assert_eq!(&Name::from_der(&der).expect("its DER parses"), name);
        let cn = name.common_name().expect("a readable CN").expect("a CN");
        assert_eq!(
            cn.value(),
            spec.common_name.as_str(),
            "the CN is not the one given"
        );
    }
    if !one_in(data, 32) {
        return;
    }
    let answer = h.post(
        &format!("/v1/keys/{}/csr", h.document_key),
        &json!({"subject": value}),
    );
    answer.check("/v1/keys/{id}/csr");
    match name {
        Some(Err(_)) => assert!(
            !answer.is_success(),
            "a CSR for a refused subject: {}",
            answer.body
        ),
        Some(Ok(name)) if answer.is_success() => {
            let csr = CertReq::from_pem(answer.text("csr_pem").as_bytes()).expect("PKCS#10");
            assert_eq!(csr.info.subject, name, "the CSR names another subject");
            assert_eq!(
                csr.info.public_key.to_der().expect("encodes"),
                h.document_spki(),
                "the CSR is for another key"
            );
            crate::count_verified();
        }
        _ => {}
    }
}

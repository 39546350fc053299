//! CSC API request bodies (`/csc/v1` and `/csc/v2`: info, credentials list/info/authorize/
//! authorizeCheck, signatures/signHash), the first byte picking the route, for the harness's
//! credential (a P-256 document key with a certificate).
//!
//! A signHash body whose `SAD` is `"@"` gets a SAD the harness asked for first, with the same
//! credential and hashes, so the fuzzer reaches what lies behind a valid SAD. Invariants:
//! never a server error; a refusal is CSC's error body (`error`, `error_description`) with no
//! signature and no SAD; a signHash answer has one signature per hash, each verifying under
//! the credential's key over that hash.

use crate::{harness, unb64};
use keyward_server::csc::algorithms::{hash_of_len, hash_of_oid};
use keyward_server::keys::{EcdsaFormat, RsaScheme, ToSign};
use poem::http::Method;
use serde_json::{Value, json};

const ROUTES: &[&str] = &[
    "/csc/v1/info",
    "/csc/v1/credentials/list",
    "/csc/v1/credentials/info",
    "/csc/v1/credentials/authorize",
    "/csc/v1/credentials/authorizeCheck",
    "/csc/v1/signatures/signHash",
    "/csc/v2/info",
    "/csc/v2/credentials/list",
    "/csc/v2/credentials/info",
    "/csc/v2/credentials/authorize",
    "/csc/v2/credentials/authorizeCheck",
    "/csc/v2/signatures/signHash",
];
const SHA256: &str = "2.16.840.1.101.3.4.2.1";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

/// Seed inputs.
pub fn seeds() -> Vec<Vec<u8>> {
    let h = harness();
    let id = &h.document_key;
    let hash = crate::b64(&[0x11; 32]);
    let bodies = [
        (0, json!({"lang": "en-US"})),
        (1, json!({"maxResults": 10})),
        (
            2,
            json!({"credentialID": id, "certificates": "chain", "certInfo": true, "authInfo": true}),
        ),
        (
            3,
            json!({"credentialID": id, "numSignatures": 1, "hash": [hash]}),
        ),
        (
            5,
            json!({"credentialID": id, "SAD": "@", "hash": [hash], "hashAlgo": SHA256, "signAlgo": ECDSA_SHA256}),
        ),
        (7, json!({"credentialInfo": true, "certificates": "chain"})),
        (
            8,
            json!({"credentialID": id, "certificates": "single", "certInfo": true}),
        ),
        (
            9,
            json!({"credentialID": id, "numSignatures": 2, "hashes": [hash, hash], "hashAlgorithmOID": SHA256}),
        ),
        (10, json!({"credentialID": id, "SAD": "not-a-sad"})),
        (
            11,
            json!({"credentialID": id, "SAD": "@", "hashes": [hash], "hashAlgorithmOID": SHA256,
                    "signAlgo": ECDSA_SHA256, "operationMode": "S"}),
        ),
    ];
    bodies
        .iter()
        .map(|(route, body)| {
            let mut seed = vec![*route as u8];
            seed.extend(serde_json::to_vec(body).expect("JSON"));
            seed
        })
        .collect()
}

/// For a signHash body with `"SAD": "@"`: asks for a SAD for its credential and hashes.
fn authorize_for(version: &str, body: &mut Value) {
    let h = harness();
    let hashes_field = if version == "v1" { "hash" } else { "hashes" };
    let hashes = body.get(hashes_field).cloned().unwrap_or(Value::Null);
    let count = hashes.as_array().map_or(1, Vec::len);
    let mut ask = json!({"credentialID": body.get("credentialID").cloned().unwrap_or(Value::Null),
                         "numSignatures": count, hashes_field: hashes});
    if version == "v2"
        && let Some(oid) = body.get("hashAlgorithmOID")
    {
        ask["hashAlgorithmOID"] = oid.clone();
    }
    let answer = h.post(&format!("/csc/{version}/credentials/authorize"), &ask);
    if let Some(sad) = answer.body.get("SAD").filter(|_| answer.is_success()) {
        body["SAD"] = sad.clone();
    }
}

fn check_signatures(version: &str, body: &Value, answer: &Value) {
    let h = harness();
    let hashes: Vec<&str> = body
        .get(if version == "v1" { "hash" } else { "hashes" })
        .and_then(Value::as_array)
        .expect("a signed body has hashes")
        .iter()
        .map(|v| v.as_str().expect("hashes are strings"))
        .collect();
    let signatures = answer["signatures"].as_array().expect("signatures");
    assert_eq!(signatures.len(), hashes.len(), "{answer}");
    let key = h
        .block_on(h.state().signing().keys().resolve(&h.document_key))
        .expect("the store answers")
        .expect("the credential exists");
    let oid = body
        .get(if version == "v1" {
            "hashAlgo"
        } else {
            "hashAlgorithmOID"
        })
        .and_then(Value::as_str);
    for (hash, signature) in hashes.iter().zip(signatures) {
        let digest = unb64(hash);
        let alg = match oid {
            Some(oid) => hash_of_oid(oid).expect("a hash algorithm the server signed with"),
            None => hash_of_len(digest.len()).expect("a digest length the server signed"),
        };
        let signature = unb64(signature.as_str().expect("a base64 signature"));
        let ok = key
            .meta
            .public_key
            .verify(
                &ToSign::Digest { hash: alg, digest },
                &signature,
                RsaScheme::Pkcs1v15,
                EcdsaFormat::Der,
            )
            .expect("the signature can be checked");
        assert!(ok, "a signature that does not verify over {hash}");
        crate::count_verified();
    }
}

/// Checks one input.
pub fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    let route = ROUTES[usize::from(selector) % ROUTES.len()];
    let version = &route[5..7];
    let signs = route.ends_with("signHash");
    let mut body: Option<Value> = serde_json::from_slice(rest).ok();
    if signs
        && let Some(b) = body.as_mut()
        && b.get("SAD").and_then(Value::as_str) == Some("@")
    {
        authorize_for(version, b);
    }
    let answer = match &body {
        Some(b) => h.post(route, b),
        None => h.call(Method::POST, route, rest),
    };
    assert!(
        !answer.status.is_server_error(),
        "{route}: {} {}",
        answer.status,
        answer.body
    );
    if answer.is_success() {
        if signs {
            check_signatures(
                version,
                body.as_ref().expect("a signed body is JSON"),
                &answer.body,
            );
        }
        return;
    }
    let error = answer.body.get("error").and_then(Value::as_str);
    let description = answer.body.get("error_description").and_then(Value::as_str);
    assert!(
        error.is_some_and(|e| !e.is_empty()) && description.is_some_and(|d| !d.is_empty()),
        "{route}: not CSC's error body: {} {}",
        answer.status,
        answer.body
    );
    assert!(
        answer.body.get("signatures").is_none() && answer.body.get("SAD").is_none(),
        "{}",
        answer.body
    );
}

//! Key creation, import, listing and sealing.

use keyward_server::auth::Role;
use pkcs8::EncodePrivateKey;
use poem::http::StatusCode;
use serde_json::json;

use crate::{assert_error, b64, setup};

#[tokio::test]
async fn keys_are_created_listed_and_fetched_with_pem_and_jwk() {
    let server = setup().await;
    for (i, alg) in ["ed25519", "secp256k1", "p256", "rsa-2048"]
        .iter()
        .enumerate()
    {
        let key = server.create_key(&format!("key-{i}"), alg).await;
        assert_eq!(key["algorithm"], *alg);
        assert_eq!(key["purpose"], "raw");
        assert_eq!(key["status"], "active");
        assert!(
            key["public_key"]["pem"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert!(key["public_key"]["jwk"]["kty"].is_string());
        let (status, again) = server
            .call(
                "GET",
                &format!("/v1/keys/{}", key["id"].as_str().unwrap()),
                Some(&server.admin),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again, key);
    }
    // Pagination walks every key exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/keys?limit=3&cursor={c}"),
            None => "/v1/keys?limit=3".to_string(),
        };
        let (status, page) = server.call("GET", &path, Some(&server.admin), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for k in page["items"].as_array().unwrap() {
            seen.push(k["name"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, vec!["key-0", "key-1", "key-2", "key-3"]);
    let (status, body) = server
        .call("GET", "/v1/keys?limit=0", Some(&server.admin), None)
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
}

#[tokio::test]
async fn creation_checks_names_algorithms_purposes_and_roles() {
    let server = setup().await;
    server.create_key("dup", "ed25519").await;
    let cases = [
        (
            json!({"name": "dup", "algorithm": "ed25519"}),
            StatusCode::CONFLICT,
            "CONFLICT",
        ),
        (
            json!({"name": "bad name", "algorithm": "ed25519"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"name": "x", "algorithm": "rsa-1024"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"name": "x", "algorithm": "ed25519", "purpose": "lunch"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (json!({"name": "x"}), StatusCode::BAD_REQUEST, "BAD_REQUEST"),
    ];
    for (body, want, code) in cases {
        let (status, resp) = server
            .call("POST", "/v1/keys", Some(&server.admin), Some(body))
            .await;
        assert_error(status, &resp, want, code);
    }
    let signer = server.token("s", &[Role::Signer]);
    let (status, resp) = server
        .call(
            "POST",
            "/v1/keys",
            Some(&signer),
            Some(json!({"name": "y", "algorithm": "ed25519"})),
        )
        .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");
    let key_admin = server.token("ka", &[Role::KeyAdmin]);
    let (status, _) = server
        .call(
            "POST",
            "/v1/keys",
            Some(&key_admin),
            Some(json!({"name": "y", "algorithm": "ed25519"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn imported_keys_sign_are_never_echoed_and_never_stored_in_the_clear() {
    let server = setup().await;
    let secret = [0x5au8; 32];
    let key = p256::ecdsa::SigningKey::from_slice(&secret).unwrap();
    let pem = key.to_pkcs8_pem(pkcs8::LineEnding::LF).unwrap();
    let der = key.to_pkcs8_der().unwrap();
    let (status, imported) = server
        .call(
            "POST",
            "/v1/keys/import",
            Some(&server.admin),
            Some(json!({"name": "imported", "private_key_pem": pem.as_str(), "algorithm": "p256"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_eq!(imported["algorithm"], "p256");
    assert!(!imported.to_string().contains("PRIVATE KEY"));
    let id = imported["id"].as_str().unwrap();
    let (status, _) = server
        .call(
            "POST",
            &format!("/v1/keys/{id}/sign"),
            Some(&server.admin),
            Some(json!({"message": b64(b"m")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Neither the scalar nor the PKCS#8 encoding is anywhere in the database files.
    server.state.signing().store().close().await;
    for entry in std::fs::read_dir(server.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == secret),
            "{}",
            path.display()
        );
        assert!(
            !bytes
                .windows(der.as_bytes().len())
                .any(|w| w == der.as_bytes())
        );
    }

    let server = setup().await;
    let cases = [
        json!({"name": "a", "private_key_pem": "-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----"}),
        json!({"name": "b", "private_key_pem": "garbage"}),
        json!({"name": "c", "private_key_pem": pem.as_str(), "algorithm": "ed25519"}),
    ];
    for body in cases {
        let (status, resp) = server
            .call("POST", "/v1/keys/import", Some(&server.admin), Some(body))
            .await;
        assert_error(
            status,
            &resp,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
        let material = pem.lines().nth(1).unwrap();
        assert!(!resp.to_string().contains(material), "{resp}");
    }
}

#[tokio::test]
async fn a_tampered_sealed_blob_or_moved_blob_fails_to_open() {
    let server = setup().await;
    let a = server.create_key("a", "ed25519").await;
    let b = server.create_key("b", "ed25519").await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    // Flip one byte of a's blob; give b the (intact) blob of a's neighbour... i.e. a copy of a's.
    let blob = server
        .state
        .signing()
        .store()
        .key(a)
        .await
        .unwrap()
        .unwrap()
        .material;
    let mut flipped = blob.clone();
    flipped[20] ^= 0x80;
    for (id, material) in [(a, &flipped), (b, &blob)] {
        let literal = server.bytes_literal(material);
        server
            .sql(&format!(
                "UPDATE keys SET material = {literal} WHERE id = '{id}'"
            ))
            .await;
    }
    server.state.signing().keys().invalidate(a);
    server.state.signing().keys().invalidate(b);
    for id in [a, b] {
        let (status, body) = server
            .call(
                "POST",
                &format!("/v1/keys/{id}/sign"),
                Some(&server.admin),
                Some(json!({"message": "AA=="})),
            )
            .await;
        assert_error(
            status,
            &body,
            StatusCode::INTERNAL_SERVER_ERROR,
            "KEY_UNSEAL_FAILED",
        );
        assert!(body["message"].as_str().unwrap().contains(id), "{body}");
    }
}

//! Signing and verification through `/v1/keys/{id}/sign` and `/verify`.

use keyward_server::auth::Role;
use keyward_server::config::DefaultDecision;
use keyward_server::store::Dialect;
use poem::http::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::{assert_error, b64, setup, setup_with};

const ALGORITHMS: &[&str] = &["ed25519", "secp256k1", "p256", "rsa-2048"];

async fn sign(
    server: &crate::TestServer,
    id: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    server
        .call(
            "POST",
            &format!("/v1/keys/{id}/sign"),
            Some(token),
            Some(body),
        )
        .await
}

#[tokio::test]
async fn every_algorithm_signs_digests_and_messages_that_verify() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    for alg in ALGORITHMS {
        let key = server.create_key(&format!("k-{alg}"), alg).await;
        let id = key["id"].as_str().unwrap();
        let digest = sha2::Sha256::digest(b"contract v1");
        for body in [
            json!({"digest": b64(&digest)}),
            json!({"message": b64(b"contract v1")}),
        ] {
            let (status, signed) = sign(&server, id, &signer, body.clone()).await;
            assert_eq!(status, StatusCode::OK, "{alg}: {signed}");
            assert_eq!(signed["algorithm"], *alg);
            assert_eq!(signed["key_id"], id);
            assert_eq!(signed["policy"]["decision"], "allow");
            assert!(signed["request_id"].as_str().is_some_and(|r| !r.is_empty()));
            let mut verify = body.clone();
            verify["signature"] = signed["signature"].clone();
            let (status, result) = server
                .call(
                    "POST",
                    &format!("/v1/keys/{id}/verify"),
                    Some(&signer),
                    Some(verify.clone()),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{result}");
            assert_eq!(result["valid"], true, "{alg}");
            // A flipped bit in the signature does not verify.
            use base64::Engine as _;
            let mut sig = base64::engine::general_purpose::STANDARD
                .decode(signed["signature"].as_str().unwrap())
                .unwrap();
            let last = sig.len() - 1;
            sig[last] ^= 1;
            verify["signature"] = json!(b64(&sig));
            let (_, result) = server
                .call(
                    "POST",
                    &format!("/v1/keys/{id}/verify"),
                    Some(&signer),
                    Some(verify),
                )
                .await;
            assert_eq!(result["valid"], false, "{alg}");
        }
    }
}

#[tokio::test]
async fn secp256k1_gives_a_recovery_id_and_rsa_signs_pss() {
    let server = setup().await;
    let k1 = server.create_key("k1", "secp256k1").await;
    let digest = b64(&sha2::Sha256::digest(b"tx"));
    let (status, signed) = sign(
        &server,
        k1["id"].as_str().unwrap(),
        &server.admin,
        json!({"digest": digest, "format": "raw"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    assert!(matches!(signed["recovery_id"].as_u64(), Some(0 | 1)));
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signed["signature"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw.len(), 64);

    let rsa = server.create_key("r1", "rsa-2048").await;
    let id = rsa["id"].as_str().unwrap();
    let digest = b64(&sha2::Sha384::digest(b"doc"));
    let (status, signed) = sign(
        &server,
        id,
        &server.admin,
        json!({"digest": digest, "hash": "sha384", "scheme": "pss"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let (_, ok) = server
        .call(
            "POST",
            &format!("/v1/keys/{id}/verify"),
            Some(&server.admin),
            Some(json!({"digest": digest, "hash": "sha384", "scheme": "pss", "signature": signed["signature"]})),
        )
        .await;
    assert_eq!(ok["valid"], true);
    // A PSS signature does not pass as PKCS#1 v1.5.
    let (_, wrong) = server
        .call(
            "POST",
            &format!("/v1/keys/{id}/verify"),
            Some(&server.admin),
            Some(json!({"digest": digest, "hash": "sha384", "signature": signed["signature"]})),
        )
        .await;
    assert_eq!(wrong["valid"], false);
}

#[tokio::test]
async fn options_that_do_not_fit_the_key_are_refused() {
    let server = setup().await;
    let key = server.create_key("e", "ed25519").await;
    let id = key["id"].as_str().unwrap();
    let (status, body) = sign(
        &server,
        id,
        &server.admin,
        json!({"message": b64(b"x"), "scheme": "pss"}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
    let (status, body) = sign(
        &server,
        id,
        &server.admin,
        json!({"message": b64(b"x"), "format": "raw"}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
    let p = server.create_key("p", "p256").await;
    let (status, body) = sign(
        &server,
        p["id"].as_str().unwrap(),
        &server.admin,
        json!({"message": b64(b"x"), "format": "pem"}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
}

#[tokio::test]
async fn bad_input_gets_the_uniform_error_and_no_signature() {
    let server = setup().await;
    let key = server.create_key("k", "p256").await;
    let id = key["id"].as_str().unwrap();
    let cases = [
        (
            json!({"digest": b64(&[0u8; 31])}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"digest": b64(&[0u8; 32]), "hash": "sha512"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"digest": "not base64!"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            json!({"digest": b64(&[0u8; 32]), "hash": "md5"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"digest": b64(&[0u8; 32]), "message": "AA=="}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
    ];
    for (body, status_want, code) in cases {
        let (status, resp) = sign(&server, id, &server.admin, body.clone()).await;
        assert_error(status, &resp, status_want, code);
    }
    let (status, resp) = sign(
        &server,
        "key_nope",
        &server.admin,
        json!({"message": "AA=="}),
    )
    .await;
    assert_error(status, &resp, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn a_disabled_key_never_signs_again() {
    let server = setup().await;
    let key = server.create_key("k", "ed25519").await;
    let id = key["id"].as_str().unwrap();
    let (status, _) = sign(&server, id, &server.admin, json!({"message": "AA=="})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, disabled) = server
        .call(
            "POST",
            &format!("/v1/keys/{id}/disable"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    assert_eq!(disabled["status"], "disabled");
    let (status, body) = sign(&server, id, &server.admin, json!({"message": "AA=="})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "KEY_DISABLED");
}

#[tokio::test]
async fn signing_needs_the_signer_role() {
    let server = setup().await;
    let key = server.create_key("k", "ed25519").await;
    let id = key["id"].as_str().unwrap();
    for roles in [vec![Role::Auditor], vec![Role::KeyAdmin], vec![]] {
        let token = server.token("bob", &roles);
        let (status, body) = sign(&server, id, &token, json!({"message": "AA=="})).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    }
}

#[tokio::test]
async fn default_deny_refuses_every_request_and_audits_it() {
    // No policy bound (keyward dev binds allow-all to new keys; not here).
    let server = setup_with(|c| {
        c.default_decision = DefaultDecision::Deny;
        c.policy.bind_on_create.clear();
    })
    .await;
    let key = server.create_key("k", "ed25519").await;
    let id = key["id"].as_str().unwrap();
    let signer = server.token("alice", &[Role::Signer]);
    for _ in 0..3 {
        let (status, body) = sign(&server, id, &signer, json!({"message": "AA=="})).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "POLICY_DENIED");
        assert_eq!(
            body["details"]["policy"]["decision"]["decision"], "deny",
            "{body}"
        );
    }
    let (_, audit) = server
        .call(
            "GET",
            &format!("/v1/audit?key_id={id}&action=sign"),
            Some(&server.admin),
            None,
        )
        .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|r| r["outcome"] == "denied"), "{audit}");
}

#[tokio::test]
async fn idempotency_key_replays_the_same_response_and_refuses_another_body() {
    let server = setup().await;
    let key = server.create_key("k", "p256").await;
    let id = key["id"].as_str().unwrap();
    let path = format!("/v1/keys/{id}/sign");
    let body = json!({"message": b64(b"pay 10")});
    let hdr = [("Idempotency-Key", "order-42")];
    let (s1, first) = server
        .call_with("POST", &path, Some(&server.admin), Some(body.clone()), &hdr)
        .await;
    let (s2, second) = server
        .call_with("POST", &path, Some(&server.admin), Some(body), &hdr)
        .await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    // ECDSA signatures are deterministic here, but the request id proves it was replayed.
    assert_eq!(first, second);
    let (status, other) = server
        .call_with(
            "POST",
            &path,
            Some(&server.admin),
            Some(json!({"message": b64(b"pay 1000")})),
            &hdr,
        )
        .await;
    assert_error(
        status,
        &other,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    );
    // One signature was recorded, not two.
    let (_, audit) = server
        .call(
            "GET",
            &format!("/v1/audit?key_id={id}&action=sign"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
}

#[tokio::test]
async fn concurrent_requests_with_one_idempotency_key_sign_once() {
    let server = std::sync::Arc::new(setup().await);
    let key = server.create_key("k", "ed25519").await;
    let id = key["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let server = server.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            server
                .call_with(
                    "POST",
                    &format!("/v1/keys/{id}/sign"),
                    Some(&server.admin),
                    Some(json!({"message": "AQID"})),
                    &[("Idempotency-Key", "same")],
                )
                .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        ids.insert(body["request_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "every caller sees the one recorded signature");
    let (_, audit) = server
        .call(
            "GET",
            &format!("/v1/audit?key_id={id}&action=sign"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
}

#[tokio::test]
async fn no_signature_leaves_when_the_audit_log_cannot_record_it() {
    let server = setup().await;
    let key = server.create_key("k", "ed25519").await;
    let id = key["id"].as_str().unwrap();
    server
        .sql(match server.dialect() {
            Dialect::Sqlite => {
                "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log \
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            }
            Dialect::Postgres => {
                "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql \
                 AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$; \
                 CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log \
                 FOR EACH ROW EXECUTE FUNCTION fail_audit()"
            }
        })
        .await;
    let (status, body) = sign(&server, id, &server.admin, json!({"message": "AA=="})).await;
    assert_error(
        status,
        &body,
        StatusCode::SERVICE_UNAVAILABLE,
        "AUDIT_UNAVAILABLE",
    );
    // Nothing was recorded as signed either.
    assert_eq!(server.scalar("SELECT COUNT(*) FROM sign_requests").await, 0);
    server
        .sql(match server.dialect() {
            Dialect::Sqlite => "DROP TRIGGER fail_audit",
            Dialect::Postgres => "DROP TRIGGER fail_audit ON audit_log",
        })
        .await;
    let (status, _) = sign(&server, id, &server.admin, json!({"message": "AA=="})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the writer recovers once the database does"
    );
    assert!(
        keyward_server::audit::verify(server.state.signing().store())
            .await
            .unwrap()
            .is_ok()
    );
}

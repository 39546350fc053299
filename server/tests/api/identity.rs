//! Identity: `/v1/whoami`, and per-key `signers` lists (validation, enforcement, audit).

use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::json;

use crate::{assert_error, b64, setup};

#[tokio::test]
async fn whoami_returns_the_principal() {
    let server = setup().await;
    let token = server.token("alice", &[Role::Signer, Role::Auditor]);
    let (status, me) = server.call("GET", "/v1/whoami", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["subject"], "alice");
    assert_eq!(me["roles"], json!(["auditor", "signer"]));
    assert_eq!(me["groups"], json!([]));
    let (status, body) = server.call("GET", "/v1/whoami", None, None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
}

#[tokio::test]
async fn signers_are_checked_at_creation_and_enforced_when_signing() {
    let server = setup().await;
    for bad in [
        json!(["alice"]),
        json!(["role:treasurer"]),
        json!(["group:"]),
    ] {
        let (status, body) = server
            .call(
                "POST",
                "/v1/keys",
                Some(&server.admin),
                Some(json!({"name": "k", "algorithm": "p256", "signers": bad})),
            )
            .await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
    }
    let (status, key) = server
        .call(
            "POST",
            "/v1/keys",
            Some(&server.admin),
            Some(json!({"name": "k", "algorithm": "p256", "signers": ["subject:alice"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["signers"], json!(["subject:alice"]));
    let path = format!("/v1/keys/{}/sign", key["id"].as_str().unwrap());
    let body = json!({"digest": b64(&[1u8; 32])});
    let bob = server.token("bob", &[Role::Signer]);
    let (status, resp) = server
        .call("POST", &path, Some(&bob), Some(body.clone()))
        .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");
    // The admin holds every role but is not in the list either.
    let (status, resp) = server
        .call("POST", &path, Some(&server.admin), Some(body.clone()))
        .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");
    let alice = server.token("alice", &[Role::Signer]);
    let (status, resp) = server
        .call("POST", &path, Some(&alice), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert!(resp["signature"].is_string());
    // Being listed is not enough without the role signer.
    let listed_auditor = server.token("alice", &[Role::Auditor]);
    let (status, resp) = server
        .call("POST", &path, Some(&listed_auditor), Some(body))
        .await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");
}

#[tokio::test]
async fn key_admins_edit_signers_and_others_cannot() {
    let server = setup().await;
    let key = server.create_key("k", "ed25519").await;
    assert_eq!(key["signers"], json!([]));
    let path = format!("/v1/keys/{}/signers", key["id"].as_str().unwrap());
    let list = json!({"signers": ["role:approver", "group:payments"]});
    let signer = server.token("s", &[Role::Signer]);
    let (status, body) = server
        .call("PUT", &path, Some(&signer), Some(list.clone()))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let key_admin = server.token("ka", &[Role::KeyAdmin]);
    let (status, body) = server
        .call("PUT", &path, Some(&key_admin), Some(list))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["signers"], json!(["role:approver", "group:payments"]));
    let (status, body) = server
        .call(
            "PUT",
            "/v1/keys/key_nope/signers",
            Some(&key_admin),
            Some(json!({"signers": []})),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    // The signer (no approver role) no longer sees the key.
    let (_, page) = server.call("GET", "/v1/keys", Some(&signer), None).await;
    assert_eq!(page["items"], json!([]));
    let (_, page) = server.call("GET", "/v1/keys", Some(&key_admin), None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

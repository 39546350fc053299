//! Authentication failures and the uniform error body.

use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::{assert_error, b64, setup, setup_with};

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let server = setup().await;
    let key = server.create_key("k", "ed25519").await;
    let path = format!("/v1/keys/{}/sign", key["id"].as_str().unwrap());
    let body = json!({"message": "AA=="});

    let (status, resp) = server.call("POST", &path, None, Some(body.clone())).await;
    assert_error(status, &resp, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");

    // Same issuer URL, another key: the signature does not verify.
    let other = setup().await;
    let forged = other.token("admin-1", &[Role::Admin]);
    let (status, resp) = server
        .call("POST", &path, Some(&forged), Some(body.clone()))
        .await;
    assert_error(status, &resp, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");

    // Expired beyond the leeway, signed with the right key.
    let pem = std::fs::read(server.dir.path().join("dev-issuer-key.pem")).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"iss": "http://keyward.test", "aud": "keyward", "sub": "x", "roles": ["admin"],
                        "exp": now - 300, "iat": now - 900});
    let kid = jsonwebtoken::decode_header(&server.admin).unwrap().kid;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = kid.clone();
    let expired = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap(),
    )
    .unwrap();
    let (status, resp) = server
        .call("POST", &path, Some(&expired), Some(body.clone()))
        .await;
    assert_error(status, &resp, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    assert!(
        resp["message"].as_str().unwrap().contains("expired"),
        "{resp}"
    );

    // Wrong audience, right key.
    let claims = json!({"iss": "http://keyward.test", "aud": "elsewhere", "sub": "x", "roles": ["admin"], "exp": now + 300});
    let foreign = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap(),
    )
    .unwrap();
    let (status, resp) = server
        .call("POST", &path, Some(&foreign), Some(body.clone()))
        .await;
    assert_error(status, &resp, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");

    for garbage in ["abc", "a.b.c", &"x".repeat(20_000)] {
        let (status, resp) = server
            .call("POST", &path, Some(garbage), Some(body.clone()))
            .await;
        assert_error(status, &resp, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    }
}

#[tokio::test]
async fn unknown_routes_and_large_bodies_get_the_uniform_body() {
    let server = setup_with(|c| c.max_body_bytes = 2048).await;
    let (status, resp) = server
        .call("GET", "/v1/nothing-here", Some(&server.admin), None)
        .await;
    assert_error(status, &resp, StatusCode::NOT_FOUND, "NOT_FOUND");
    let key = server.create_key("k", "ed25519").await;
    let big = "A".repeat(4096);
    let (status, resp) = server
        .call(
            "POST",
            &format!("/v1/keys/{}/sign", key["id"].as_str().unwrap()),
            Some(&server.admin),
            Some(json!({"message": big})),
        )
        .await;
    assert_error(
        status,
        &resp,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    );
    let (status, resp) = server
        .call(
            "POST",
            "/v1/keys",
            Some(&server.admin),
            Some(json!("not an object")),
        )
        .await;
    assert_error(status, &resp, StatusCode::BAD_REQUEST, "BAD_REQUEST");
}

#[tokio::test]
async fn health_and_discovery_are_public() {
    let server = setup().await;
    let (status, live) = server.call("GET", "/health/live", None, None).await;
    assert_eq!(
        (status, live["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, ready) = server.call("GET", "/health/ready", None, None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["backend:software"], "ok");
    let (status, disco) = server
        .call("GET", "/.well-known/openid-configuration", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(disco["issuer"], "http://keyward.test");
    let (_, jwks) = server
        .call("GET", "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");
}

#[tokio::test]
async fn an_unanswered_method_is_405_with_the_methods_that_are_answered() {
    let server = crate::setup().await;
    for (method, path, allow) in [
        (poem::http::Method::DELETE, "/v1/whoami", "GET, HEAD"),
        (poem::http::Method::PATCH, "/v1/keys", "GET, HEAD, POST"),
        (poem::http::Method::GET, "/v1/keys/key_x/sign", "POST"),
        (poem::http::Method::PUT, "/v1/requests/r1/approve", "POST"),
        (poem::http::Method::DELETE, "/openapi.json", "GET, HEAD"),
        (poem::http::Method::POST, "/v1/ca/crl", "GET, HEAD"),
        (poem::http::Method::GET, "/rpc/ethereum", "POST"),
    ] {
        let resp = server
            .client
            .request(method.clone(), path)
            .header("authorization", format!("Bearer {}", server.admin))
            .send()
            .await;
        assert_eq!(
            resp.0.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(
            resp.0.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        let body: serde_json::Value =
            serde_json::from_slice(&resp.0.into_body().into_bytes().await.unwrap()).unwrap();
        assert_eq!(
            body["code"], "METHOD_NOT_ALLOWED",
            "{method} {path}: {body}"
        );
    }
    // HEAD is answered where GET is.
    let resp = server
        .client
        .request(poem::http::Method::HEAD, "/v1/keys")
        .header("authorization", format!("Bearer {}", server.admin))
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    // An unknown path stays 404, with no Allow.
    let resp = server.client.delete("/v1/nothing").send().await;
    assert_eq!(resp.0.status(), StatusCode::NOT_FOUND);
    assert!(resp.0.headers().get("allow").is_none());
}

/// Constraints the spec declares (poem-openapi validators, checked before a handler runs)
/// answer 422 `INVALID_REQUEST` with the rule in words, as the handlers' own checks do; a
/// value of the wrong type stays 400. The spec carries each of them.
#[tokio::test]
async fn declared_constraints_are_refused_with_422_in_words() {
    let server = setup().await;
    let admin = server.admin.clone();
    for (path, message) in [
        ("/v1/keys?limit=0", "limit must be at least 1"),
        ("/v1/keys?limit=501", "limit must be at most 500"),
        ("/v1/audit?limit=0", "limit must be at least 1"),
        ("/v1/wallets?limit=100000", "limit must be at most 500"),
    ] {
        let (status, body) = server.call("GET", path, Some(&admin), None).await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
        assert_eq!(body["message"], message, "{path}");
    }
    let (status, body) = server
        .call("GET", "/v1/keys?limit=ten", Some(&admin), None)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");

    for (path, request, message) in [
        (
            "/v1/keys",
            json!({"name": "has space", "algorithm": "ed25519"}),
            "name is invalid: use 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
        ),
        (
            "/v1/wallets",
            json!({"name": "w", "words": 13}),
            "words must be a multiple of 3",
        ),
    ] {
        let (status, body) = server.call("POST", path, Some(&admin), Some(request)).await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
        assert_eq!(body["message"], message, "{path}");
    }

    let key = server.create_key("constraint-key", "ed25519").await;
    let path = format!("/v1/keys/{}/sign", key["id"].as_str().unwrap());
    let (status, body) = server
        .call_with(
            "POST",
            &path,
            Some(&admin),
            Some(json!({"digest": b64(&[7; 32])})),
            &[("Idempotency-Key", "two words")],
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
    assert_eq!(
        body["message"],
        "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces"
    );
    assert_eq!(
        server.audit("sign", &admin).await.len(),
        0,
        "a refused request signed nothing"
    );

    let spec: Value = serde_json::from_str(&keyward_server::api::routes::openapi_json()).unwrap();
    let limit = spec["paths"]["/v1/keys"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()
        .clone();
    assert_eq!(limit["schema"]["minimum"], 1.0, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 500.0, "{limit}");
}

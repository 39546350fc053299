//! The foundation, black-box: the real binary over HTTP, openssl as the independent verifier.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use keyward_e2e::{JwksIssuer, Keyward, assert_error, b64, openssl, run_keyward, unb64};
use serde_json::{Value, json};
use sha2::Digest as _;

async fn create_key(kw: &Keyward, name: &str, alg: &str) -> Value {
    let (status, key) = kw
        .call(
            "POST",
            "/v1/keys",
            Some(kw.admin()),
            Some(&json!({"name": name, "algorithm": alg})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    key
}

async fn sign(kw: &Keyward, id: &str, token: &str, body: Value) -> (u16, Value) {
    kw.call(
        "POST",
        &format!("/v1/keys/{id}/sign"),
        Some(token),
        Some(&body),
    )
    .await
}

/// Verifies with openssl: `input` is the message (or the digest when `prehashed`).
fn openssl_verifies(
    dir: &Path,
    alg: &str,
    scheme: &str,
    prehashed: bool,
    input: &[u8],
    sig: &[u8],
) -> bool {
    std::fs::write(dir.join("in.bin"), input).unwrap();
    std::fs::write(dir.join("sig.bin"), sig).unwrap();
    let pss = [
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:digest",
    ];
    let pss_pkeyutl = [
        "-pkeyopt",
        "rsa_padding_mode:pss",
        "-pkeyopt",
        "rsa_pss_saltlen:digest",
    ];
    let mut args: Vec<&str> = match (alg, prehashed) {
        ("ed25519", _) => vec![
            "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "in.bin",
            "-sigfile", "sig.bin",
        ],
        (_, false) => vec![
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig.bin",
        ],
        (_, true) => vec![
            "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-in", "in.bin", "-sigfile",
            "sig.bin",
        ],
    };
    if alg.starts_with("rsa") {
        if prehashed {
            args.extend(["-pkeyopt", "digest:sha256"]);
            if scheme == "pss" {
                args.extend(pss_pkeyutl);
            }
        } else if scheme == "pss" {
            args.extend(pss);
        }
    }
    if alg != "ed25519" && !prehashed {
        args.push("in.bin");
    }
    openssl(dir, &args).0
}

#[tokio::test]
async fn every_algorithm_signs_digests_and_messages_that_openssl_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    assert!(
        kw.banner
            .iter()
            .any(|l| l.starts_with("swagger: ") && l.ends_with("/docs")),
        "{:?}",
        kw.banner
    );
    let signer = kw.token("alice", &["signer"]);
    let work = tempfile::tempdir().unwrap();
    let message = b"Keyward end-to-end message".to_vec();
    let digest = sha2::Sha256::digest(&message).to_vec();
    for alg in [
        "ed25519",
        "secp256k1",
        "p256",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
    ] {
        let key = create_key(&kw, &format!("k-{alg}"), alg).await;
        std::fs::write(
            work.path().join("pub.pem"),
            key["public_key"]["pem"].as_str().unwrap(),
        )
        .unwrap();
        let id = key["id"].as_str().unwrap();
        let schemes: &[&str] = if alg.starts_with("rsa") {
            &["pkcs1v15", "pss"]
        } else {
            &["default"]
        };
        for scheme in schemes {
            for prehashed in [true, false] {
                let mut body = if prehashed {
                    json!({"digest": b64(&digest)})
                } else {
                    json!({"message": b64(&message)})
                };
                if *scheme != "default" {
                    body["scheme"] = json!(scheme);
                }
                let (status, signed) = sign(&kw, id, &signer, body).await;
                assert_eq!(status, 200, "{alg} {scheme}: {signed}");
                let sig = unb64(signed["signature"].as_str().unwrap());
                let input = if prehashed { &digest } else { &message };
                assert!(
                    openssl_verifies(work.path(), alg, scheme, prehashed, input, &sig),
                    "openssl rejected {alg} {scheme} prehashed={prehashed}"
                );
                let mut flipped = sig.clone();
                let mid = flipped.len() / 2;
                flipped[mid] ^= 0x01;
                assert!(
                    !openssl_verifies(work.path(), alg, scheme, prehashed, input, &flipped),
                    "openssl accepted a flipped bit for {alg} {scheme}"
                );
            }
        }
    }
}

#[tokio::test]
async fn refusals_get_the_uniform_body_and_no_signature() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev_with_env(dir.path(), &[("KEYWARD_SERVER__MAX_BODY_BYTES", "4096")]);
    let key = create_key(&kw, "k", "p256").await;
    let id = key["id"].as_str().unwrap();
    let signer = kw.token("alice", &["signer"]);
    let ok = json!({"digest": b64(&[7u8; 32])});

    let (s, b) = kw
        .call("POST", &format!("/v1/keys/{id}/sign"), None, Some(&ok))
        .await;
    assert_error(s, &b, 401, "UNAUTHENTICATED");

    let other_dir = tempfile::tempdir().unwrap();
    let other = Keyward::dev(other_dir.path());
    let foreign = other.token("alice", &["signer"]);
    drop(other);
    let (s, b) = sign(&kw, id, &foreign, ok.clone()).await;
    assert_error(s, &b, 401, "UNAUTHENTICATED");

    // An expired token, signed by the right issuer key.
    let pem = std::fs::read(dir.path().join("dev-issuer-key.pem")).unwrap();
    let claims: Value =
        serde_json::from_slice(&unb64_url(signer.split('.').nth(1).unwrap())).unwrap();
    let mut expired = claims.clone();
    expired["exp"] = json!(claims["iat"].as_u64().unwrap() - 600);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = jsonwebtoken::decode_header(&signer).unwrap().kid;
    let expired = jsonwebtoken::encode(
        &header,
        &expired,
        &jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap(),
    )
    .unwrap();
    let (s, b) = sign(&kw, id, &expired, ok.clone()).await;
    assert_error(s, &b, 401, "UNAUTHENTICATED");

    let auditor = kw.token("carol", &["auditor"]);
    let (s, b) = sign(&kw, id, &auditor, ok.clone()).await;
    assert_error(s, &b, 403, "FORBIDDEN");

    let (s, b) = sign(&kw, "key_missing", &signer, ok.clone()).await;
    assert_error(s, &b, 404, "NOT_FOUND");

    let (s, b) = sign(&kw, id, &signer, json!({"digest": b64(&[7u8; 20])})).await;
    assert_error(s, &b, 422, "INVALID_REQUEST");
    let (s, b) = sign(&kw, id, &signer, json!({"digest": "***"})).await;
    assert_error(s, &b, 400, "BAD_REQUEST");
    let (s, b) = kw
        .call(
            "POST",
            "/v1/keys",
            Some(kw.admin()),
            Some(&json!({"name": "x", "algorithm": "dsa-1024"})),
        )
        .await;
    assert_error(s, &b, 422, "INVALID_REQUEST");
    let (s, b) = sign(&kw, id, &signer, json!({"message": b64(&[0u8; 8192])})).await;
    assert_error(s, &b, 413, "PAYLOAD_TOO_LARGE");

    let path = format!("/v1/keys/{id}/sign");
    let idem = [("Idempotency-Key", "once")];
    let (s, first) = kw
        .call_with("POST", &path, Some(&signer), Some(&ok), &idem)
        .await;
    assert_eq!(s, 200, "{first}");
    let (s, again) = kw
        .call_with("POST", &path, Some(&signer), Some(&ok), &idem)
        .await;
    assert_eq!((s, &again), (200, &first));
    let (s, b) = kw
        .call_with(
            "POST",
            &path,
            Some(&signer),
            Some(&json!({"digest": b64(&[8u8; 32])})),
            &idem,
        )
        .await;
    assert_error(s, &b, 422, "IDEMPOTENCY_KEY_REUSED");

    let (s, _) = kw
        .call(
            "POST",
            &format!("/v1/keys/{id}/disable"),
            Some(kw.admin()),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = sign(&kw, id, &signer, ok.clone()).await;
    assert_error(s, &b, 409, "KEY_DISABLED");
}

fn unb64_url(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

#[tokio::test]
async fn restart_keeps_keys_audit_and_tokens_and_verify_names_a_tampered_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut kw = Keyward::dev(dir.path());
    let admin = kw.admin().to_string();
    let key = create_key(&kw, "keep", "ed25519").await;
    let id = key["id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let (s, _) = sign(&kw, &id, &admin, json!({"message": b64(b"before")})).await;
        assert_eq!(s, 200);
    }
    kw.stop();

    let kw = Keyward::dev(dir.path());
    let (s, b) = sign(&kw, &id, &admin, json!({"message": b64(b"after")})).await;
    assert_eq!(
        s, 200,
        "the old admin token and the old key still work: {b}"
    );
    let (s, again) = kw
        .call("GET", &format!("/v1/keys/{id}"), Some(&admin), None)
        .await;
    assert_eq!((s, &again["public_key"]), (200, &key["public_key"]));
    let (_, audit) = kw
        .call("GET", "/v1/audit?limit=500", Some(&admin), None)
        .await;
    // The built-in allow-all policy and the CA installed at first start, key.create and four
    // signatures.
    assert_eq!(audit["items"].as_array().unwrap().len(), 7, "{audit}");
    drop(kw);

    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = run_keyward(&["audit", "verify", "--data-dir", data]);
    assert!(ok, "{out} {err}");
    assert!(out.contains("OK: 7 records"), "{out}");

    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("keyward.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE audit_log SET actor_subject = 'mallory' WHERE seq = 3")
        .execute(&db)
        .await
        .unwrap();
    let (ok, out, _) = run_keyward(&["audit", "verify", "--data-dir", data]);
    assert!(!ok);
    assert!(out.contains("seq 3"), "{out}");

    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(&db)
        .await
        .unwrap();
    let (ok, out, _) = run_keyward(&["audit", "verify", "--data-dir", data]);
    assert!(!ok);
    assert!(out.contains("seq 2"), "{out}");
    db.close().await;
}

#[tokio::test]
async fn the_database_never_holds_private_key_bytes() {
    use pkcs8::EncodePrivateKey;
    let dir = tempfile::tempdir().unwrap();
    let mut kw = Keyward::dev(dir.path());
    let ed = ed25519_dalek::SigningKey::from_bytes(&[0x11; 32]);
    let ec = p256::ecdsa::SigningKey::from_slice(&[0x22; 32]).unwrap();
    let imports = [
        (
            "ed",
            ed.to_pkcs8_pem(pkcs8::LineEnding::LF).unwrap().to_string(),
            ed.to_pkcs8_der().unwrap(),
        ),
        (
            "ec",
            ec.to_pkcs8_pem(pkcs8::LineEnding::LF).unwrap().to_string(),
            ec.to_pkcs8_der().unwrap(),
        ),
    ];
    for (name, pem, _) in &imports {
        let (s, key) = kw
            .call(
                "POST",
                "/v1/keys/import",
                Some(kw.admin()),
                Some(&json!({"name": name, "private_key_pem": pem})),
            )
            .await;
        assert_eq!(s, 201, "{key}");
        assert!(!key.to_string().contains("PRIVATE"));
        let (s, _) = sign(
            &kw,
            key["id"].as_str().unwrap(),
            kw.admin(),
            json!({"message": b64(b"x")}),
        )
        .await;
        assert_eq!(s, 200);
    }
    kw.stop();
    let mut searched = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("keyward.db")
        {
            continue;
        }
        searched += 1;
        let bytes = std::fs::read(&path).unwrap();
        for secret in [[0x11u8; 32], [0x22u8; 32]] {
            assert!(
                !bytes.windows(32).any(|w| w == secret),
                "raw key bytes in {}",
                path.display()
            );
        }
        for (_, _, der) in &imports {
            assert!(
                !bytes
                    .windows(der.as_bytes().len())
                    .any(|w| w == der.as_bytes()),
                "PKCS#8 in {}",
                path.display()
            );
        }
    }
    assert!(searched >= 1);
}

#[tokio::test]
async fn a_production_config_with_default_deny_refuses_and_audits_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    // An issuer of our own, trusted through a static JWKS file.
    let issuer = JwksIssuer::new(work, "https://idp.example.test");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[storage]
data_dir = "{data}"
[auth]
[[auth.issuers]]
issuer = "https://idp.example.test"
audiences = ["keyward"]
jwks_file = "jwks.json"
algorithms = ["ES256"]
[policy]
default_decision = "deny"
"#,
        data = work.join("data").display()
    );
    std::fs::write(work.join("keyward.toml"), config).unwrap();
    let kek = "ab".repeat(32);
    let kw = Keyward::serve(
        &work.join("keyward.toml"),
        &work.join("data"),
        &[("KEYWARD_KEK", &kek)],
    );
    let mint = |sub: &str, roles: &[&str]| issuer.token(sub, roles);
    let admin = mint("ops", &["key-admin", "auditor"]);
    let (s, key) = kw
        .call(
            "POST",
            "/v1/keys",
            Some(&admin),
            Some(&json!({"name": "k", "algorithm": "ed25519"})),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    let id = key["id"].as_str().unwrap();
    let signer = mint("app", &["signer"]);
    for _ in 0..3 {
        let (s, b) = sign(&kw, id, &signer, json!({"message": b64(b"m")})).await;
        assert_error(s, &b, 403, "POLICY_DENIED");
    }
    let (_, audit) = kw
        .call(
            "GET",
            &format!("/v1/audit?key_id={id}&action=sign"),
            Some(&admin),
            None,
        )
        .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(
        items
            .iter()
            .all(|r| r["outcome"] == "denied" && r["actor"]["subject"] == "app")
    );
    // The development issuer is off in this configuration.
    let (s, _) = kw.call("GET", "/.well-known/jwks.json", None, None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn swagger_ui_and_the_spec_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let (s, page) = kw.call("GET", "/docs", None, None).await;
    assert_eq!(s, 200);
    assert!(page.as_str().unwrap().to_lowercase().contains("swagger"));
    let (s, spec) = kw.call("GET", "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(keyward_e2e::workspace_root().join("openapi/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(spec["paths"], committed["paths"]);
    for (path, ops) in spec["paths"].as_object().unwrap() {
        if path.starts_with("/v1/") {
            for (method, op) in ops.as_object().unwrap() {
                assert!(
                    op["security"][0]["BearerAuth"].is_array(),
                    "{method} {path}"
                );
            }
        }
    }
}

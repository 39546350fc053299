//! Document signing: the internal CA, certificates, CSR and chain import, CMS signatures
//! checked with the openssl CLI, revocation and the CRL, verification, and refusals.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::{TestServer, assert_error, b64, setup, setup_with};

const DOC: &[u8] = b"%PDF-1.7\nKeyward test contract, version 1\n";

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("base64")
}

/// Runs openssl in `dir`; returns success and the combined output.
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn doc_key(server: &TestServer, name: &str, algorithm: &str) -> String {
    let (status, body) = server
        .call(
            "POST",
            "/v1/keys",
            Some(&server.admin),
            Some(json!({"name": name, "algorithm": algorithm, "purpose": "document"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["purpose"], "document");
    body["id"].as_str().unwrap().to_string()
}

async fn issue(server: &TestServer, key_id: &str, cn: &str) -> Value {
    let (status, cert) = server
        .call(
            "POST",
            &format!("/v1/keys/{key_id}/certificate"),
            Some(&server.admin),
            Some(json!({
                "subject": {"common_name": cn, "email": "alice@example.com",
                            "organization": "Example GmbH", "organizational_unit": "Legal",
                            "country": "DE"},
                "validity_days": 30
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    assert_eq!(cert["status"], "active");
    assert_eq!(cert["source"], "internal");
    cert
}

async fn ca_pem(server: &TestServer) -> String {
    let (status, pem) = server.call("GET", "/v1/ca/certificate", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let pem = pem.as_str().unwrap().to_string();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    pem
}

async fn crl_der(server: &TestServer) -> Vec<u8> {
    let resp = server.client.get("/v1/ca/crl").send().await;
    resp.assert_status_is_ok();
    resp.assert_content_type("application/pkix-crl");
    resp.0.into_body().into_bytes().await.unwrap().to_vec()
}

async fn sign_doc(server: &TestServer, token: &str, body: Value) -> (StatusCode, Value) {
    server
        .call("POST", "/v1/documents/sign", Some(token), Some(body))
        .await
}

async fn verify_doc(server: &TestServer, body: Value) -> Value {
    let (status, result) = server
        .call(
            "POST",
            "/v1/documents/verify",
            Some(&server.admin),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    result
}

/// openssl cms -verify of a detached DER signature over `doc` against `ca`.
fn cms_verify(dir: &Path, sig: &[u8], doc: &[u8], ca: &Path) -> (bool, String) {
    write(dir, "sig.der", sig);
    write(dir, "doc.bin", doc);
    openssl(
        dir,
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "sig.der",
            "-content",
            "doc.bin",
            "-CAfile",
            ca.to_str().unwrap(),
            "-out",
            "/dev/null",
        ],
    )
}

#[tokio::test]
async fn cms_signatures_verify_with_openssl_rsa_pkcs1_pss_p256_and_keyward_ed25519() {
    let server = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", ca_pem(&server).await.as_bytes());
    let signer = server.token("alice", &[Role::Signer]);
    // Ed25519 (RFC 8419) is optional in the issue; it works with SHA-512.
    let cases = [
        ("rsa-2048", Some("pkcs1v15"), "sha256", "SHA256withRSA"),
        ("rsa-2048", Some("pss"), "sha256", "SHA256withRSAandMGF1"),
        ("rsa-2048", Some("pss"), "sha384", "SHA384withRSAandMGF1"),
        ("p256", None, "sha256", "SHA256withECDSA"),
        ("ed25519", None, "sha512", "Ed25519"),
    ];
    for (i, (alg, scheme, hash, name)) in cases.iter().enumerate() {
        let key_id = doc_key(&server, &format!("doc-{i}"), alg).await;
        let cert = issue(&server, &key_id, &format!("Alice {i}")).await;
        let mut body = json!({"key_id": key_id, "document": b64(DOC),
                              "hash_algorithm": hash, "document_name": "contract.pdf"});
        if let Some(s) = scheme {
            body["scheme"] = json!(s);
        }
        let (status, signed) = sign_doc(&server, &signer, body).await;
        assert_eq!(status, StatusCode::OK, "{alg}: {signed}");
        assert_eq!(signed["format"], "cms");
        assert_eq!(signed["algorithm"], *name);
        assert_eq!(signed["certificate_id"], cert["id"]);
        assert!(
            signed["signer_subject"]
                .as_str()
                .unwrap()
                .contains(&format!("CN=Alice {i}")),
            "{signed}"
        );
        assert_eq!(signed["policy"]["decision"], "allow");
        let sig = unb64(&signed["signature"]);

        let mut changed = DOC.to_vec();
        changed[3] ^= 1;
        if *alg == "ed25519" {
            // OpenSSL 3.0 cannot sign or verify Ed25519 CMS at all ("invalid digest" in its
            // EdDSA provider, even for its own signatures): the structure is checked below
            // with `-cmsout -print`, the signature with Keyward's verifier.
            write(dir.path(), "sig.der", &sig);
        } else {
            let (ok, out) = cms_verify(dir.path(), &sig, DOC, &ca);
            assert!(ok, "{alg} {scheme:?}: openssl refused: {out}");
            assert!(out.contains("Verification successful"), "{out}");
            let (ok, out) = cms_verify(dir.path(), &sig, &changed, &ca);
            assert!(!ok, "{alg}: a changed document verified: {out}");
        }

        // The four CAdES-BES signed attributes, and PSS parameters where PSS was asked.
        let (ok, printed) = openssl(
            dir.path(),
            &[
                "cms", "-cmsout", "-print", "-inform", "DER", "-in", "sig.der",
            ],
        );
        assert!(ok, "{printed}");
        for attr in [
            "contentType",
            "messageDigest",
            "signingTime",
            "id-smime-aa-signingCertificateV2",
        ] {
            assert!(printed.contains(attr), "{attr} missing:\n{printed}");
        }
        if *scheme == Some("pss") {
            assert!(printed.contains("rsassaPss"), "{printed}");
        }
        if *alg == "ed25519" {
            assert!(printed.contains("ED25519"), "{printed}");
        }

        // Keyward's own verification agrees, with the hash as well as with the document.
        let digest = match *hash {
            "sha256" => sha2::Sha256::digest(DOC).to_vec(),
            "sha384" => sha2::Sha384::digest(DOC).to_vec(),
            _ => sha2::Sha512::digest(DOC).to_vec(),
        };
        let result = verify_doc(
            &server,
            json!({"signature": signed["signature"],
                   "document_hash": format!("{hash}:{}", hex::encode(&digest))}),
        )
        .await;
        assert_eq!(result["valid"], true, "{result}");
        assert_eq!(result["chain_status"], "good");
        assert_eq!(result["signer_common_name"], format!("Alice {i}"));
        assert_eq!(result["signer_email"], "alice@example.com");
        assert_eq!(result["signing_time"], signed["signed_at"]);
        let result = verify_doc(
            &server,
            json!({"signature": signed["signature"], "document": b64(&changed)}),
        )
        .await;
        assert_eq!(result["valid"], false, "{result}");
        assert_eq!(result["digest_matches"], false);
        assert!(!result["reasons"].as_array().unwrap().is_empty());
    }
}

#[tokio::test]
async fn issued_certificates_carry_the_document_signing_profile() {
    let server = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let key_id = doc_key(&server, "profile", "p256").await;
    let cert = issue(&server, &key_id, "Alice Profile").await;
    write(
        dir.path(),
        "cert.pem",
        cert["certificate_pem"].as_str().unwrap().as_bytes(),
    );
    let (ok, text) = openssl(dir.path(), &["x509", "-in", "cert.pem", "-noout", "-text"]);
    assert!(ok, "{text}");
    for needle in [
        "Digital Signature, Non Repudiation",
        "E-mail Protection",
        "1.3.6.1.5.5.7.3.36",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        "URI:http://keyward.test/v1/ca/crl",
        "email:alice@example.com",
        "CA:FALSE",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    // The key's certificates: the signer certificate and the CA chain, base64 DER.
    let (status, certs) = server
        .call(
            "GET",
            &format!("/v1/keys/{key_id}/certificates"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{certs}");
    assert_eq!(certs["certificate"]["id"], cert["id"]);
    let chain = certs["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 1);
    write(dir.path(), "leaf.der", &unb64(&certs["signer_certificate"]));
    write(dir.path(), "ca.der", &unb64(&chain[0]));
    let (ok, out) = openssl(
        dir.path(),
        &["x509", "-inform", "DER", "-in", "ca.der", "-out", "ca.pem"],
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        dir.path(),
        &[
            "x509", "-inform", "DER", "-in", "leaf.der", "-out", "leaf.pem",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        dir.path(),
        &[
            "verify",
            "-purpose",
            "smimesign",
            "-CAfile",
            "ca.pem",
            "leaf.pem",
        ],
    );
    assert!(ok && out.contains("OK"), "{out}");

    // Listing filters by key and status.
    let (status, page) = server
        .call(
            "GET",
            &format!("/v1/certificates?key_id={key_id}&status=active"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (_, page) = server
        .call(
            "GET",
            &format!("/v1/certificates?key_id={key_id}&status=revoked"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    let (status, got) = server
        .call(
            "GET",
            &format!("/v1/certificates/{}", cert["id"].as_str().unwrap()),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["serial"], cert["serial"]);

    // The CA key is not a key: nothing in /v1/keys but the document key.
    let (_, keys) = server
        .call("GET", "/v1/keys", Some(&server.admin), None)
        .await;
    let ids: Vec<&str> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![key_id.as_str()]);
}

#[tokio::test]
async fn revocation_reaches_the_crl_refuses_signing_and_shows_in_verification() {
    let server = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", ca_pem(&server).await.as_bytes());
    let signer = server.token("alice", &[Role::Signer]);
    let key_id = doc_key(&server, "revoke-me", "p256").await;
    let cert = issue(&server, &key_id, "Alice Revoked").await;
    write(
        dir.path(),
        "cert.pem",
        cert["certificate_pem"].as_str().unwrap().as_bytes(),
    );
    let (status, signed) = sign_doc(
        &server,
        &signer,
        json!({"key_id": key_id, "document": b64(DOC)}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{signed}");

    let crl_check = |dir: &Path| {
        openssl(
            dir,
            &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
        );
        openssl(
            dir,
            &[
                "verify",
                "-crl_check",
                "-CRLfile",
                "crl.pem",
                "-CAfile",
                ca.to_str().unwrap(),
                "cert.pem",
            ],
        )
    };
    write(dir.path(), "crl.der", &crl_der(&server).await);
    let (ok, out) = crl_check(dir.path());
    assert!(ok, "before revocation: {out}");

    let cert_id = cert["id"].as_str().unwrap();
    let signer_only = server.token("mallory", &[Role::Signer]);
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/certificates/{cert_id}/revoke"),
            Some(&signer_only),
            Some(json!({"reason": "key_compromise"})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/certificates/{cert_id}/revoke"),
            Some(&server.admin),
            Some(json!({"reason": "stolen"})),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
    let (status, revoked) = server
        .call(
            "POST",
            &format!("/v1/certificates/{cert_id}/revoke"),
            Some(&server.admin),
            Some(json!({"reason": "key_compromise"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revocation_reason"], "key_compromise");
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/certificates/{cert_id}/revoke"),
            Some(&server.admin),
            Some(json!({"reason": "key_compromise"})),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "ALREADY_REVOKED");

    // openssl sees the revocation in the CRL.
    write(dir.path(), "crl.der", &crl_der(&server).await);
    let (ok, out) = crl_check(dir.path());
    assert!(!ok, "a revoked certificate verified: {out}");
    assert!(out.contains("certificate revoked"), "{out}");
    let (ok, text) = openssl(dir.path(), &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(ok && text.contains("Key Compromise"), "{text}");

    // Signing is refused, for cms and raw alike, with no signature.
    for format in ["cms", "raw"] {
        let (status, body) = sign_doc(
            &server,
            &signer,
            json!({"key_id": key_id, "document": b64(DOC), "format": format}),
        )
        .await;
        assert_error(status, &body, StatusCode::CONFLICT, "CERTIFICATE_REVOKED");
    }

    // Verification of the earlier signature reports the revocation.
    let result = verify_doc(
        &server,
        json!({"signature": signed["signature"], "document": b64(DOC)}),
    )
    .await;
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["signature_valid"], true);
    assert_eq!(result["chain_status"], "revoked");
    assert_eq!(result["revocation_reason"], "key_compromise");
    assert_eq!(result["revoked_at"], revoked["revoked_at"]);

    // Issuance, revocation, signing and verification are in the audit log.
    let auditor = server.token("carol", &[Role::Auditor]);
    for action in [
        "ca.create",
        "certificate.issue",
        "certificate.revoke",
        "sign",
        "document.verify",
    ] {
        let items = server.audit(action, &auditor).await;
        assert!(!items.is_empty(), "no {action} record");
        if action == "sign" {
            assert_eq!(items[0]["details"]["intent"]["kind"], "document");
            assert_eq!(items[0]["details"]["operation"], "document.sign");
        }
    }
}

#[tokio::test]
async fn csr_external_ca_chain_import_and_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An external CA made with openssl.
    let (ok, out) = openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "extca.key",
            "-out",
            "extca.pem",
            "-subj",
            "/CN=External Test CA/O=Elsewhere",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    assert!(ok, "{out}");
    let anchors = d.join("extca.pem");
    let server = setup_with(|cfg| cfg.documents.trust_anchors_file = Some(anchors)).await;
    let signer = server.token("bob", &[Role::Signer]);
    let key_id = doc_key(&server, "external", "p256").await;

    let (status, csr) = server
        .call(
            "POST",
            &format!("/v1/keys/{key_id}/csr"),
            Some(&server.admin),
            Some(json!({"subject": {"common_name": "Bob External", "email": "bob@example.com"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{csr}");
    write(d, "req.pem", csr["csr_pem"].as_str().unwrap().as_bytes());
    let (ok, out) = openssl(d, &["req", "-verify", "-in", "req.pem", "-noout", "-text"]);
    assert!(ok, "{out}");
    assert!(out.contains("Bob External"), "{out}");

    write(
        d,
        "leaf.ext",
        b"keyUsage=critical,digitalSignature,nonRepudiation\nextendedKeyUsage=emailProtection\n",
    );
    let (ok, out) = openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "req.pem",
            "-CA",
            "extca.pem",
            "-CAkey",
            "extca.key",
            "-CAcreateserial",
            "-copy_extensions",
            "copy",
            "-days",
            "10",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
    assert!(ok, "{out}");
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(d.join("leaf.pem")).unwrap(),
        std::fs::read_to_string(d.join("extca.pem")).unwrap()
    );

    // A chain for another key is refused.
    let other = doc_key(&server, "other", "p256").await;
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/keys/{other}/certificate/import"),
            Some(&server.admin),
            Some(json!({"chain_pem": chain})),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "CERTIFICATE_KEY_MISMATCH",
    );
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/keys/{other}/certificate/import"),
            Some(&server.admin),
            Some(json!({"chain_pem": "not a pem"})),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");

    let (status, imported) = server
        .call(
            "POST",
            &format!("/v1/keys/{key_id}/certificate/import"),
            Some(&server.admin),
            Some(json!({"chain_pem": chain})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_eq!(imported["source"], "imported");
    assert!(
        imported["issuer"]
            .as_str()
            .unwrap()
            .contains("External Test CA")
    );

    let (status, signed) = sign_doc(
        &server,
        &signer,
        json!({"key_id": key_id, "document_hash": b64(&sha2::Sha256::digest(DOC)),
               "hash_algorithm": "sha256"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let (ok, out) = cms_verify(d, &unb64(&signed["signature"]), DOC, &d.join("extca.pem"));
    assert!(ok, "{out}");
    // Against the internal CA alone it does not verify.
    write(d, "internal.pem", ca_pem(&server).await.as_bytes());
    let (ok, _) = cms_verify(
        d,
        &unb64(&signed["signature"]),
        DOC,
        &d.join("internal.pem"),
    );
    assert!(!ok);

    // The configured trust anchor makes it good for Keyward's verification too.
    let result = verify_doc(
        &server,
        json!({"signature": signed["signature"], "document": b64(DOC)}),
    )
    .await;
    assert_eq!(result["valid"], true, "{result}");
    assert_eq!(result["chain_status"], "good");
    assert_eq!(result["signer_email"], "bob@example.com");

    // An external `openssl ca` issues a certificate that has already expired: it imports,
    // but signing with it is refused.
    let old_key = doc_key(&server, "expired", "p256").await;
    let (status, csr) = server
        .call(
            "POST",
            &format!("/v1/keys/{old_key}/csr"),
            Some(&server.admin),
            Some(json!({"subject": {"common_name": "Bob Expired"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{csr}");
    write(d, "old.csr", csr["csr_pem"].as_str().unwrap().as_bytes());
    write(d, "index.txt", b"");
    write(d, "serial", b"1000\n");
    write(
        d,
        "ca.cnf",
        b"[ca]\ndefault_ca = ext\n[ext]\ndatabase = index.txt\nnew_certs_dir = .\n\
          serial = serial\ndefault_md = sha256\npolicy = any\nx509_extensions = leaf\n\
          [any]\ncommonName = supplied\n\
          [leaf]\nkeyUsage = critical,digitalSignature,nonRepudiation\n\
          extendedKeyUsage = emailProtection\n",
    );
    let (ok, out) = openssl(
        d,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            "extca.pem",
            "-keyfile",
            "extca.key",
            "-in",
            "old.csr",
            "-out",
            "old.pem",
            "-notext",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20200201000000Z",
        ],
    );
    assert!(ok, "{out}");
    let (status, imported) = server
        .call(
            "POST",
            &format!("/v1/keys/{old_key}/certificate/import"),
            Some(&server.admin),
            Some(json!({"chain_pem": std::fs::read_to_string(d.join("old.pem")).unwrap()})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert!(
        imported["not_after"]
            .as_str()
            .unwrap()
            .starts_with("2020-02-01")
    );
    for format in ["cms", "raw"] {
        let (status, body) = sign_doc(
            &server,
            &signer,
            json!({"key_id": old_key, "document": b64(DOC), "format": format}),
        )
        .await;
        assert_error(status, &body, StatusCode::CONFLICT, "CERTIFICATE_EXPIRED");
    }
}

#[tokio::test]
async fn signatures_from_an_unknown_ca_are_untrusted() {
    // Server A signs; server B (another internal CA, no anchors) verifies.
    let a = setup().await;
    let b = setup().await;
    let key_id = doc_key(&a, "a-key", "p256").await;
    issue(&a, &key_id, "Alice A").await;
    let signer = a.token("alice", &[Role::Signer]);
    let (status, signed) =
        sign_doc(&a, &signer, json!({"key_id": key_id, "document": b64(DOC)})).await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let result = verify_doc(
        &b,
        json!({"signature": signed["signature"], "document": b64(DOC)}),
    )
    .await;
    assert_eq!(result["valid"], false, "{result}");
    assert_eq!(result["signature_valid"], true);
    assert_eq!(result["chain_status"], "untrusted");
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_no_signature() {
    let server = setup_with(|cfg| cfg.documents.max_document_bytes = 1024).await;
    let signer = server.token("alice", &[Role::Signer]);
    let key_id = doc_key(&server, "plain", "p256").await;

    // cms for a key without a certificate.
    let (status, body) = sign_doc(
        &server,
        &signer,
        json!({"key_id": key_id, "document": b64(DOC)}),
    )
    .await;
    assert_error(status, &body, StatusCode::CONFLICT, "NO_CERTIFICATE");

    // raw needs no certificate: a bare ECDSA signature over the hash.
    let digest = sha2::Sha256::digest(DOC);
    let (status, raw) = sign_doc(
        &server,
        &signer,
        json!({"key_id": key_id, "document_hash": format!("sha256:{}", hex::encode(digest)),
               "format": "raw"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{raw}");
    assert_eq!(raw["algorithm"], "SHA256withECDSA");
    let (_, checked) = server
        .call(
            "POST",
            &format!("/v1/keys/{key_id}/verify"),
            Some(&signer),
            Some(json!({"digest": b64(&digest), "signature": raw["signature"]})),
        )
        .await;
    assert_eq!(checked["valid"], true, "{checked}");

    issue(&server, &key_id, "Alice Inputs").await;
    let cases = [
        (
            json!({"key_id": key_id, "document_hash": b64(&[0u8; 31])}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"key_id": key_id, "document_hash": b64(&[0u8; 32]), "hash_algorithm": "sha512"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"key_id": key_id, "document_hash": b64(&[0u8; 16]), "hash_algorithm": "md5"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"key_id": key_id, "document_hash": format!("md5:{}", hex::encode([0u8; 16]))}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"key_id": key_id, "document": b64(&[7u8; 2000])}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "DOCUMENT_TOO_LARGE",
        ),
        (
            json!({"key_id": key_id, "document": "%%%"}),
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
        ),
        (
            json!({"key_id": key_id}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"key_id": key_id, "document": b64(DOC), "format": "pdf"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"key_id": key_id, "document": b64(DOC), "scheme": "pss"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        ),
        (
            json!({"key_id": "key_nope", "document": b64(DOC)}),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
    ];
    for (body, want_status, want_code) in cases {
        let (status, got) = sign_doc(&server, &signer, body.clone()).await;
        assert_error(status, &got, want_status, want_code);
        assert!(got.get("signature").is_none(), "{body}");
    }

    // Ed25519 CMS signatures need SHA-512 (RFC 8419).
    let ed = doc_key(&server, "ed", "ed25519").await;
    issue(&server, &ed, "Alice Ed").await;
    let (status, body) = sign_doc(
        &server,
        &signer,
        json!({"key_id": ed, "document": b64(DOC), "hash_algorithm": "sha256"}),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );

    // Wrong roles and wrong key purposes.
    let auditor = server.token("carol", &[Role::Auditor]);
    let (status, body) = sign_doc(
        &server,
        &auditor,
        json!({"key_id": key_id, "document": b64(DOC)}),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let raw_key = server.create_key("raw-key", "p256").await;
    let raw_id = raw_key["id"].as_str().unwrap();
    let (status, body) = sign_doc(
        &server,
        &signer,
        json!({"key_id": raw_id, "document": b64(DOC)}),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "WRONG_KEY_PURPOSE");
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/keys/{raw_id}/certificate"),
            Some(&server.admin),
            Some(json!({"subject": {"common_name": "x"}})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "WRONG_KEY_PURPOSE");
    // A document key cannot sign raw digests through /v1/keys/{id}/sign.
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/keys/{key_id}/sign"),
            Some(&signer),
            Some(json!({"digest": b64(&digest)})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "WRONG_KEY_PURPOSE");
    // Bad subjects.
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/keys/{key_id}/certificate"),
            Some(&server.admin),
            Some(json!({"subject": {"common_name": "x", "country": "Germany"}})),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );

    // Nothing above produced a signature in the audit log but the raw one.
    let auditor = server.token("carol", &[Role::Auditor]);
    let signed = server.audit("sign", &auditor).await;
    let ok: Vec<&Value> = signed.iter().filter(|r| r["outcome"] == "ok").collect();
    assert_eq!(ok.len(), 1, "{signed:?}");
}

#[tokio::test]
async fn idempotent_replay_returns_the_identical_cms() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    let key_id = doc_key(&server, "idem", "rsa-2048").await;
    issue(&server, &key_id, "Alice Idem").await;
    let body = json!({"key_id": key_id, "document": b64(DOC), "scheme": "pss"});
    let headers = [("Idempotency-Key", "doc-1")];
    let (status, first) = server
        .call_with(
            "POST",
            "/v1/documents/sign",
            Some(&signer),
            Some(body.clone()),
            &headers,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // Let the clock pass a second so that a fresh signature would have another signing time.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, again) = server
        .call_with(
            "POST",
            "/v1/documents/sign",
            Some(&signer),
            Some(body),
            &headers,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["signature"], first["signature"]);
    assert_eq!(again["request_id"], first["request_id"]);
    assert_eq!(again["signed_at"], first["signed_at"]);
}

#[tokio::test]
async fn an_imported_ca_issues_certificates_openssl_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out) = openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Imported CA/O=Example",
            "-days",
            "60",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        d,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "ca.key", "-out", "ca.p8",
        ],
    );
    assert!(ok, "{out}");
    let server = setup().await;
    let cert_pem = std::fs::read_to_string(d.join("ca.pem")).unwrap();
    let key_pem = std::fs::read_to_string(d.join("ca.p8")).unwrap();

    // A key that is not the certificate's is refused.
    let (ok, out) = openssl(d, &["genpkey", "-algorithm", "RSA", "-out", "other.key"]);
    assert!(ok, "{out}");
    let other_pem = std::fs::read_to_string(d.join("other.key")).unwrap();
    let (status, body) = server
        .call(
            "POST",
            "/v1/ca/import",
            Some(&server.admin),
            Some(json!({"certificate_pem": cert_pem, "private_key_pem": other_pem})),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "CERTIFICATE_KEY_MISMATCH",
    );
    let key_admin = server.token("kim", &[Role::KeyAdmin]);
    let (status, body) = server
        .call(
            "POST",
            "/v1/ca/import",
            Some(&key_admin),
            Some(json!({"certificate_pem": cert_pem, "private_key_pem": key_pem})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");

    let (status, ca) = server
        .call(
            "POST",
            "/v1/ca/import",
            Some(&server.admin),
            Some(json!({"certificate_pem": cert_pem, "private_key_pem": key_pem})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ca}");
    assert!(ca["subject"].as_str().unwrap().contains("Imported CA"));
    assert!(body_has_no_private_key(&ca));
    assert_eq!(ca_pem(&server).await.trim(), cert_pem.trim());

    let key_id = doc_key(&server, "under-imported", "p256").await;
    issue(&server, &key_id, "Alice Imported").await;
    let signer = server.token("alice", &[Role::Signer]);
    let (status, signed) = sign_doc(
        &server,
        &signer,
        json!({"key_id": key_id, "document": b64(DOC)}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let (ok, out) = cms_verify(d, &unb64(&signed["signature"]), DOC, &d.join("ca.pem"));
    assert!(ok, "{out}");
    // The CRL is now signed by the imported CA.
    write(d, "crl.der", &crl_der(&server).await);
    let (ok, out) = openssl(
        d,
        &[
            "crl", "-inform", "DER", "-in", "crl.der", "-CAfile", "ca.pem", "-noout",
        ],
    );
    assert!(ok && out.contains("verify OK"), "{out}");
}

fn body_has_no_private_key(v: &Value) -> bool {
    !v.to_string().contains("PRIVATE KEY")
}

#[tokio::test]
async fn a_cms_request_signed_after_approval_returns_the_signed_data_openssl_accepts() {
    use crate::policies::{bind, example_wasm, upload};
    let server = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", ca_pem(&server).await.as_bytes());
    let key_id = doc_key(&server, "needs-approval", "rsa-2048").await;
    let cert = issue(&server, &key_id, "Alice Approved").await;
    let policy = upload(
        &server,
        "doc-approval",
        &example_wasm("approval-above"),
        Value::Null,
    )
    .await;
    let settings = json!({"max_message_len": 0, "approvals": 1, "approver_roles": ["legal"]});
    let (status, body) = bind(&server, &key_id, &[(&policy, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let signer = server.token_named("alice", &["signer"]);
    let (status, pending) = sign_doc(
        &server,
        &signer,
        json!({"key_id": key_id, "document": b64(DOC), "scheme": "pss"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let id = pending["request_id"].as_str().unwrap().to_string();
    let (_, waiting) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&signer), None)
        .await;
    assert_eq!(waiting["status"], "pending_approval", "{waiting}");
    assert!(waiting.get("document").is_none(), "{waiting}");

    let approver = server.token_named("lena", &["approver", "legal"]);
    let (status, done) = server
        .call(
            "POST",
            &format!("/v1/requests/{id}/approve"),
            Some(&approver),
            Some(json!({"comment": "contract checked"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "signed", "{done}");

    // The requester reads the SignedData; each read rebuilds the same bytes.
    let (status, first) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&signer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let doc = &first["document"];
    assert_eq!(doc["format"], "cms", "{first}");
    assert_eq!(doc["algorithm"], "SHA256withRSAandMGF1");
    assert_eq!(doc["certificate_id"], cert["id"]);
    assert_eq!(doc["request_id"], id.as_str());
    let (_, again) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&signer), None)
        .await;
    assert_eq!(again["document"]["signature"], doc["signature"]);

    let sig = unb64(&doc["signature"]);
    let (ok, out) = cms_verify(dir.path(), &sig, DOC, &ca);
    assert!(ok, "openssl refused the approved SignedData: {out}");
    let mut changed = DOC.to_vec();
    changed[0] ^= 1;
    let (ok, _) = cms_verify(dir.path(), &sig, &changed, &ca);
    assert!(!ok, "a changed document verified");
}

//! The CSC API (`/csc/v1`, `/csc/v2`): credentials, SAD-bound authorization, signHash through
//! the pipeline, approvals holding the SAD back, SAD misuse, and the CSC error shape.

use keyward_server::auth::Role;
use keyward_server::keys::{EcdsaFormat, HashAlg, RsaScheme, ToSign};
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::policies::{bind, example_wasm, upload};
use crate::{TestServer, b64, setup, setup_with};

const SHA256: &str = "2.16.840.1.101.3.4.2.1";
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

/// A document key with a certificate, signable by `signers` (empty: every signer).
async fn credential(server: &TestServer, name: &str, signers: &[&str]) -> String {
    let (status, key) = server
        .call(
            "POST",
            "/v1/keys",
            Some(&server.admin),
            Some(
                json!({"name": name, "algorithm": "p256", "purpose": "document",
                        "signers": signers}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let id = key["id"].as_str().unwrap().to_string();
    let (status, cert) = server
        .call(
            "POST",
            &format!("/v1/keys/{id}/certificate"),
            Some(&server.admin),
            Some(json!({"subject": {"common_name": name}, "validity_days": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    id
}

fn digest(text: &str) -> Vec<u8> {
    HashAlg::Sha256.digest(text.as_bytes())
}

/// Asserts the CSC error shape and that no signature came back.
fn assert_csc_error(status: StatusCode, body: &Value, want: StatusCode, error: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert!(body.get("signatures").is_none(), "{body}");
    assert!(body.get("SAD").is_none(), "{body}");
    assert!(body.get("code").is_none(), "not the uniform body: {body}");
}

async fn authorize_v2(
    server: &TestServer,
    token: &str,
    key: &str,
    hashes: &[Vec<u8>],
) -> (StatusCode, Value) {
    let hashes: Vec<String> = hashes.iter().map(|h| b64(h)).collect();
    server
        .call(
            "POST",
            "/csc/v2/credentials/authorize",
            Some(token),
            Some(json!({"credentialID": key, "numSignatures": hashes.len(),
                        "hashes": hashes, "hashAlgorithmOID": SHA256})),
        )
        .await
}

async fn sign_v2(
    server: &TestServer,
    token: &str,
    key: &str,
    sad: &str,
    hashes: &[Vec<u8>],
) -> (StatusCode, Value) {
    let hashes: Vec<String> = hashes.iter().map(|h| b64(h)).collect();
    server
        .call(
            "POST",
            "/csc/v2/signatures/signHash",
            Some(token),
            Some(json!({"credentialID": key, "SAD": sad, "hashes": hashes,
                        "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256})),
        )
        .await
}

async fn verifies(server: &TestServer, key: &str, hash: &[u8], signature: &str) -> bool {
    use base64::Engine as _;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .unwrap();
    let loaded = server
        .state
        .signing()
        .keys()
        .resolve(key)
        .await
        .unwrap()
        .unwrap();
    loaded
        .meta
        .public_key
        .verify(
            &ToSign::Digest {
                hash: HashAlg::Sha256,
                digest: hash.to_vec(),
            },
            &sig,
            RsaScheme::Pkcs1v15,
            EcdsaFormat::Der,
        )
        .unwrap()
}

/// Signature records (`sign` with outcome `ok`) of a key in the audit log.
async fn signed_records(server: &TestServer, key: &str) -> usize {
    let (status, audit) = server
        .call(
            "GET",
            &format!("/v1/audit?key_id={key}&action=sign&limit=500"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "ok")
        .count()
}

#[tokio::test]
async fn v2_lists_describes_authorizes_and_signs_through_the_pipeline() {
    let server = setup().await;
    let alice = server.token("alice", &[Role::Signer]);
    let key = credential(&server, "alice-doc", &["subject:alice"]).await;

    let (status, info) = server
        .call("POST", "/csc/v2/info", None, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["specs"], "2.0.0.2");
    assert_eq!(info["authType"], json!(["oauth2code"]));
    assert_eq!(info["oauth2Issuer"], info["oauth2"]);
    assert!(info["oauth2"].as_str().unwrap().starts_with("http"));

    let (status, list) = server
        .call(
            "POST",
            "/csc/v2/credentials/list",
            Some(&alice),
            Some(json!({"credentialInfo": true, "certificates": "chain"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["credentialIDs"], json!([key]));
    assert_eq!(list["credentialInfos"][0]["credentialID"], key);

    let (status, info) = server
        .call(
            "POST",
            "/csc/v2/credentials/info",
            Some(&alice),
            Some(json!({"credentialID": key, "certificates": "chain", "certInfo": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["SCAL"], "2");
    assert_eq!(info["key"]["status"], "enabled");
    assert_eq!(info["key"]["curve"], "1.2.840.10045.3.1.7");
    assert!(
        info["key"]["algo"]
            .as_array()
            .unwrap()
            .contains(&json!(ECDSA_SHA256))
    );
    assert_eq!(info["cert"]["status"], "valid");
    assert_eq!(
        info["cert"]["certificates"].as_array().unwrap().len(),
        2,
        "end entity and CA"
    );
    assert!(
        info["cert"]["subjectDN"]
            .as_str()
            .unwrap()
            .contains("alice-doc")
    );
    assert_eq!(info["auth"]["mode"], "implicit");
    let (_, single) = server
        .call(
            "POST",
            "/csc/v2/credentials/info",
            Some(&alice),
            Some(json!({"credentialID": key})),
        )
        .await;
    assert_eq!(single["cert"]["certificates"].as_array().unwrap().len(), 1);
    assert!(single["cert"].get("subjectDN").is_none());
    let (_, none) = server
        .call(
            "POST",
            "/csc/v2/credentials/info",
            Some(&alice),
            Some(json!({"credentialID": key, "certificates": "none"})),
        )
        .await;
    assert!(none["cert"].get("certificates").is_none(), "{none}");

    let hashes = vec![digest("page one"), digest("page two")];
    let (status, auth) = authorize_v2(&server, &alice, &key, &hashes).await;
    assert_eq!(status, StatusCode::OK, "{auth}");
    assert_eq!(auth["expiresIn"], 300);
    let sad = auth["SAD"].as_str().unwrap();
    // Nothing was signed by the authorization itself.
    assert_eq!(signed_records(&server, &key).await, 0);

    let (status, signed) = sign_v2(&server, &alice, &key, sad, &hashes).await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let sigs = signed["signatures"].as_array().unwrap();
    assert_eq!(sigs.len(), 2);
    for (h, s) in hashes.iter().zip(sigs) {
        assert!(verifies(&server, &key, h, s.as_str().unwrap()).await);
    }
    assert_eq!(signed_records(&server, &key).await, 2);

    // The SAD is single-use.
    let (status, again) = sign_v2(&server, &alice, &key, sad, &hashes[..1]).await;
    assert_csc_error(status, &again, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        again["error_description"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    assert_eq!(signed_records(&server, &key).await, 2);
    keyward_server::audit::verify(server.state.signing().store())
        .await
        .unwrap();
}

#[tokio::test]
async fn credentials_list_never_shows_another_users_credentials() {
    let server = setup().await;
    let alice = server.token("alice", &[Role::Signer]);
    let bob = server.token("bob", &[Role::Signer]);
    let auditor = server.token("eve", &[Role::Auditor]);
    let a = credential(&server, "alice-cred", &["subject:alice"]).await;
    let b = credential(&server, "bob-cred", &["subject:bob"]).await;
    // A document key without a certificate is no credential; a raw key neither.
    let (status, _) = server
        .call("POST", "/v1/keys", Some(&server.admin),
              Some(json!({"name": "no-cert", "algorithm": "p256", "purpose": "document", "signers": ["subject:alice"]})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    server.create_key("raw-key", "p256").await;

    for (token, want) in [(&alice, &a), (&bob, &b)] {
        for version in ["v1", "v2"] {
            let (status, list) = server
                .call(
                    "POST",
                    &format!("/csc/{version}/credentials/list"),
                    Some(token),
                    Some(json!({})),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{list}");
            assert_eq!(list["credentialIDs"], json!([want]), "{version}");
        }
    }
    let (_, list) = server
        .call(
            "POST",
            "/csc/v1/credentials/list",
            Some(&auditor),
            Some(json!({})),
        )
        .await;
    assert_eq!(list["credentialIDs"], json!([]));
    // Bob cannot read, authorize or sign with Alice's credential: it is an unknown id to him.
    let (status, info) = server
        .call(
            "POST",
            "/csc/v1/credentials/info",
            Some(&bob),
            Some(json!({"credentialID": a})),
        )
        .await;
    assert_csc_error(status, &info, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(info.get("cert").is_none());
    let (status, auth) = authorize_v2(&server, &bob, &a, &[digest("x")]).await;
    assert_csc_error(status, &auth, StatusCode::BAD_REQUEST, "invalid_request");
    // Asking for another user's list is refused.
    let (status, other) = server
        .call(
            "POST",
            "/csc/v1/credentials/list",
            Some(&bob),
            Some(json!({"userID": "alice"})),
        )
        .await;
    assert_csc_error(status, &other, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn sad_misuse_is_refused_with_the_csc_error_and_no_signature() {
    let server = setup().await;
    let alice = server.token("alice", &[Role::Signer]);
    let mallory = server.token("mallory", &[Role::Signer]);
    let key = credential(&server, "shared-doc", &[]).await;
    let h1 = digest("contract");
    let h2 = digest("another contract");

    // Another user's SAD: refused like an unknown SAD, and the SAD stays usable.
    let (_, auth) = authorize_v2(&server, &alice, &key, std::slice::from_ref(&h1)).await;
    let sad = auth["SAD"].as_str().unwrap().to_string();
    let (status, stolen) = sign_v2(&server, &mallory, &key, &sad, std::slice::from_ref(&h1)).await;
    assert_csc_error(status, &stolen, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(stolen["error_description"], "Invalid parameter SAD");
    // A hash that is not bound to the SAD (SCAL 2).
    let (status, unbound) = sign_v2(&server, &alice, &key, &sad, std::slice::from_ref(&h2)).await;
    assert_csc_error(status, &unbound, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        unbound["error_description"]
            .as_str()
            .unwrap()
            .contains("not bound")
    );
    // More hashes than authorized.
    let (status, more) = sign_v2(&server, &alice, &key, &sad, &[h1.clone(), h2.clone()]).await;
    assert_csc_error(status, &more, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        more["error_description"]
            .as_str()
            .unwrap()
            .contains("more than")
    );
    // An unknown SAD.
    let (status, forged) = sign_v2(&server, &alice, &key, "AAAA", std::slice::from_ref(&h1)).await;
    assert_csc_error(status, &forged, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(
        signed_records(&server, &key).await,
        0,
        "no signature was made"
    );
    // After all these refusals the SAD still signs the hash it was issued for, once.
    let (status, signed) = sign_v2(&server, &alice, &key, &sad, std::slice::from_ref(&h1)).await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    assert_eq!(signed_records(&server, &key).await, 1);

    // Authorize needs the hashes (SCAL 2) and as many as numSignatures.
    let (status, no_hash) = server
        .call(
            "POST",
            "/csc/v1/credentials/authorize",
            Some(&alice),
            Some(json!({"credentialID": key, "numSignatures": 1})),
        )
        .await;
    assert_csc_error(status, &no_hash, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        no_hash["error_description"]
            .as_str()
            .unwrap()
            .contains("SCAL 2")
    );
    let (status, mismatch) = server
        .call(
            "POST",
            "/csc/v1/credentials/authorize",
            Some(&alice),
            Some(json!({"credentialID": key, "numSignatures": 2, "hash": [b64(&h1)]})),
        )
        .await;
    assert_csc_error(
        status,
        &mismatch,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    keyward_server::audit::verify(server.state.signing().store())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_sad_is_refused_and_signs_nothing() {
    // Expiry is kept in whole seconds: a SAD of `expiresIn: 1` is gone once two seconds passed.
    let server = setup_with(|c| c.csc.sad_ttl_seconds = 1).await;
    let alice = server.token("alice", &[Role::Signer]);
    let key = credential(&server, "expiring-doc", &[]).await;
    let h1 = digest("contract");
    let (_, auth) = authorize_v2(&server, &alice, &key, std::slice::from_ref(&h1)).await;
    assert_eq!(auth["expiresIn"], 1, "{auth}");
    let sad = auth["SAD"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, expired) = sign_v2(&server, &alice, &key, &sad, std::slice::from_ref(&h1)).await;
    assert_csc_error(status, &expired, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        expired["error_description"]
            .as_str()
            .unwrap()
            .contains("SAD expired"),
        "{expired}"
    );
    assert_eq!(
        signed_records(&server, &key).await,
        0,
        "no signature was made"
    );
}

#[tokio::test]
async fn concurrent_sign_hash_calls_use_a_sad_once() {
    let server = setup().await;
    let alice = server.token("alice", &[Role::Signer]);
    let key = credential(&server, "race-doc", &[]).await;
    let h = digest("race");
    let (_, auth) = authorize_v2(&server, &alice, &key, std::slice::from_ref(&h)).await;
    let sad = auth["SAD"].as_str().unwrap().to_string();
    let calls = (0..6).map(|_| sign_v2(&server, &alice, &key, &sad, std::slice::from_ref(&h)));
    let results = futures_join_all(calls).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_csc_error(*status, body, StatusCode::BAD_REQUEST, "invalid_request");
    }
    assert_eq!(signed_records(&server, &key).await, 1);
}

async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(f);
    }
    // Poll them together on this task.
    let mut outputs = Vec::new();
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = set.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for d in done {
        outputs.push(d.unwrap());
    }
    outputs
}

#[tokio::test]
async fn approval_holds_the_sad_back_until_approvers_complete_it() {
    let server = setup().await;
    let alice = server.token("alice", &[Role::Signer]);
    let key = credential(&server, "approved-doc", &[]).await;
    let policy = upload(
        &server,
        "csc-approval",
        &example_wasm("approval-above"),
        Value::Null,
    )
    .await;
    let settings = json!({"max_message_len": 0, "digests": true, "approvals": 2,
                          "approver_roles": ["treasury"], "ttl_seconds": 600});
    let (status, body) = bind(&server, &key, &[(&policy, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let h = digest("board resolution");

    let (status, pending) = authorize_v2(&server, &alice, &key, std::slice::from_ref(&h)).await;
    assert_csc_error(
        status,
        &pending,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    );
    let description = pending["error_description"].as_str().unwrap();
    let (status, requests) = server
        .call(
            "GET",
            "/v1/requests?status=pending_approval",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{requests}");
    let request_id = requests["items"][0]["id"].as_str().unwrap().to_string();
    assert!(description.contains(&request_id), "{description}");

    let check = || {
        server.call(
            "POST",
            "/csc/v2/credentials/authorizeCheck",
            Some(&alice),
            Some(json!({"credentialID": key})),
        )
    };
    let (status, waiting) = check().await;
    assert_csc_error(
        status,
        &waiting,
        StatusCode::BAD_REQUEST,
        "authorization_pending",
    );

    // The requester cannot approve; two approvers can. Approval itself signs nothing.
    for who in ["bob", "carol"] {
        let approver = server.token_named(who, &["approver", "treasury"]);
        let (status, voted) = server
            .call(
                "POST",
                &format!("/v1/requests/{request_id}/approve"),
                Some(&approver),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{voted}");
        if who == "bob" {
            let (status, still) = check().await;
            assert_csc_error(
                status,
                &still,
                StatusCode::BAD_REQUEST,
                "authorization_pending",
            );
        }
    }
    let (_, request) = server
        .call(
            "GET",
            &format!("/v1/requests/{request_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(request["status"], "approved", "{request}");
    assert!(
        request.get("signature").is_none() && request["result"].is_null(),
        "{request}"
    );
    assert_eq!(signed_records(&server, &key).await, 0);

    let (status, auth) = check().await;
    assert_eq!(status, StatusCode::OK, "{auth}");
    let sad = auth["SAD"].as_str().unwrap().to_string();
    // The SAD is issued once.
    let (status, twice) = check().await;
    assert_csc_error(status, &twice, StatusCode::BAD_REQUEST, "invalid_request");

    let (status, signed) = sign_v2(&server, &alice, &key, &sad, std::slice::from_ref(&h)).await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let sig = signed["signatures"][0].as_str().unwrap();
    assert!(verifies(&server, &key, &h, sig).await);
    let (_, request) = server
        .call(
            "GET",
            &format!("/v1/requests/{request_id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(request["status"], "signed", "{request}");
    assert_eq!(signed_records(&server, &key).await, 1);
    let (status, reuse) = sign_v2(&server, &alice, &key, &sad, std::slice::from_ref(&h)).await;
    assert_csc_error(status, &reuse, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(signed_records(&server, &key).await, 1);
    keyward_server::audit::verify(server.state.signing().store())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rejected_authorization_never_gives_a_sad() {
    let server = setup().await;
    let alice = server.token("alice", &[Role::Signer]);
    let key = credential(&server, "rejected-doc", &[]).await;
    let policy = upload(
        &server,
        "csc-approval-r",
        &example_wasm("approval-above"),
        Value::Null,
    )
    .await;
    let settings = json!({"max_message_len": 0, "digests": true, "approvals": 1,
                          "approver_roles": ["treasury"]});
    bind(&server, &key, &[(&policy, settings)]).await;
    let (status, _) = authorize_v2(&server, &alice, &key, &[digest("no")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, requests) = server.call("GET", "/v1/requests", Some(&alice), None).await;
    let id = requests["items"][0]["id"].as_str().unwrap().to_string();
    let bob = server.token_named("bob", &["approver", "treasury"]);
    let (status, _) = server
        .call(
            "POST",
            &format!("/v1/requests/{id}/reject"),
            Some(&bob),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = server
        .call(
            "POST",
            "/csc/v1/credentials/authorizeCheck",
            Some(&alice),
            Some(json!({"credentialID": key})),
        )
        .await;
    assert_csc_error(status, &refused, StatusCode::FORBIDDEN, "access_denied");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("rejected")
    );
    assert_eq!(signed_records(&server, &key).await, 0);
}

#[tokio::test]
async fn a_policy_denial_is_an_access_denied_with_the_reason() {
    let server = setup().await;
    let alice = server.token("alice", &[Role::Signer]);
    let key = credential(&server, "gated-doc", &[]).await;
    let policy = upload(&server, "csc-gate", &example_wasm("role-gate"), Value::Null).await;
    bind(&server, &key, &[(&policy, json!({"roles": ["legal"]}))]).await;
    let (status, denied) = authorize_v2(&server, &alice, &key, &[digest("memo")]).await;
    assert_csc_error(status, &denied, StatusCode::FORBIDDEN, "access_denied");
    assert!(
        denied["error_description"]
            .as_str()
            .unwrap()
            .contains("legal"),
        "{denied}"
    );
    let legal = server.token_named("lena", &["signer", "legal"]);
    let (status, ok) = authorize_v2(&server, &legal, &key, &[digest("memo")]).await;
    assert_eq!(status, StatusCode::OK, "{ok}");
}

#[tokio::test]
async fn csc_errors_use_the_csc_shape_everywhere_under_csc() {
    let server = setup().await;
    let alice = server.token("alice", &[Role::Signer]);
    let key = credential(&server, "shape-doc", &[]).await;
    // No token, a bad token.
    let (status, body) = server
        .call("POST", "/csc/v1/credentials/list", None, Some(json!({})))
        .await;
    assert_csc_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_token");
    let (status, body) = server
        .call(
            "POST",
            "/csc/v2/credentials/list",
            Some("not-a-jwt"),
            Some(json!({})),
        )
        .await;
    assert_csc_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_token");
    // Unknown method, wrong HTTP method, malformed body, missing field.
    let (status, body) = server
        .call(
            "POST",
            "/csc/v2/signatures/timestamp",
            Some(&alice),
            Some(json!({})),
        )
        .await;
    assert_csc_error(status, &body, StatusCode::NOT_FOUND, "invalid_request");
    let (status, body) = server.call("GET", "/csc/v1/info", None, None).await;
    assert_csc_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
    );
    let (status, body) = server
        .call(
            "POST",
            "/csc/v1/signatures/signHash",
            Some(&alice),
            Some(json!({"credentialID": key})),
        )
        .await;
    assert_csc_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        body["error_description"].as_str().unwrap().contains("SAD"),
        "{body}"
    );
    // Signature algorithm of another key type.
    let (_, auth) = authorize_v2(&server, &alice, &key, &[digest("a")]).await;
    let (status, body) = server
        .call(
            "POST",
            "/csc/v1/signatures/signHash",
            Some(&alice),
            Some(
                json!({"credentialID": key, "SAD": auth["SAD"], "hash": [b64(&digest("a"))],
                          "signAlgo": "1.2.840.113549.1.1.11"}),
            ),
        )
        .await;
    assert_csc_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    // The rest of the API keeps the uniform body.
    let (status, body) = server.call("GET", "/v1/nothing-here", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "NOT_FOUND");
}

#[tokio::test]
async fn v1_shapes_authorize_by_hash_length_and_sign() {
    let server = setup().await;
    let alice = server.token("alice", &[Role::Signer]);
    let key = credential(&server, "v1-doc", &[]).await;
    let (_, info) = server.call("POST", "/csc/v1/info", None, None).await;
    assert_eq!(info["specs"], "1.0.4.0");
    let (status, cred) = server
        .call(
            "POST",
            "/csc/v1/credentials/info",
            Some(&alice),
            Some(json!({"credentialID": key, "certificates": "chain", "certInfo": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cred}");
    assert_eq!(cred["authMode"], "implicit");
    assert_eq!(cred["SCAL"], "2");
    assert_eq!(cred["multisign"], 16);
    assert!(cred["cert"]["validTo"].as_str().unwrap().ends_with('Z'));
    let h = digest("v1 document");
    let (status, auth) = server
        .call(
            "POST",
            "/csc/v1/credentials/authorize",
            Some(&alice),
            Some(json!({"credentialID": key, "numSignatures": 1, "hash": [b64(&h)]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{auth}");
    let (status, signed) = server
        .call(
            "POST",
            "/csc/v1/signatures/signHash",
            Some(&alice),
            Some(
                json!({"credentialID": key, "SAD": auth["SAD"], "hash": [b64(&h)],
                          "hashAlgo": SHA256, "signAlgo": "1.2.840.10045.2.1"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    assert!(verifies(&server, &key, &h, signed["signatures"][0].as_str().unwrap()).await);
}

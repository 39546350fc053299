//! Approvals with the real binary: a pending request survives SIGKILL and is approved after.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keyward_e2e::{Keyward, b64, example_policy, openssl, unb64};
use serde_json::json;

#[tokio::test]
async fn a_pending_request_survives_sigkill_and_is_signed_after_approval() {
    let dir = tempfile::tempdir().unwrap();
    let mut kw = Keyward::dev(dir.path());
    let admin = kw.admin().to_string();
    let (s, key) = kw
        .call(
            "POST",
            "/v1/keys",
            Some(&admin),
            Some(&json!({"name": "treasury", "algorithm": "p256"})),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    let key_id = key["id"].as_str().unwrap().to_string();
    let (s, policy) = kw
        .call(
            "POST",
            "/v1/policies",
            Some(&admin),
            Some(&json!({"name": "approval-above", "version": "1.0.0", "module": b64(&example_policy("approval-above"))})),
        )
        .await;
    assert_eq!(s, 201, "{policy}");
    let settings = json!({"max_message_len": 0, "approvals": 2, "approver_roles": ["treasury"]});
    let (s, bound) = kw
        .call(
            "PUT",
            &format!("/v1/keys/{key_id}/policies"),
            Some(&admin),
            Some(&json!({"policies": [{"policy_id": policy["id"], "settings": settings}]})),
        )
        .await;
    assert_eq!(s, 200, "{bound}");

    let alice = kw.token("alice", &["signer"]);
    let message = b"wire 250000 EUR";
    let (s, pending) = kw
        .call(
            "POST",
            &format!("/v1/keys/{key_id}/sign"),
            Some(&alice),
            Some(&json!({"message": b64(message)})),
        )
        .await;
    assert_eq!(s, 202, "{pending}");
    let id = pending["request_id"].as_str().unwrap().to_string();
    let bob = kw.token("bob", &["approver", "treasury"]);
    let (s, after_one) = kw
        .call(
            "POST",
            &format!("/v1/requests/{id}/approve"),
            Some(&bob),
            Some(&json!({})),
        )
        .await;
    assert_eq!(
        (s, after_one["status"].as_str()),
        (200, Some("pending_approval")),
        "{after_one}"
    );

    kw.kill();
    let kw = Keyward::dev(dir.path());
    let (s, still) = kw
        .call("GET", &format!("/v1/requests/{id}"), Some(&alice), None)
        .await;
    assert_eq!(
        (s, still["status"].as_str()),
        (200, Some("pending_approval")),
        "{still}"
    );
    assert_eq!(
        still["votes"].as_array().unwrap().len(),
        1,
        "bob's vote survived"
    );

    let carol = kw.token("carol", &["approver", "treasury"]);
    let (s, done) = kw
        .call(
            "POST",
            &format!("/v1/requests/{id}/approve"),
            Some(&carol),
            Some(&json!({})),
        )
        .await;
    assert_eq!(
        (s, done["status"].as_str()),
        (200, Some("signed")),
        "{done}"
    );

    // openssl accepts the signature made after the restart.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("pub.pem"),
        key["public_key"]["pem"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(work.path().join("msg"), message).unwrap();
    std::fs::write(
        work.path().join("sig"),
        unb64(done["result"]["signature"].as_str().unwrap()),
    )
    .unwrap();
    let (ok, out) = openssl(
        work.path(),
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig",
            "msg",
        ],
    );
    assert!(ok, "{out}");
    drop(kw);
    let (ok, out, _) = keyward_e2e::run_keyward(&[
        "audit",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
}

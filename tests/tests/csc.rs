//! The CSC API with the real binary and an independent CSC client: pyHanko (Python) signs a
//! PDF through `/csc/v1` and validates it against Keyward's CA; SAD misuse is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use keyward_e2e::{Keyward, b64, workspace_root};
use serde_json::{Value, json};
use sha2::Digest as _;

/// A p256 document key with an internal certificate, signable by `subject` only.
async fn credential(kw: &Keyward, name: &str, subject: &str) -> String {
    let admin = kw.admin().to_string();
    let (s, key) = kw
        .call(
            "POST",
            "/v1/keys",
            Some(&admin),
            Some(
                &json!({"name": name.replace(' ', "-"), "algorithm": "p256", "purpose": "document",
                         "signers": [format!("subject:{subject}")]}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    let id = key["id"].as_str().unwrap().to_string();
    let (s, cert) = kw
        .call(
            "POST",
            &format!("/v1/keys/{id}/certificate"),
            Some(&admin),
            Some(&json!({"subject": {"common_name": name}, "validity_days": 30})),
        )
        .await;
    assert_eq!(s, 201, "{cert}");
    id
}

/// Runs `examples/csc_sign_pdf.py` (needs `pip install -r tests/py/requirements.txt`).
fn pyhanko(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new("python3")
        .arg(workspace_root().join("examples/csc_sign_pdf.py"))
        .args(args)
        .output()
        .expect("python3 runs (scripts/test installs tests/py/requirements.txt)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (out.status.success(), json, stderr)
}

async fn audit(kw: &Keyward, query: &str) -> Vec<Value> {
    let admin = kw.admin().to_string();
    let (s, body) = kw
        .call(
            "GET",
            &format!("/v1/audit?{query}&limit=500"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn pyhanko_signs_a_pdf_through_csc_v1_and_it_validates_against_keywards_ca() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let alice_key = credential(&kw, "Alice Example", "alice").await;
    // Bob's credential must not show up for Alice (the script wants exactly one).
    credential(&kw, "Bob Example", "bob").await;
    let alice = kw.token("alice", &["signer"]);

    let pdf = dir.path().join("signed.pdf");
    let pdf = pdf.to_str().unwrap();
    let (ok, signed, err) = pyhanko(&["sign", "--url", &kw.url, "--token", &alice, "--out", pdf]);
    assert!(ok, "pyHanko signing failed: {err}");
    assert_eq!(signed["credential_id"], alice_key.as_str());
    assert_eq!(signed["scal2"], true);
    assert!(signed["signer"].as_str().unwrap().contains("Alice Example"));

    let (ok, valid, err) = pyhanko(&["validate", "--url", &kw.url, "--pdf", pdf]);
    assert!(ok, "pyHanko validation failed: {valid} {err}");
    assert_eq!(valid["intact"], true);
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["trusted"], true, "chains to Keyward's CA");

    // A changed byte in the signed document breaks it.
    let bytes = std::fs::read(pdf).unwrap();
    let needle = b"Keyward CSC)";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("page text");
    let mut tampered = bytes.clone();
    tampered[at + needle.len() - 2] = b'X';
    let bad = dir.path().join("tampered.pdf");
    std::fs::write(&bad, tampered).unwrap();
    let (ok, invalid, _) = pyhanko(&["validate", "--url", &kw.url, "--pdf", bad.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(invalid["intact"], false, "{invalid}");

    // The signature went through the pipeline: one authorization, one audited signature.
    let authorized = audit(&kw, &format!("key_id={alice_key}&action=csc.authorize")).await;
    assert_eq!(authorized.len(), 1);
    assert_eq!(authorized[0]["outcome"], "issued");
    let signs: Vec<Value> = audit(&kw, &format!("key_id={alice_key}&action=sign"))
        .await
        .into_iter()
        .filter(|r| r["outcome"] == "ok")
        .collect();
    assert_eq!(signs.len(), 1);
    assert_eq!(signs[0]["details"]["operation"], "csc.signHash");
    assert_eq!(signs[0]["actor"]["subject"], "alice");
}

#[tokio::test]
async fn sad_reuse_expiry_and_foreign_use_are_refused_by_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev_with_env(dir.path(), &[("KEYWARD_CSC__SAD_TTL_SECONDS", "2")]);
    let key = credential(&kw, "Carol Example", "carol").await;
    let carol = kw.token("carol", &["signer"]);
    let dave = kw.token("dave", &["signer"]);
    let hash = sha2::Sha256::digest(b"invoice 42").to_vec();

    let authorize = || async {
        let (s, auth) = kw
            .call(
                "POST",
                "/csc/v1/credentials/authorize",
                Some(&carol),
                Some(&json!({"credentialID": key, "numSignatures": 1, "hash": [b64(&hash)]})),
            )
            .await;
        assert_eq!(s, 200, "{auth}");
        assert_eq!(auth["expiresIn"], 2);
        auth["SAD"].as_str().unwrap().to_string()
    };
    let sign = |token: String, sad: String| {
        let kw = &kw;
        let body = json!({"credentialID": key, "SAD": sad, "hash": [b64(&hash)],
                          "signAlgo": "1.2.840.10045.4.3.2"});
        async move {
            kw.call(
                "POST",
                "/csc/v1/signatures/signHash",
                Some(&token),
                Some(&body),
            )
            .await
        }
    };
    let refused = |s: u16, body: &Value, what: &str| {
        assert_eq!(s, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_request", "{what}: {body}");
        assert!(body.get("signatures").is_none(), "{what}: {body}");
    };

    let sad = authorize().await;
    // Dave cannot use Carol's SAD (nor see her credential).
    let (s, body) = sign(dave.clone(), sad.clone()).await;
    refused(s, &body, "another user's SAD");
    let (s, ok) = sign(carol.clone(), sad.clone()).await;
    assert_eq!(s, 200, "{ok}");
    assert_eq!(ok["signatures"].as_array().unwrap().len(), 1);
    let (s, body) = sign(carol.clone(), sad).await;
    refused(s, &body, "reuse");

    let sad = authorize().await;
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (s, body) = sign(carol.clone(), sad).await;
    refused(s, &body, "expired");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    let signs = audit(&kw, &format!("key_id={key}&action=sign"))
        .await
        .into_iter()
        .filter(|r| r["outcome"] == "ok")
        .count();
    assert_eq!(signs, 1, "only the one good signHash signed");
    drop(kw);
    let (ok, out, _) = keyward_e2e::run_keyward(&[
        "audit",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
}

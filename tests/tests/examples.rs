//! The runnable examples of `examples/`, each against the real `keyward dev`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use keyward_e2e::{Keyward, keyward_bin, workspace_root};

fn walkthrough(kw: &Keyward, token: &str) -> (bool, String, String) {
    let out = Command::new("bash")
        .arg(workspace_root().join("examples/walkthrough.sh"))
        .env("KEYWARD_URL", &kw.url)
        .env("KEYWARD_TOKEN", token)
        .env("KEYWARD_DATA_DIR", &kw.data_dir)
        .env("KEYWARD_BIN", keyward_bin())
        .current_dir(&kw.data_dir)
        .output()
        .expect("run bash");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_curl_walkthrough_runs_against_keyward_dev() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let (ok, out, err) = walkthrough(&kw, kw.admin());
    assert!(ok, "{out}\n{err}");
    for step in [
        "1. create a P-256 key",
        "(the retry returned the same one)",
        "Verified OK",
        r#""action":"sign","outcome":"ok""#,
        "chain intact",
    ] {
        assert!(out.contains(step), "missing {step:?}:\n{out}\n{err}");
    }
    // One signature, though the message was sent twice.
    let (status, audit) = kw
        .call("GET", "/v1/audit?action=sign", Some(kw.admin()), None)
        .await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");

    // With a token the server refuses, it stops at the first step and says why.
    let (ok, out, err) = walkthrough(&kw, "not-a-token");
    assert!(!ok, "{out}");
    assert!(
        err.contains("401") || out.contains("UNAUTHENTICATED"),
        "{out}\n{err}"
    );
    assert!(!out.contains("2. sign"), "{out}");
}

fn sign_document(kw: &Keyward, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("python3")
        .arg(workspace_root().join("examples/sign_document.py"))
        .args(args)
        .env("KEYWARD_URL", &kw.url)
        .env("KEYWARD_TOKEN", token)
        .output()
        .expect("run python3");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_python_document_client_signs_what_openssl_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let doc = dir.path().join("contract.pdf");
    std::fs::write(&doc, b"%PDF-1.7 a contract of 1 page").unwrap();
    let doc_arg = doc.to_str().unwrap();
    let (ok, out, err) = sign_document(&kw, kw.admin(), &[doc_arg, "--create", "Example Signer"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("as CN=Example Signer"), "{out}");
    let key = out
        .split("with key ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let verify = |content: &std::path::Path| {
        Command::new("openssl")
            .args([
                "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any", "-in",
            ])
            .arg(dir.path().join("contract.pdf.p7s"))
            .arg("-content")
            .arg(content)
            .arg("-CAfile")
            .arg(dir.path().join("contract.pdf.ca.pem"))
            .args(["-out", "/dev/null"])
            .output()
            .unwrap()
    };
    let checked = verify(&doc);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(String::from_utf8_lossy(&checked.stderr).contains("Verification successful"));
    // Another document does not verify under it.
    let other = dir.path().join("other.pdf");
    std::fs::write(&other, b"%PDF-1.7 a different contract").unwrap();
    assert!(!verify(&other).status.success());

    // Signing again with the key it made; then a refusal is reported, not a traceback.
    let (ok, out, err) = sign_document(&kw, kw.admin(), &[doc_arg, "--key", &key]);
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = sign_document(&kw, kw.admin(), &[doc_arg, "--key", "key_missing"]);
    assert!(!ok, "{out}");
    assert!(err.contains("keyward: 404 NOT_FOUND"), "{err}");
    assert!(!err.contains("Traceback"), "{err}");
}

//! The runnable examples of `examples/`, each against the real `keyward dev`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use keyward_e2e::{Keyward, keyward_bin, run_to_end, workspace_root};

fn walkthrough(kw: &Keyward, token: &str) -> (bool, String, String) {
    run_to_end(
        Command::new("bash")
            .arg(workspace_root().join("examples/walkthrough.sh"))
            .env("KEYWARD_URL", &kw.url)
            .env("KEYWARD_TOKEN", token)
            .env("KEYWARD_DATA_DIR", &kw.data_dir)
            .env("KEYWARD_BIN", keyward_bin())
            .current_dir(&kw.data_dir),
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
    run_to_end(
        Command::new("python3")
            .arg(workspace_root().join("examples/sign_document.py"))
            .args(args)
            .env("KEYWARD_URL", &kw.url)
            .env("KEYWARD_TOKEN", token),
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

const ETH_TO: &str = "0x3535353535353535353535353535353535353535";

/// Runs examples/ethers-wallet/wallet.mjs with the ethers that tests/js installs.
fn wallet(
    kw: &Keyward,
    scratch: &std::path::Path,
    token: &str,
    args: &[&str],
) -> (bool, String, String) {
    let dir = scratch.join("ethers-wallet");
    if !dir.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            workspace_root().join("examples/ethers-wallet/wallet.mjs"),
            dir.join("wallet.mjs"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            keyward_e2e::js_dir().join("node_modules"),
            dir.join("node_modules"),
        )
        .unwrap();
    }
    run_to_end(
        Command::new("node")
            .arg("wallet.mjs")
            .args(args)
            .current_dir(&dir)
            .env("KEYWARD_URL", &kw.url)
            .env("KEYWARD_TOKEN", token),
    )
}

#[tokio::test]
async fn the_ethers_wallet_backend_signs_payments_through_the_rpc_signer() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Keyward::dev(dir.path());
    let wallet_id = kw.import_wallet("backend", keyward_e2e::ABANDON).await;
    let account = kw
        .derive_account(
            &wallet_id,
            serde_json::json!({"chain": "ethereum", "index": 0}),
        )
        .await;
    let address = account["account"]["address"]
        .as_str()
        .unwrap()
        .to_lowercase();
    let key = account["key"]["id"].as_str().unwrap().to_string();
    let backend = kw.token("payments-backend", &["signer"]);

    let (ok, out, err) = wallet(&kw, dir.path(), &backend, &["accounts"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.to_lowercase().contains(&address), "{out}");
    let (ok, out, err) = wallet(
        &kw,
        dir.path(),
        &backend,
        &["pay", ETH_TO, "0.01", "--nonce", "7"],
    );
    assert!(ok, "{out}\n{err}");
    let paid: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(paid["from"].as_str().unwrap().to_lowercase(), address);
    assert_eq!(paid["to"].as_str().unwrap().to_lowercase(), ETH_TO);
    assert_eq!(paid["value_wei"], "10000000000000000");
    assert_eq!(paid["chain_id"], "11155111");
    assert!(paid["raw"].as_str().unwrap().starts_with("0x02"), "{paid}");

    // With an allowlist bound that lacks the recipient, the payment is refused with the reason.
    let admin = kw.admin().to_string();
    let module = keyward_e2e::b64(&keyward_e2e::example_policy("eth-allowlist"));
    let (s, policy) = kw
        .call(
            "POST",
            "/v1/policies",
            Some(&admin),
            Some(&serde_json::json!({"name": "eth-allowlist", "version": "1", "module": module})),
        )
        .await;
    assert_eq!(s, 201, "{policy}");
    let only = "0x4545454545454545454545454545454545454545";
    let bindings = serde_json::json!({"policies": [{"policy_id": policy["id"], "settings": {"recipients": [only]}}]});
    let (s, b) = kw
        .call(
            "PUT",
            &format!("/v1/keys/{key}/policies"),
            Some(&admin),
            Some(&bindings),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (ok, out, err) = wallet(&kw, dir.path(), &backend, &["pay", ETH_TO, "0.01"]);
    assert!(!ok, "{out}");
    assert!(out.is_empty(), "no signed transaction: {out}");
    assert!(err.starts_with("keyward: "), "{err}");
    assert!(
        err.to_lowercase().contains("allowlist") || err.contains("denied"),
        "{err}"
    );
}

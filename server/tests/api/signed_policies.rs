//! Signed policy modules: with `[policy] trusted_signers` an upload needs a detached Ed25519
//! signature by one of the keys, made by `keyward policy sign` or by openssl from the
//! documented message; everything else is refused and nothing is stored. Bindings check the
//! stored signature against the signers configured at the time; built-in policies need none.

use std::path::{Path, PathBuf};
use std::process::Command;

use keyward_server::config::Config;
use keyward_server::policy::signature::{TrustedSigner, TrustedSigners};
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::policies::{bind, constant_policy, example_wasm};
use crate::{TestServer, assert_error, b64, setup_with, start};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn keyward(args: &[&str]) -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_keyward")).args(args));
    String::from_utf8(out).unwrap().trim().to_string()
}

/// An Ed25519 key: (private key file, public key as configured).
struct Signer {
    key: PathBuf,
    public: String,
}

/// A key made by openssl; its public key as the PEM openssl prints.
fn openssl_signer(dir: &Path, name: &str) -> Signer {
    let key = dir.join(format!("{name}.pem"));
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key));
    let public = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key));
    Signer {
        key,
        public: String::from_utf8(public).unwrap(),
    }
}

/// A key made by `keyward policy keygen`; its public key as the line it prints.
fn keyward_signer(dir: &Path, name: &str) -> Signer {
    let key = dir.join(format!("{name}.pem"));
    let public = keyward(&["policy", "keygen", "--out", key.to_str().unwrap()]);
    Signer { key, public }
}

/// `module` signed with `keyward policy sign`.
fn keyward_sign(dir: &Path, signer: &Signer, module: &[u8]) -> String {
    let file = dir.join("module.wasm");
    std::fs::write(&file, module).unwrap();
    keyward(&[
        "policy",
        "sign",
        "--key",
        signer.key.to_str().unwrap(),
        file.to_str().unwrap(),
        "--out",
        "-",
    ])
}

/// `message` signed by openssl (pure Ed25519 over the raw bytes), standard base64.
fn openssl_sign(dir: &Path, signer: &Signer, message: &[u8]) -> String {
    let file = dir.join("message.bin");
    std::fs::write(&file, message).unwrap();
    let sig = run(Command::new("openssl")
        .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
        .arg(&signer.key)
        .arg("-in")
        .arg(&file));
    b64(&sig)
}

/// The documented signed message: the domain, then the module's SHA-256.
fn documented_message(dir: &Path, module: &[u8]) -> Vec<u8> {
    let file = dir.join("digest-me.wasm");
    std::fs::write(&file, module).unwrap();
    let digest = run(Command::new("openssl")
        .args(["dgst", "-sha256", "-binary"])
        .arg(&file));
    [b"keyward policy module v1\0".as_slice(), &digest].concat()
}

fn trusting(config: &mut Config, signers: &[(Option<&str>, &Signer)]) {
    config.policy.trusted_signers = TrustedSigners::new(
        signers
            .iter()
            .map(|(name, s)| TrustedSigner::parse(name.map(str::to_string), &s.public).unwrap())
            .collect(),
    );
}

/// The server started again on the same data, trusting `signers`.
async fn restart(
    server: TestServer,
    config: &Config,
    signers: &[(Option<&str>, &Signer)],
) -> TestServer {
    let dir = server.dir;
    drop(server.state);
    let mut config = config.clone();
    trusting(&mut config, signers);
    start(config, dir).await
}

async fn upload(
    server: &TestServer,
    version: &str,
    module: &[u8],
    signature: Option<&str>,
) -> (StatusCode, Value) {
    let admin = server.token("pol-admin", &[keyward_server::auth::Role::PolicyAdmin]);
    let mut body = json!({"name": "gate", "version": version, "module": b64(module)});
    if let Some(s) = signature {
        body["signature"] = json!(s);
    }
    server
        .call("POST", "/v1/policies", Some(&admin), Some(body))
        .await
}

async fn stored(server: &TestServer) -> i64 {
    server
        .scalar("SELECT COUNT(*) FROM policies WHERE name = 'gate'")
        .await
}

/// The public key as the server records it (base64 of the DER, whatever form was configured).
fn recorded(signer: &Signer) -> String {
    TrustedSigner::parse(None, &signer.public)
        .unwrap()
        .public_key
}

#[tokio::test]
async fn only_modules_signed_by_a_trusted_key_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let alice = openssl_signer(dir.path(), "alice");
    let bob = keyward_signer(dir.path(), "bob");
    let stranger = keyward_signer(dir.path(), "stranger");
    let server = setup_with(|c| trusting(c, &[(Some("alice"), &alice), (None, &bob)])).await;
    let module = example_wasm("role-gate");
    let auditor = server.token("auditor", &[keyward_server::auth::Role::Auditor]);
    let uploads_before = server.audit("policy.upload", &auditor).await.len();

    // Refusals: no signature, a stranger's, another module's, the bare digest without the
    // domain, and signatures that are not 64 bytes of base64. Nothing is stored or audited.
    let (status, body) = upload(&server, "1", &module, None).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "POLICY_SIGNATURE_REQUIRED",
    );
    assert!(body.get("id").is_none(), "{body}");
    let theirs = keyward_sign(dir.path(), &stranger, &module);
    let (status, body) = upload(&server, "1", &module, Some(&theirs)).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "POLICY_SIGNATURE_INVALID",
    );
    let other = keyward_sign(
        dir.path(),
        &bob,
        &constant_policy(r#"{"decision":"allow"}"#),
    );
    let (status, body) = upload(&server, "1", &module, Some(&other)).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "POLICY_SIGNATURE_INVALID",
    );
    let message = documented_message(dir.path(), &module);
    let bare = openssl_sign(dir.path(), &alice, &message[message.len() - 32..]);
    let (status, body) = upload(&server, "1", &module, Some(&bare)).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "POLICY_SIGNATURE_INVALID",
    );
    for malformed in ["not base64!", &b64(&[1; 63]), &b64(&[1; 65]), ""] {
        let (status, body) = upload(&server, "1", &module, Some(malformed)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
    assert_eq!(stored(&server).await, 0);
    assert_eq!(
        server.audit("policy.upload", &auditor).await.len(),
        uploads_before
    );

    // Alice signs with openssl from the documented message; bob with `keyward policy sign`.
    let by_alice = openssl_sign(dir.path(), &alice, &message);
    let (status, created) = upload(&server, "1", &module, Some(&by_alice)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["signed_by"],
        json!({"public_key": recorded(&alice), "name": "alice", "signature": by_alice})
    );
    let by_bob = keyward_sign(dir.path(), &bob, &module);
    // What `keyward policy sign` wrote verifies with openssl over the documented message.
    let sig_file = dir.path().join("bob.sig");
    std::fs::write(&sig_file, base64_decode(&by_bob)).unwrap();
    let pub_file = dir.path().join("bob.pub.pem");
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&bob.key)
        .arg("-out")
        .arg(&pub_file));
    std::fs::write(dir.path().join("message.bin"), &message).unwrap();
    run(Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
        .arg(&pub_file)
        .arg("-sigfile")
        .arg(&sig_file)
        .arg("-in")
        .arg(dir.path().join("message.bin")));
    let (status, second) = upload(&server, "2", &module, Some(&by_bob)).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["signed_by"]["public_key"], bob.public.as_str());
    assert_eq!(second["signed_by"]["name"], Value::Null);
    assert_eq!(stored(&server).await, 2);

    // The signer is shown with the policy and recorded in the audit.
    let id = created["id"].as_str().unwrap();
    let (status, got) = server
        .call("GET", &format!("/v1/policies/{id}"), Some(&auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["signed_by"], created["signed_by"]);
    let uploads = server.audit("policy.upload", &auditor).await;
    let entry = uploads
        .iter()
        .find(|e| e["details"]["policy_id"] == id)
        .expect("audited upload");
    assert_eq!(
        entry["details"]["signer"],
        json!({"public_key": recorded(&alice), "name": "alice"})
    );

    // A signed module binds, and the binding's audit names its signer; so does the built-in
    // allow-all, which needs no signature.
    let key = server.create_key("k", "ed25519").await;
    let key = key["id"].as_str().unwrap();
    let (status, page) = server
        .call("GET", "/v1/policies?limit=500", Some(&auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let builtin = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["version"] == keyward_server::policy::builtin::BUILTIN_VERSION)
        .expect("built-in allow-all");
    assert_eq!(builtin["signed_by"], Value::Null);
    let builtin = builtin["id"].as_str().unwrap();
    let settings = json!({"roles": ["treasury"]});
    let (status, body) = bind(&server, key, &[(builtin, Value::Null), (id, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let binds = server.audit("key.policies", &auditor).await;
    let last = binds
        .iter()
        .find(|e| e["key_id"] == key)
        .expect("audited binding");
    let policies = last["details"]["policies"].as_array().unwrap();
    assert_eq!(policies[0]["signer"], Value::Null);
    assert_eq!(policies[1]["signer"]["name"], "alice");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

#[tokio::test]
async fn bindings_need_a_signature_the_signers_configured_now_accept() {
    let keys = tempfile::tempdir().unwrap();
    let alice = keyward_signer(keys.path(), "alice");
    let bob = keyward_signer(keys.path(), "bob");
    let module = constant_policy(r#"{"decision":"allow"}"#);

    // Without signers a signature is neither needed nor recorded.
    let mut config = None;
    let server = setup_with(|c| config = Some(c.clone())).await;
    let config = config.unwrap();
    let (status, unsigned) = upload(&server, "unsigned", &module, None).await;
    assert_eq!(status, StatusCode::CREATED, "{unsigned}");
    assert_eq!(unsigned["signed_by"], Value::Null);
    let ignored = keyward_sign(keys.path(), &bob, &module);
    let (status, body) = upload(&server, "ignored", &module, Some(&ignored)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["signed_by"], Value::Null);
    let unsigned = unsigned["id"].as_str().unwrap().to_string();
    let key = server.create_key("k", "ed25519").await;
    let key = key["id"].as_str().unwrap().to_string();
    let (status, body) = bind(&server, &key, &[(&unsigned, Value::Null)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Restarted with alice as the only signer: the unsigned module no longer binds, and the
    // binding made before stays (and is named at start).
    let server = restart(server, &config, &[(Some("alice"), &alice)]).await;
    let (status, body) = bind(&server, &key, &[(&unsigned, json!({}))]).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "POLICY_SIGNATURE_REQUIRED",
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&format!("policies[0] ({unsigned})")),
        "{body}"
    );
    let policies = server.state.signing().policy().trusted_signers().clone();
    let named = keyward_server::lifecycle::policies::unvouched_bound(
        server.state.signing().store(),
        &policies,
    )
    .await
    .unwrap();
    assert_eq!(
        named
            .iter()
            .map(|(p, n)| (p.id.clone(), *n))
            .collect::<Vec<_>>(),
        [(unsigned.clone(), 1)]
    );
    let (status, bound) = server
        .call(
            "GET",
            &format!("/v1/keys/{key}/policies"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bound}");
    assert_eq!(bound["policies"][0]["policy_id"], unsigned.as_str());
    assert_eq!(bound["policies"][0]["settings"], Value::Null);

    let by_alice = keyward_sign(keys.path(), &alice, &module);
    let (status, signed) = upload(&server, "signed", &module, Some(&by_alice)).await;
    assert_eq!(status, StatusCode::CREATED, "{signed}");
    let signed = signed["id"].as_str().unwrap().to_string();
    let (status, body) = bind(&server, &key, &[(&signed, Value::Null)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Restarted with bob instead: alice's module no longer binds; with both it does again.
    let server = restart(server, &config, &[(None, &bob)]).await;
    let (status, body) = bind(&server, &key, &[(&signed, Value::Null)]).await;
    assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "POLICY_SIGNATURE_INVALID",
    );
    let server = restart(server, &config, &[(None, &bob), (Some("alice"), &alice)]).await;
    let (status, body) = bind(&server, &key, &[(&signed, Value::Null)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

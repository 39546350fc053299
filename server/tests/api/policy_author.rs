//! The author flow of `policy-sdk/README.md`, as written: `keyward policy new`, `cargo test`,
//! build for wasm32, `keyward policy test`, upload, bind, see it deny; and `policy new` far from
//! the checkout, with the SDK the binary carries.

use std::path::Path;
use std::process::Command;

use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::policies::{bind, upload};
use crate::{assert_error, b64, setup};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn the_readme_author_flow_works() {
    let dir = tempfile::tempdir().unwrap();
    let keyward = env!("CARGO_BIN_EXE_keyward");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // A shared target dir keeps reruns fast and leaves the main one unlocked.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/policy-author");

    // 1. Create.
    let out = run(Command::new(keyward)
        .args(["policy", "new", "hourly-cap"])
        .current_dir(dir.path()));
    assert!(out.contains("created"), "{out}");
    let krate = dir.path().join("hourly-cap");
    // 2. Test natively.
    run(Command::new(&cargo)
        .arg("test")
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target));
    // 3. Build for wasm32.
    run(Command::new(&cargo)
        .args(["build", "--target", "wasm32-unknown-unknown", "--release"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target));
    let wasm = target.join("wasm32-unknown-unknown/release/hourly_cap.wasm");
    // 4. Run it the way the server does.
    let out = run(Command::new(keyward)
        .args(["policy", "test"])
        .arg(&wasm)
        .arg("input.json")
        .current_dir(&krate));
    assert!(
        out.contains(
            r#"decision: {"decision":"deny","reason":"this key reached its hourly limit"}"#
        ),
        "{out}"
    );
    assert!(
        out.contains("fuel: ")
            && out.contains("time: ")
            && out.contains("log: hourly limit reached"),
        "{out}"
    );
    let settings = krate.join("ok.json");
    std::fs::write(&settings, r#"{"max_per_hour": 50}"#).unwrap();
    let out = run(Command::new(keyward)
        .args(["policy", "test"])
        .arg(&wasm)
        .arg("input.json")
        .arg("--settings")
        .arg(&settings)
        .current_dir(&krate));
    assert!(out.contains(r#"decision: {"decision":"allow"}"#), "{out}");

    // 5. Upload, 6. bind, 7. see it deny.
    let server = setup().await;
    let module = std::fs::read(&wasm).unwrap();
    let id = upload(&server, "hourly-cap", &module, Value::Null).await;
    let key = server.create_key("payments", "ed25519").await;
    let kid = key["id"].as_str().unwrap();
    let (status, body) = bind(&server, kid, &[(&id, json!({"max_per_hour": 0}))]).await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
    let (status, body) = bind(&server, kid, &[(&id, json!({"max_per_hour": 1}))]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let signer = server.token("alice", &[Role::Signer]);
    let path = format!("/v1/keys/{kid}/sign");
    let sig = json!({"message": b64(b"hello")});
    let (status, body) = server
        .call("POST", &path, Some(&signer), Some(sig.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.call("POST", &path, Some(&signer), Some(sig)).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "POLICY_DENIED");
    assert_eq!(
        body["details"]["policy"]["trace"][0]["policy"],
        "hourly-cap"
    );
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path, base: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, base, out);
        } else {
            out.push(path.strip_prefix(base).unwrap().to_path_buf());
        }
    }
}

#[test]
fn policy_new_needs_no_checkout() {
    // Far from the checkout: the system temp dir, with the binary run from there.
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("keyward-author-")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    assert!(!dir.path().canonicalize().unwrap().starts_with(&checkout));
    let keyward = env!("CARGO_BIN_EXE_keyward");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Its own target dir: the README flow builds an SDK of the same name and version from
    // the checkout, and cargo would take one build of it for the other.
    let target = checkout.join("target/policy-author-bundled");

    let out = run(Command::new(keyward)
        .args(["policy", "new", "far-policy"])
        .current_dir(dir.path()));
    assert!(out.contains("created"), "{out}");
    let krate = dir.path().join("far-policy");
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"keyward-policy-sdk = { path = "keyward-policy-sdk" }"#),
        "{manifest}"
    );
    // The SDK was written beside the crate, and nothing names this machine's checkout.
    let mut files = Vec::new();
    files_under(&krate, &krate, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f == Path::new("keyward-policy-sdk/src/testing/ethereum.rs")),
        "{files:?}"
    );
    let needle = checkout.display().to_string();
    for rel in &files {
        let text = std::fs::read_to_string(krate.join(rel)).unwrap();
        assert!(!text.contains(&needle), "{} names {needle}", rel.display());
        assert!(!text.contains("../policy-sdk"), "{}", rel.display());
    }

    // Its tests pass and it builds for wasm32, from the registry cache only.
    let out = run(Command::new(&cargo)
        .args(["test", "--offline"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target));
    assert!(!out.contains("FAILED"), "{out}");
    run(Command::new(&cargo)
        .args([
            "build",
            "--offline",
            "--target",
            "wasm32-unknown-unknown",
            "--release",
        ])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target));
    let wasm =
        std::fs::read(target.join("wasm32-unknown-unknown/release/far_policy.wasm")).unwrap();
    assert_eq!(&wasm[..4], b"\0asm");
    // The module runs the way the server runs it.
    let out = run(Command::new(keyward)
        .args(["policy", "test"])
        .arg(target.join("wasm32-unknown-unknown/release/far_policy.wasm"))
        .arg("input.json")
        .current_dir(&krate));
    assert!(out.contains(r#""decision":"deny""#), "{out}");
}

//! The PKCS#11 backend, black-box, against a real SoftHSM2 token made by each test in a
//! temporary directory: generation on the token, signatures checked by openssl, the token
//! asked directly that private keys stay inside, adoption of a key made by `pkcs11-tool`,
//! a wrong PIN, the token vanishing and coming back, policies, audit and idempotency.
//!
//! Needs `softhsm2` and `opensc` (`apt-get install -y softhsm2 opensc`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use keyward_e2e::{JwksIssuer, Keyward, assert_error, b64, client, keyward_bin, openssl, unb64};
use serde_json::{Value, json};
use sha2::Digest as _;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "4921-user";
const LABEL: &str = "keyward-test";

/// A SoftHSM2 configuration and token directory of one test.
struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    fn new() -> Self {
        assert!(
            Path::new(MODULE).exists(),
            "{MODULE} is missing: apt-get install -y softhsm2 opensc"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let hsm = SoftHsm { dir };
        let out = hsm.run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                LABEL,
                "--pin",
                PIN,
                "--so-pin",
                "7733-so",
            ],
        );
        assert!(out.0, "softhsm2-util: {}", out.1);
        hsm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// Runs a tool with this token's configuration; (success, stdout + stderr).
    fn run(&self, tool: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(tool)
            .args(args)
            .env("SOFTHSM2_CONF", self.conf())
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e} (apt-get install -y softhsm2 opensc)"));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// What the token itself says about each private key (see `src/bin/p11probe.rs`).
    fn probe(&self) -> Vec<Value> {
        let (ok, out) = self.run(env!("CARGO_BIN_EXE_p11probe"), &[MODULE, LABEL, PIN]);
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap()
    }

    /// The `[[keys.pkcs11]]` entry as one environment value, PIN from `HSM_TEST_PIN`.
    fn env_entry(&self) -> String {
        format!(
            r#"[{{name = "hsm", module = "{MODULE}", token_label = "{LABEL}", pin_env = "HSM_TEST_PIN", max_sessions = 4}}]"#
        )
    }

    /// A dev server with this token as backend `hsm`.
    fn dev(&self, data: &Path) -> Keyward {
        let conf = self.conf();
        let entry = self.env_entry();
        Keyward::dev_with_env(
            data,
            &[
                ("SOFTHSM2_CONF", conf.to_str().unwrap()),
                ("HSM_TEST_PIN", PIN),
                ("KEYWARD_KEYS__PKCS11", &entry),
            ],
        )
    }
}

async fn create(kw: &Keyward, body: Value) -> (u16, Value) {
    kw.call("POST", "/v1/keys", Some(kw.admin()), Some(&body))
        .await
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
        let opt = if prehashed { "-pkeyopt" } else { "-sigopt" };
        if prehashed {
            args.extend(["-pkeyopt", "digest:sha256"]);
        }
        if scheme == "pss" {
            args.extend([opt, "rsa_padding_mode:pss", opt, "rsa_pss_saltlen:digest"]);
        }
    }
    if alg != "ed25519" && !prehashed {
        args.push("in.bin");
    }
    openssl(dir, &args).0
}

/// Signs `message` (and its SHA-256 digest) every way the key allows; openssl checks each.
async fn sign_and_verify_everything(kw: &Keyward, signer: &str, key: &Value, work: &Path) {
    let alg = key["algorithm"].as_str().unwrap();
    let id = key["id"].as_str().unwrap();
    std::fs::write(
        work.join("pub.pem"),
        key["public_key"]["pem"].as_str().unwrap(),
    )
    .unwrap();
    let message = format!("Keyward HSM message for {alg}").into_bytes();
    let digest = sha2::Sha256::digest(&message).to_vec();
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
            let (status, signed) = sign(kw, id, signer, body).await;
            assert_eq!(status, 200, "{alg} {scheme}: {signed}");
            let sig = unb64(signed["signature"].as_str().unwrap());
            let input = if prehashed { &digest } else { &message };
            assert!(
                openssl_verifies(work, alg, scheme, prehashed, input, &sig),
                "openssl rejected {alg} {scheme} prehashed={prehashed}"
            );
            let mut flipped = sig.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0x01;
            assert!(
                !openssl_verifies(work, alg, scheme, prehashed, input, &flipped),
                "openssl accepted a flipped bit for {alg} {scheme}"
            );
        }
    }
    if alg == "secp256k1" {
        // Raw r||s, low-S, and a recovery id that recovers this key.
        use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
        use pkcs8::DecodePublicKey;
        let vk =
            VerifyingKey::from_public_key_pem(key["public_key"]["pem"].as_str().unwrap()).unwrap();
        for _ in 0..4 {
            let (status, signed) = sign(
                kw,
                id,
                signer,
                json!({"digest": b64(&digest), "format": "raw"}),
            )
            .await;
            assert_eq!(status, 200, "{signed}");
            let sig = Signature::from_slice(&unb64(signed["signature"].as_str().unwrap())).unwrap();
            assert!(sig.normalize_s() == sig, "high-S signature from the token");
            let recid =
                RecoveryId::from_byte(signed["recovery_id"].as_u64().unwrap() as u8).unwrap();
            let recovered = VerifyingKey::recover_from_prehash(&digest, &sig, recid).unwrap();
            assert_eq!(recovered, vk);
        }
    }
}

#[tokio::test]
async fn every_algorithm_generated_on_the_token_signs_for_openssl_and_never_leaves_it() {
    let hsm = SoftHsm::new();
    let data = tempfile::tempdir().unwrap();
    let kw = hsm.dev(data.path());
    let (s, ready) = kw.call("GET", "/health/ready", None, None).await;
    assert_eq!(s, 200, "{ready}");
    assert_eq!(ready["checks"]["backend:hsm"], "ok");
    let signer = kw.token("app", &["signer"]);
    let work = tempfile::tempdir().unwrap();
    let mut labels = Vec::new();
    for alg in [
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
        "p256",
        "secp256k1",
        "ed25519",
    ] {
        let (s, key) = create(
            &kw,
            json!({"name": format!("hsm-{alg}"), "algorithm": alg, "backend": "hsm"}),
        )
        .await;
        assert_eq!(s, 201, "{alg}: {key}");
        assert_eq!(key["backend"], "hsm");
        labels.push((alg, key["id"].as_str().unwrap().to_string()));
        sign_and_verify_everything(&kw, &signer, &key, work.path()).await;
    }
    // The token, asked directly, refuses every private value and flags every key as
    // sensitive, non-extractable, sign-only token objects.
    let probed = hsm.probe();
    assert_eq!(probed.len(), labels.len(), "{probed:?}");
    for (alg, label) in &labels {
        let entry = probed
            .iter()
            .find(|e| e["label"] == label.as_str())
            .unwrap_or_else(|| panic!("{alg} key {label} not on the token: {probed:?}"));
        let secret = if alg.starts_with("rsa") {
            "private_exponent"
        } else {
            "value"
        };
        assert_eq!(entry[secret], "sensitive", "{alg}: {entry}");
        assert_eq!(entry["values_returned"], 0, "{alg}: {entry}");
        assert_eq!(entry["sensitive"], true, "{alg}: {entry}");
        assert_eq!(entry["extractable"], false, "{alg}: {entry}");
        assert_eq!(entry["never_extractable"], true, "{alg}: {entry}");
        assert_eq!(entry["token"], true, "{alg}: {entry}");
        assert_eq!(entry["private"], true, "{alg}: {entry}");
        assert_eq!(entry["sign"], true, "{alg}: {entry}");
        assert_eq!(entry["decrypt"], false, "{alg}: {entry}");
    }
    // The database holds a reference (label and CKA_ID), not key material.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        data.path().join("keyward.db").display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT id, material FROM keys WHERE backend = 'hsm'")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(rows.len(), labels.len());
    for (id, material) in rows {
        let m: Value = serde_json::from_slice(&material).unwrap();
        assert_eq!(m["label"], id.as_str());
        assert_eq!(hex::decode(m["id"].as_str().unwrap()).unwrap().len(), 16);
    }
    // An unknown backend is refused before anything is generated.
    let (s, b) = create(
        &kw,
        json!({"name": "nowhere", "algorithm": "p256", "backend": "nope"}),
    )
    .await;
    assert_error(s, &b, 422, "INVALID_REQUEST");
}

#[tokio::test]
async fn a_key_made_by_pkcs11_tool_is_adopted_by_label_or_id_and_signs() {
    let hsm = SoftHsm::new();
    for (key_type, label, id) in [
        ("EC:prime256v1", "outside-p256", "a1"),
        ("RSA:2048", "outside-rsa", "a2"),
        ("EC:secp256k1", "outside-k1", "a3"),
    ] {
        let (ok, out) = hsm.run(
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                LABEL,
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                key_type,
                "--label",
                label,
                "--id",
                id,
            ],
        );
        assert!(ok, "pkcs11-tool: {out}");
    }
    // A key the token would let out (extractable) is refused when adopted.
    let (ok, out) = hsm.run(
        "pkcs11-tool",
        &[
            "--module",
            MODULE,
            "--token-label",
            LABEL,
            "--login",
            "--pin",
            PIN,
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "leaky",
            "--id",
            "a4",
            "--extractable",
        ],
    );
    assert!(ok, "pkcs11-tool: {out}");
    let data = tempfile::tempdir().unwrap();
    let kw = hsm.dev(data.path());
    let signer = kw.token("app", &["signer"]);
    let work = tempfile::tempdir().unwrap();

    // Admins see the token and its objects; others do not.
    let (s, slots) = kw
        .call("GET", "/v1/hsm/backends/hsm/slots", Some(kw.admin()), None)
        .await;
    assert_eq!(s, 200, "{slots}");
    assert!(
        slots
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["token_label"] == LABEL && s["configured"] == true),
        "{slots}"
    );
    let (s, objects) = kw
        .call(
            "GET",
            "/v1/hsm/backends/hsm/objects",
            Some(kw.admin()),
            None,
        )
        .await;
    assert_eq!(s, 200, "{objects}");
    let private: Vec<&Value> = objects
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["class"] == "private_key")
        .collect();
    assert_eq!(private.len(), 4, "{objects}");
    assert!(
        private
            .iter()
            .any(|o| o["label"] == "leaky" && o["extractable"] == true),
        "{objects}"
    );
    assert!(
        private
            .iter()
            .any(|o| o["label"] == "outside-p256" && o["algorithm"] == "p256" && o["id"] == "a1")
    );
    let key_admin = kw.token("ops", &["key-admin"]);
    let (s, b) = kw
        .call(
            "GET",
            "/v1/hsm/backends/hsm/objects",
            Some(&key_admin),
            None,
        )
        .await;
    assert_error(s, &b, 403, "FORBIDDEN");
    let (s, b) = kw
        .call("GET", "/v1/hsm/backends/nope/slots", Some(kw.admin()), None)
        .await;
    assert_error(s, &b, 404, "NOT_FOUND");

    let adopt = |body: Value| {
        let kw = &kw;
        async move {
            kw.call("POST", "/v1/keys/adopt", Some(kw.admin()), Some(&body))
                .await
        }
    };
    let (s, key) =
        adopt(json!({"name": "adopted-p256", "backend": "hsm", "token_label": "outside-p256"}))
            .await;
    assert_eq!(s, 201, "{key}");
    assert_eq!(key["algorithm"], "p256");
    assert_eq!(key["backend"], "hsm");
    sign_and_verify_everything(&kw, &signer, &key, work.path()).await;

    let (s, key) =
        adopt(json!({"name": "adopted-rsa", "backend": "hsm", "token_label": "outside-rsa"})).await;
    assert_eq!(s, 201, "{key}");
    assert_eq!(key["algorithm"], "rsa-2048");
    sign_and_verify_everything(&kw, &signer, &key, work.path()).await;

    let (s, key) = adopt(json!({"name": "adopted-k1", "backend": "hsm", "token_id": "a3"})).await;
    assert_eq!(s, 201, "{key}");
    assert_eq!(key["algorithm"], "secp256k1");
    sign_and_verify_everything(&kw, &signer, &key, work.path()).await;

    // Refusals: no such key, both selectors, an unknown backend, a signer adopting.
    let (s, b) = adopt(json!({"name": "x0", "backend": "hsm", "token_label": "leaky"})).await;
    assert_error(s, &b, 422, "INVALID_REQUEST");
    assert!(
        b["message"].as_str().unwrap().contains("extractable"),
        "{b}"
    );
    let (s, b) = adopt(json!({"name": "x1", "backend": "hsm", "token_label": "missing"})).await;
    assert_error(s, &b, 422, "INVALID_REQUEST");
    assert!(b["message"].as_str().unwrap().contains("missing"), "{b}");
    let (s, b) = adopt(
        json!({"name": "x2", "backend": "hsm", "token_label": "outside-rsa", "token_id": "a2"}),
    )
    .await;
    assert_error(s, &b, 422, "INVALID_REQUEST");
    let (s, b) =
        adopt(json!({"name": "x3", "backend": "nope", "token_label": "outside-rsa"})).await;
    assert_error(s, &b, 404, "NOT_FOUND");
    let (s, b) = kw
        .call(
            "POST",
            "/v1/keys/adopt",
            Some(&signer),
            Some(&json!({"name": "x4", "backend": "hsm", "token_label": "outside-rsa"})),
        )
        .await;
    assert_error(s, &b, 403, "FORBIDDEN");
    // The adoption is in the audit log.
    let auditor = kw.token("aud", &["auditor"]);
    let (s, audit) = kw
        .call("GET", "/v1/audit?action=key.adopt", Some(&auditor), None)
        .await;
    assert_eq!(s, 200, "{audit}");
    assert_eq!(audit["items"].as_array().unwrap().len(), 3, "{audit}");
}

/// Starts `keyward serve` with stdout and stderr going to files; returns the base URL.
fn serve_logged(config: &Path, log: &Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let mut cmd = Command::new(keyward_bin());
    cmd.args(["serve", "--config", config.to_str().unwrap()])
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .env("KEYWARD_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    for _ in 0..600 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(url) = text.lines().find_map(|l| l.strip_prefix("listening: ")) {
            return (child, url.trim().to_string());
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("keyward exited with {status}: {text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!(
        "keyward did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A production-style config (static JWKS issuer, deny by default) using the token.
struct Production {
    dir: tempfile::TempDir,
    issuer: JwksIssuer,
}

impl Production {
    fn new(hsm: &SoftHsm, pin_in_file: &str, default_decision: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let issuer = JwksIssuer::new(work, "https://idp.example.test");
        std::fs::write(work.join("hsm.pin"), format!("{pin_in_file}\n")).unwrap();
        let _ = hsm;
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
[storage]
data_dir = "{data}"
[keys]
[[keys.pkcs11]]
name = "hsm"
module = "{MODULE}"
token_label = "{LABEL}"
pin_file = "hsm.pin"
max_sessions = 4
[auth]
[[auth.issuers]]
issuer = "https://idp.example.test"
audiences = ["keyward"]
jwks_file = "jwks.json"
algorithms = ["ES256"]
[policy]
default_decision = "{default_decision}"
"#,
            data = work.join("data").display()
        );
        std::fs::write(work.join("keyward.toml"), config).unwrap();
        Production { dir, issuer }
    }

    fn mint(&self, sub: &str, roles: &[&str]) -> String {
        self.issuer.token(sub, roles)
    }

    fn serve(&self, hsm: &SoftHsm) -> Keyward {
        let work = self.dir.path();
        let kek = "cd".repeat(32);
        Keyward::serve(
            &work.join("keyward.toml"),
            &work.join("data"),
            &[
                ("KEYWARD_KEK", &kek),
                ("SOFTHSM2_CONF", hsm.conf().to_str().unwrap()),
            ],
        )
    }
}

async fn http(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), url)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn a_wrong_pin_leaves_the_backend_not_ready_the_server_up_and_the_pin_unprinted() {
    let hsm = SoftHsm::new();
    let wrong = "9731-not-the-pin";
    let prod = Production::new(&hsm, wrong, "allow");
    let work = prod.dir.path();
    let log = work.join("keyward.log");
    let kek = "cd".repeat(32);
    let (mut child, url) = serve_logged(
        &work.join("keyward.toml"),
        &log,
        &[
            ("KEYWARD_KEK", &kek),
            ("SOFTHSM2_CONF", hsm.conf().to_str().unwrap()),
        ],
    );
    let admin = prod.mint("ops", &["admin"]);
    let signer = prod.mint("app", &["signer"]);
    let ready = client()
        .get(format!("{url}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let ready: Value = ready.json().await.unwrap();
    let check = ready["checks"]["backend:hsm"].as_str().unwrap();
    assert!(check.contains("refused the user PIN"), "{ready}");
    assert!(
        check.contains("hsm.pin"),
        "names where the PIN came from: {ready}"
    );
    assert_eq!(ready["checks"]["backend:software"], "ok");
    // HSM keys cannot be made, and nothing falls back to a software key.
    let (s, b) = http(
        "POST",
        &format!("{url}/v1/keys"),
        &admin,
        Some(json!({"name": "h", "algorithm": "p256", "backend": "hsm"})),
    )
    .await;
    assert_error(s, &b, 503, "BACKEND_UNAVAILABLE");
    let (s, b) = http("GET", &format!("{url}/v1/keys"), &admin, None).await;
    assert_eq!(s, 200);
    assert_eq!(b["items"].as_array().unwrap().len(), 0, "{b}");
    // Software keys still work.
    let (s, key) = http(
        "POST",
        &format!("{url}/v1/keys"),
        &admin,
        Some(json!({"name": "soft", "algorithm": "ed25519"})),
    )
    .await;
    assert_eq!(s, 201, "{key}");
    let (s, signed) = http(
        "POST",
        &format!("{url}/v1/keys/{}/sign", key["id"].as_str().unwrap()),
        &signer,
        Some(json!({"message": b64(b"still serving")})),
    )
    .await;
    assert_eq!(s, 200, "{signed}");
    // No retry loop on a refused PIN (it would lock a real token): still not ready, still up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ready = client()
        .get(format!("{url}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let _ = child.kill();
    let _ = child.wait();
    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains("refused the user PIN") && text.contains("CKR_PIN_INCORRECT"),
        "the log explains: {text}"
    );
    let login_failures = text
        .lines()
        .filter(|l| l.contains("keys::pkcs11::pool") && l.contains("refused the user PIN"))
        .count();
    assert_eq!(login_failures, 1, "one login attempt only: {text}");
    assert!(!text.contains(wrong), "the PIN was printed: {text}");
    assert!(!text.contains(PIN));
    assert!(!ready_text(&ready_body(&url).await).contains(wrong));
}

async fn ready_body(url: &str) -> Value {
    match client().get(format!("{url}/health/ready")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn ready_text(v: &Value) -> String {
    v.to_string()
}

#[tokio::test]
async fn token_files_vanishing_give_503_and_no_signature_then_signing_recovers() {
    let hsm = SoftHsm::new();
    let data = tempfile::tempdir().unwrap();
    let kw = hsm.dev(data.path());
    let signer = kw.token("app", &["signer"]);
    let (s, key) = create(
        &kw,
        json!({"name": "k", "algorithm": "p256", "backend": "hsm"}),
    )
    .await;
    assert_eq!(s, 201, "{key}");
    let id = key["id"].as_str().unwrap();
    let body = json!({"digest": b64(&[7u8; 32])});
    let (s, b) = sign(&kw, id, &signer, body.clone()).await;
    assert_eq!(s, 200, "{b}");

    let away = hsm.dir.path().join("tokens.away");
    std::fs::rename(hsm.tokens(), &away).unwrap();
    std::fs::create_dir(hsm.tokens()).unwrap();
    // Readiness notices before anyone signs.
    let (s, ready) = kw.call("GET", "/health/ready", None, None).await;
    assert_eq!(s, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable");
    for _ in 0..3 {
        let (s, b) = sign(&kw, id, &signer, body.clone()).await;
        assert_error(s, &b, 503, "BACKEND_UNAVAILABLE");
    }
    let (s, ready) = kw.call("GET", "/health/ready", None, None).await;
    assert_eq!(s, 503, "{ready}");
    assert_ne!(ready["checks"]["backend:hsm"], "ok");
    // Software keys are unaffected, and an HSM key never falls back to one.
    let (s, soft) = create(&kw, json!({"name": "soft", "algorithm": "p256"})).await;
    assert_eq!(s, 201, "{soft}");
    let (s, b) = sign(&kw, soft["id"].as_str().unwrap(), &signer, body.clone()).await;
    assert_eq!(s, 200, "{b}");

    std::fs::remove_dir(hsm.tokens()).unwrap();
    std::fs::rename(&away, hsm.tokens()).unwrap();
    let mut recovered = None;
    for _ in 0..100 {
        let (s, b) = sign(&kw, id, &signer, body.clone()).await;
        if s == 200 {
            recovered = Some(b);
            break;
        }
        assert_error(s, &b, 503, "BACKEND_UNAVAILABLE");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let signed = recovered.expect("signing recovered after the token came back");
    std::fs::write(
        data.path().join("pub.pem"),
        key["public_key"]["pem"].as_str().unwrap(),
    )
    .unwrap();
    assert!(openssl_verifies(
        data.path(),
        "p256",
        "default",
        true,
        &[7u8; 32],
        &unb64(signed["signature"].as_str().unwrap())
    ));
    let (s, ready) = kw.call("GET", "/health/ready", None, None).await;
    assert_eq!(s, 200, "{ready}");
    // The failures are in the audit log as failed requests.
    let auditor = kw.token("aud", &["auditor"]);
    let (_, audit) = kw
        .call(
            "GET",
            &format!("/v1/audit?key_id={id}&action=sign"),
            Some(&auditor),
            None,
        )
        .await;
    let outcomes: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.iter().filter(|o| **o == "ok").count() >= 2,
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().filter(|o| **o != "ok").count() >= 3,
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn policies_audit_and_idempotency_apply_to_hsm_keys_as_to_software_keys() {
    let hsm = SoftHsm::new();
    // Deny by default: HSM keys are refused and every refusal is audited.
    let prod = Production::new(&hsm, PIN, "deny");
    let kw = prod.serve(&hsm);
    let admin = prod.mint("ops", &["key-admin", "auditor"]);
    let signer = prod.mint("app", &["signer"]);
    let (s, key) = kw
        .call(
            "POST",
            "/v1/keys",
            Some(&admin),
            Some(&json!({"name": "k", "algorithm": "rsa-2048", "backend": "hsm"})),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    let id = key["id"].as_str().unwrap();
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
    assert_eq!(items.len(), 3, "{audit}");
    assert!(
        items
            .iter()
            .all(|r| r["outcome"] == "denied" && r["actor"]["subject"] == "app")
    );
    drop(kw);

    // Idempotency: the same key and body replay the same signature (ECDSA on the token is
    // randomized, so a second signature would differ); another body is refused.
    let data = tempfile::tempdir().unwrap();
    let kw = hsm.dev(data.path());
    let signer = kw.token("app", &["signer"]);
    let (s, key) = create(
        &kw,
        json!({"name": "k", "algorithm": "p256", "backend": "hsm"}),
    )
    .await;
    assert_eq!(s, 201, "{key}");
    let id = key["id"].as_str().unwrap();
    let path = format!("/v1/keys/{id}/sign");
    let body = json!({"message": b64(b"pay 5")});
    let headers = [("Idempotency-Key", "order-77")];
    let (s1, first) = kw
        .call_with("POST", &path, Some(&signer), Some(&body), &headers)
        .await;
    assert_eq!(s1, 200, "{first}");
    let (s2, second) = kw
        .call_with("POST", &path, Some(&signer), Some(&body), &headers)
        .await;
    assert_eq!(s2, 200, "{second}");
    assert_eq!(first["signature"], second["signature"]);
    assert_eq!(first["request_id"], second["request_id"]);
    let (s3, third) = kw.call("POST", &path, Some(&signer), Some(&body)).await;
    assert_eq!(s3, 200);
    assert_ne!(first["signature"], third["signature"]);
    let (s, b) = kw
        .call_with(
            "POST",
            &path,
            Some(&signer),
            Some(&json!({"message": b64(b"pay 500")})),
            &headers,
        )
        .await;
    assert_error(s, &b, 422, "IDEMPOTENCY_KEY_REUSED");
    let auditor = kw.token("aud", &["auditor"]);
    let (_, audit) = kw
        .call(
            "GET",
            &format!("/v1/audit?key_id={id}&action=sign"),
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["outcome"] == "ok")
            .count(),
        2,
        "one signature per distinct request: {audit}"
    );
}

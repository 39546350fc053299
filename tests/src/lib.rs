//! Black-box test harness: builds the real `keyward` binary once, starts it on a free
//! loopback port in a temporary data directory, and talks to it over HTTP.
//! Everything it starts is stopped when the handle is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The mnemonic of the BIP-39, BIP-44 and BIP-84 test vectors.
pub const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

/// `tests/js`, with every package of its `package.json` installed from the lockfile
/// (`npm ci`) on first use when one is missing.
pub fn js_dir() -> PathBuf {
    let dir = workspace_root().join("tests").join("js");
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let manifest: Value = serde_json::from_slice(
            &std::fs::read(dir.join("package.json")).expect("read tests/js/package.json"),
        )
        .expect("tests/js/package.json is JSON");
        let missing = manifest["dependencies"]
            .as_object()
            .expect("tests/js/package.json has dependencies")
            .keys()
            .any(|name| !dir.join("node_modules").join(name).exists());
        if missing {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("run npm ci (Node.js and npm are needed)");
            assert!(status.success(), "npm ci in tests/js failed");
        }
    });
    dir
}

/// Runs `node tests/js/<script> <mode> <input file>` with `input` written as JSON under
/// `scratch`, and returns what the script printed as JSON. Panics with its stderr on failure.
pub fn node_json(script: &str, mode: &str, scratch: &Path, input: Value) -> Value {
    let stem = script.trim_end_matches(".mjs");
    let file = scratch.join(format!("{stem}-{mode}.json"));
    std::fs::write(&file, input.to_string()).expect("write the script input");
    let out = Command::new("node")
        .args([script, mode])
        .arg(&file)
        .current_dir(js_dir())
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{script} {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("script output is JSON")
}

/// Path of the `keyward` binary, built on first use with the same profile as the tests
/// (`E2E_KEYWARD_BIN` names another build to test instead, e.g. an earlier release).
pub fn keyward_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("E2E_KEYWARD_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "keyward-server", "--bin", "keyward"])
            .current_dir(workspace_root())
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building keyward failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace_root().join("target"));
        let bin = target.join("debug").join("keyward");
        assert!(bin.exists(), "{} missing", bin.display());
        bin
    })
}

/// Runs `cmd` to completion; returns (exit success, stdout, stderr).
pub fn run_to_end(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `keyward` with `args` to completion; returns (exit success, stdout, stderr).
pub fn run_keyward(args: &[&str]) -> (bool, String, String) {
    run_to_end(Command::new(keyward_bin()).args(args))
}

/// Runs `scripts/pg-cluster COMMAND DIR ARGS...`, which must succeed; returns its stdout.
pub fn pg_cluster(command: &str, dir: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run_to_end(
        Command::new(workspace_root().join("scripts/pg-cluster"))
            .arg(command)
            .arg(dir)
            .args(args),
    );
    assert!(ok, "pg-cluster {command}: {err}");
    out
}

/// A throwaway PostgreSQL cluster (scripts/pg-cluster), removed when dropped.
pub struct PgCluster {
    /// Its directory.
    pub dir: PathBuf,
    /// The URL of its database.
    pub url: String,
}

impl PgCluster {
    /// Starts a cluster in `parent/pg`.
    pub fn start(parent: &Path) -> Self {
        let dir = parent.join("pg");
        let url = pg_cluster("start", &dir, &[]).trim().to_string();
        PgCluster { dir, url }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("scripts/pg-cluster"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// A running `keyward` process.
pub struct Keyward {
    child: Option<Child>,
    /// Base URL, e.g. `http://127.0.0.1:43121`.
    pub url: String,
    /// The admin token printed by `keyward dev` (absent for `serve`).
    pub admin_token: Option<String>,
    /// Every stdout line printed before the server was ready.
    pub banner: Vec<String>,
    /// The data directory.
    pub data_dir: PathBuf,
}

impl Keyward {
    /// `keyward dev --data-dir DIR --listen 127.0.0.1:0`.
    pub fn dev(data_dir: &Path) -> Self {
        Self::dev_with_env(data_dir, &[])
    }

    /// `keyward dev` with extra environment variables.
    pub fn dev_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let dir = data_dir.to_str().unwrap();
        Self::spawn(
            &["dev", "--data-dir", dir, "--listen", "127.0.0.1:0"],
            env,
            "admin token: ",
            data_dir,
        )
    }

    /// `keyward serve --config FILE`.
    pub fn serve(config: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(
            &["serve", "--config", config.to_str().unwrap()],
            env,
            "listening: ",
            data_dir,
        )
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], ready: &str, data_dir: &Path) -> Self {
        let mut cmd = Command::new(keyward_bin());
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("KEYWARD_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn keyward");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, erx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = etx.send(line);
            }
        });
        let mut banner = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    let done = line.starts_with(ready);
                    banner.push(line);
                    if done {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let errors: Vec<String> = erx.try_iter().collect();
                    panic!(
                        "keyward {args:?} did not become ready; stdout {banner:?}; stderr {errors:?}"
                    );
                }
            }
        }
        let url = banner
            .iter()
            .find_map(|l| l.strip_prefix("listening: "))
            .expect("listening line")
            .to_string();
        let admin_token = banner
            .iter()
            .find_map(|l| l.strip_prefix("admin token: "))
            .map(str::to_string);
        Keyward {
            child: Some(child),
            url,
            admin_token,
            banner,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The admin token (dev servers only).
    pub fn admin(&self) -> &str {
        self.admin_token.as_deref().expect("admin token")
    }

    /// Mints a token with `keyward token` from this data directory.
    pub fn token(&self, subject: &str, roles: &[&str]) -> String {
        let dir = self.data_dir.to_str().unwrap();
        let mut args = vec!["token", "--data-dir", dir, "--subject", subject];
        for r in roles {
            args.push("--role");
            args.push(r);
        }
        let (ok, out, err) = run_keyward(&args);
        assert!(ok, "keyward token failed: {err}");
        out.trim().to_string()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Imports `mnemonic` as the wallet `name` (as the admin) and returns the wallet's id.
    pub async fn import_wallet(&self, name: &str, mnemonic: &str) -> String {
        let body = serde_json::json!({"name": name, "mnemonic": mnemonic});
        let (status, wallet) = self
            .call("POST", "/v1/wallets", Some(self.admin()), Some(&body))
            .await;
        assert_eq!(status, 201, "{wallet}");
        wallet["wallet"]["id"]
            .as_str()
            .expect("wallet id")
            .to_string()
    }

    /// Derives an account of `wallet` (as the admin) from `body` (`chain`, `index`, ...) and
    /// returns the answer: `account` (address, public key, path) and `key`.
    pub async fn derive_account(&self, wallet: &str, body: Value) -> Value {
        let (status, account) = self
            .call(
                "POST",
                &format!("/v1/wallets/{wallet}/accounts"),
                Some(self.admin()),
                Some(&body),
            )
            .await;
        assert_eq!(status, 201, "{account}");
        account
    }

    /// Sends a request; returns status and JSON body (or the text as a JSON string).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    /// Like `call`, with extra headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let client = client();
        let url = format!("{}{path}", self.url);
        let mut req = client.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }
}

impl Drop for Keyward {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A shared HTTP client.
pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap()
        })
        .clone()
}

/// Asserts the uniform error body and that no signature came back.
pub fn assert_error(status: u16, body: &Value, want: u16, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body.get("signature").is_none(), "{body}");
}

/// Standard base64 encode.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard base64 decode.
pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// Runs `openssl` with `args` in `dir`; returns (success, combined output).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A token issuer of a test's own: an ES256 key made by `openssl`, published as `jwks.json`
/// (key id `k1`) in the work directory, for a config's `jwks_file`.
pub struct JwksIssuer {
    issuer: String,
    key: jsonwebtoken::EncodingKey,
}

impl JwksIssuer {
    /// Makes the key in `work` and writes `work/jwks.json`; tokens name `issuer` as `iss`.
    pub fn new(work: &Path, issuer: &str) -> Self {
        let (ok, out) = openssl(
            work,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "issuer.pem",
            ],
        );
        assert!(ok, "{out}");
        let pem = std::fs::read(work.join("issuer.pem")).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap();
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::ES256)
                .unwrap();
        jwk.common.key_id = Some("k1".into());
        std::fs::write(
            work.join("jwks.json"),
            serde_json::to_vec(&serde_json::json!({"keys": [jwk]})).unwrap(),
        )
        .unwrap();
        JwksIssuer {
            issuer: issuer.to_string(),
            key,
        }
    }

    /// A token for `keyward` naming `sub` with `roles`, valid for ten minutes.
    pub fn token(&self, sub: &str, roles: &[&str]) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({"iss": self.issuer, "aud": "keyward", "sub": sub,
                                        "roles": roles, "exp": now + 600, "iat": now});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// The wasm32 build of the example policy `policies/<name>`, built once per test run into
/// `target/policy-wasm` (never committed, never downloaded).
pub fn example_policy(name: &str) -> Vec<u8> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let target = workspace_root().join("target/policy-wasm");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args([
                "build",
                "-q",
                "--release",
                "--target",
                "wasm32-unknown-unknown",
            ])
            .arg("--target-dir")
            .arg(&target)
            .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "true")
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s");
        for p in [
            "allow-all",
            "role-gate",
            "office-hours",
            "rate-limit",
            "approval-above",
            "eth-spend-limit",
            "eth-allowlist",
            "btc-output-allowlist",
            "sol-transfer-limit",
        ] {
            cmd.args(["-p", p]);
        }
        let status = cmd.status().expect("run cargo");
        assert!(
            status.success(),
            "building the example policies for wasm32 failed"
        );
        target.join("wasm32-unknown-unknown/release")
    });
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The audience of the test provider's access tokens.
pub const AUDIENCE: &str = "urn:keyward:api";

/// A running OpenID provider.
pub struct Idp {
    child: Option<Child>,
    /// The issuer URL, e.g. `http://127.0.0.1:40111`.
    pub issuer: String,
}

impl Idp {
    /// Starts tests/js/oidc-provider.mjs on a free loopback port.
    pub fn start() -> Self {
        let mut child = Command::new("node")
            .arg("oidc-provider.mjs")
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line).expect("provider banner");
        Idp {
            child: Some(child),
            issuer: v["issuer"].as_str().unwrap().to_string(),
        }
    }

    /// Stops the provider.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An access token for `client` by the client-credentials grant.
    pub async fn token(&self, client_id: &str, scope: &str) -> String {
        let resp = client()
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", &format!("{client_id}-secret")),
                ("scope", scope),
                ("resource", AUDIENCE),
            ])
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "token request failed: {body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// GET a path of the provider, as JSON.
    pub async fn get(&self, path: &str) -> Value {
        client()
            .get(format!("{}{path}", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// How many times the JWKS was fetched.
    pub async fn jwks_fetches(&self) -> u64 {
        self.get("/_test/stats").await["jwks"].as_u64().unwrap()
    }

    /// The provider's current keys, private halves included (to forge tokens).
    pub async fn keys(&self) -> Value {
        self.get("/_test/keys").await
    }

    /// Replaces every signing key.
    pub async fn rotate(&self) {
        let resp = client()
            .post(format!("{}/_test/rotate", self.issuer))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Idp {
    /// Registers Keyward's web page as a public client (`keyward-ui`, authorization code with
    /// PKCE) redirecting to `redirect_uri`.
    pub async fn register_ui(&self, redirect_uri: &str) {
        let resp = client()
            .post(format!("{}/_test/ui-client", self.issuer))
            .json(&serde_json::json!({ "redirect_uri": redirect_uri }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }
}

/// Writes `work/keyward.toml` for `keyward serve`: loopback on a free port, data in
/// `work/data`, 30 s of clock leeway, `auth_toml` under `[auth]`, then `issuer_toml` (issuers
/// and any later sections), signing allowed by default. Returns its path.
pub fn write_config(work: &Path, issuer_toml: &str, auth_toml: &str) -> PathBuf {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[storage]
data_dir = "{data}"
[auth]
leeway_seconds = 30
{auth_toml}
{issuer_toml}
[policy]
default_decision = "allow"
"#,
        data = work.join("data").display()
    );
    let path = work.join("keyward.toml");
    std::fs::write(&path, config).unwrap();
    path
}

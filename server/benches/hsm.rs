//! HSM throughput on SoftHSM2: signatures per second for RSA-2048 and P-256, first with a
//! direct PKCS#11 loop (one logged-in session per core), then end to end over HTTP (64
//! connections to a `keyward dev` server with the token as backend `hsm`, policy, audit and
//! all). Run with `cargo bench -p keyward-server --bench hsm`; skipped with a message when
//! SoftHSM2 is not installed. Numbers only, no assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const LABEL: &str = "keyward-bench";
const PIN: &str = "1234";
const RUN: Duration = Duration::from_secs(8);
const CONNECTIONS: usize = 64;
/// SHA-256 `DigestInfo` prefix (RFC 8017 9.2), as the server sends with `CKM_RSA_PKCS`.
const SHA256_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

fn main() {
    if !Path::new(MODULE).exists() {
        println!("hsm bench skipped: {MODULE} not found (apt-get install -y softhsm2)");
        return;
    }
    // SoftHSM reads SOFTHSM2_CONF when the module initializes; set it for a child run of this
    // same benchmark rather than changing the environment of a running process.
    if std::env::var_os("HSM_BENCH_CHILD").is_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let ok = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", LABEL, "--pin", PIN])
            .args(["--so-pin", "5678"])
            .env("SOFTHSM2_CONF", &conf)
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            println!("hsm bench skipped: softhsm2-util could not make a token");
            return;
        }
        let status = Command::new(std::env::current_exe().unwrap())
            .args(std::env::args().skip(1))
            .env("SOFTHSM2_CONF", &conf)
            .env("HSM_BENCH_CHILD", dir.path())
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let data = Path::new(&std::env::var("HSM_BENCH_CHILD").unwrap()).join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = Server::start(&data);
    let keys: Vec<(&str, String)> = ["rsa-2048", "p256"]
        .into_iter()
        .map(|alg| (alg, rt.block_on(server.create_key(alg))))
        .collect();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("SoftHSM2, {cores} cores, {}s per run", RUN.as_secs());
    // Reference: the same HTTP load on a software P-256 key shows what the signing path
    // (authentication, policy, audit commit) costs without any token.
    let software = rt.block_on(server.create_software_key("p256"));
    let reference = rt.block_on(server.http_loop(&software));
    println!("software p256 over HTTP x64 (reference): {reference:.0} sig/s");
    println!(
        "{:<10} {:>16} {:>22} {:>8}",
        "algorithm", "direct sig/s", "HTTP x64 sig/s", "ratio"
    );
    for (alg, key_id) in &keys {
        let direct = direct_loop(alg, key_id, cores);
        let http = rt.block_on(server.http_loop(key_id));
        println!(
            "{alg:<10} {direct:>16.0} {http:>22.0} {:>7.0}%",
            100.0 * http / direct
        );
    }
}

/// Signs with the key labelled `key_id` from `threads` threads, one session each.
fn direct_loop(alg: &str, key_id: &str, threads: usize) -> f64 {
    let ctx = Pkcs11::new(MODULE).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == LABEL)
        .unwrap();
    let login = ctx.open_rw_session(slot).unwrap();
    login.login(UserType::User, Some(&PIN.into())).unwrap();
    let key = login
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(key_id.as_bytes().to_vec()),
        ])
        .unwrap()[0];
    let digest = [0x5au8; 32];
    let ecdsa = alg == "p256";
    let data = if ecdsa {
        digest.to_vec()
    } else {
        let mut info = SHA256_INFO.to_vec();
        info.extend_from_slice(&digest);
        info
    };
    let count = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let session = ctx.open_rw_session(slot).unwrap();
                let mechanism = if ecdsa {
                    Mechanism::Ecdsa
                } else {
                    Mechanism::RsaPkcs
                };
                let mut n = 0;
                while start.elapsed() < RUN {
                    session.sign(&mechanism, key, &data).unwrap();
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    let rate = count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    drop(login);
    ctx.finalize().unwrap();
    rate
}

struct Server {
    child: std::process::Child,
    url: String,
    admin: String,
    signer: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(data: &Path) -> Self {
        let bin = env!("CARGO_BIN_EXE_keyward");
        let sessions = std::env::var("HSM_BENCH_SESSIONS").unwrap_or_else(|_| "8".into());
        let entry = format!(
            r#"[{{name = "hsm", module = "{MODULE}", token_label = "{LABEL}", pin_env = "BENCH_HSM_PIN", max_sessions = {sessions}}}]"#
        );
        let mut child = Command::new(bin)
            .args(["dev", "--data-dir", data.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            .env("KEYWARD_LOG", "error")
            .env("BENCH_HSM_PIN", PIN)
            .env("KEYWARD_KEYS__PKCS11", entry)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut url = String::new();
        let mut admin = String::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(u) = line.strip_prefix("listening: ") {
                url = u.to_string();
            }
            if let Some(t) = line.strip_prefix("admin token: ") {
                admin = t.to_string();
                break;
            }
        }
        let out = Command::new(bin)
            .args(["token", "--data-dir", data.to_str().unwrap()])
            .args(["--subject", "bench", "--role", "signer"])
            .output()
            .unwrap();
        let signer = String::from_utf8(out.stdout).unwrap().trim().to_string();
        Server {
            child,
            url,
            admin,
            signer,
        }
    }

    async fn create_key(&self, alg: &str) -> String {
        self.create(
            serde_json::json!({"name": format!("bench-{alg}"), "algorithm": alg, "backend": "hsm"}),
        )
        .await
    }

    async fn create_software_key(&self, alg: &str) -> String {
        self.create(serde_json::json!({"name": format!("soft-{alg}"), "algorithm": alg}))
            .await
    }

    async fn create(&self, body: serde_json::Value) -> String {
        let key: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/keys", self.url))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        key["id"].as_str().expect("key created").to_string()
    }

    /// 64 connections signing a digest in a loop for `RUN`; successful signatures per second.
    async fn http_loop(&self, key_id: &str) -> f64 {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONNECTIONS)
            .build()
            .unwrap();
        let url = format!("{}/v1/keys/{key_id}/sign", self.url);
        let body = serde_json::json!({
            "digest": base64::engine::general_purpose::STANDARD.encode([0x5au8; 32])
        });
        let ok = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (client, url, body, token) = (
                client.clone(),
                url.clone(),
                body.clone(),
                self.signer.clone(),
            );
            let (ok, stop) = (ok.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let resp = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    if let Ok(r) = resp
                        && r.status().is_success()
                        && r.bytes().await.is_ok()
                    {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        tokio::time::sleep(RUN).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        ok.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    }
}

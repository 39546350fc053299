//! Signing throughput: raw in-process Ed25519 signing versus the whole path
//! (`POST /v1/keys/{id}/sign` over loopback HTTP: JWT, pipeline, sign, durable audit).
//!
//! Run: `cargo bench -p keyward-server --bench throughput`
//! Knobs: `BENCH_SECONDS` (default 10), `BENCH_CONCURRENCY` (default 64).
//! The load generator runs in this process, on the same cores as the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keyward_server::api::routes;
use keyward_server::app::AppState;
use keyward_server::auth::Role;
use keyward_server::keys::{Algorithm, Kek, KeyBackend, SignOptions, SoftwareBackend, ToSign};
use poem::listener::{Acceptor, Listener, TcpListener};
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn raw_signing(threads: usize, seconds: f64) -> f64 {
    let backend = SoftwareBackend::new(Kek::generate());
    let key = backend.generate("bench", Algorithm::Ed25519).unwrap().key;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let key = key.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let msg = ToSign::Message(format!("message {t}").into_bytes());
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(key.sign(&msg, SignOptions::default()).unwrap());
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 64) as usize;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let raw1 = raw_signing(1, 3.0);
    let raw_all = raw_signing(cores, 3.0);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (e2e, p50, p99, errors, audit_rows) = rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) =
            keyward_server::commands::dev_config(dir.path(), "127.0.0.1:0".parse().unwrap())
                .unwrap();
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let base = format!("http://{addr}");
        let state = AppState::build(config, &base).await.unwrap();
        let token = state
            .dev_issuer()
            .unwrap()
            .mint("bench", &[Role::Admin], Duration::from_secs(3600))
            .unwrap();
        let store = state.signing().store().clone();
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes::routes(state)));

        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap();
        let key: serde_json::Value = client
            .post(format!("{base}/v1/keys"))
            .bearer_auth(&token)
            .json(&json!({"name": "bench", "algorithm": "ed25519"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let url = format!("{base}/v1/keys/{}/sign", key["id"].as_str().unwrap());

        // Warm-up, then the measured window.
        let run = |window: Duration| {
            let client = client.clone();
            let url = url.clone();
            let token = token.clone();
            async move {
                let deadline = Instant::now() + window;
                let mut tasks = Vec::new();
                for i in 0..concurrency {
                    let (client, url, token) = (client.clone(), url.clone(), token.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut lat = Vec::new();
                        let mut errors = 0u64;
                        use base64::Engine as _;
                        let message = format!("message from connection {i}");
                        let body = json!({"message": base64::engine::general_purpose::STANDARD.encode(message)});
                        while Instant::now() < deadline {
                            let t = Instant::now();
                            let resp = client
                                .post(&url)
                                .bearer_auth(&token)
                                .json(&body)
                                .send()
                                .await;
                            match resp {
                                Ok(r) if r.status().is_success() => {
                                    let _ = r.bytes().await;
                                    lat.push(t.elapsed());
                                }
                                Ok(r) => {
                                    if errors == 0 {
                                        eprintln!("request failed: {} {}", r.status(), r.text().await.unwrap_or_default());
                                    }
                                    errors += 1;
                                }
                                Err(e) => {
                                    if errors == 0 {
                                        eprintln!("request failed: {e}");
                                    }
                                    errors += 1;
                                }
                            }
                        }
                        (lat, errors)
                    }));
                }
                let mut all = Vec::new();
                let mut errors = 0;
                for t in tasks {
                    let (lat, e) = t.await.unwrap();
                    all.extend(lat);
                    errors += e;
                }
                (all, errors)
            }
        };
        let _ = run(Duration::from_secs(2)).await;
        let start = Instant::now();
        let (mut lat, errors) = run(Duration::from_secs(seconds)).await;
        let elapsed = start.elapsed().as_secs_f64();
        lat.sort();
        let rows = keyward_server::audit::verify(&store).await.unwrap();
        (
            lat.len() as f64 / elapsed,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            errors,
            rows,
        )
    });

    println!(
        "keyward signing throughput ({cores} cores, {concurrency} connections, {seconds}s window)"
    );
    println!("  raw Ed25519, 1 thread:          {raw1:>10.0} sig/s");
    println!("  raw Ed25519, {cores} threads:         {raw_all:>10.0} sig/s");
    println!(
        "  end-to-end HTTP sign:           {e2e:>10.0} sig/s   p50 {:.2} ms   p99 {:.2} ms   errors {errors}",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!(
        "  ratio end-to-end / raw ({cores} threads): {:.3}",
        e2e / raw_all
    );
    println!(
        "  audit chain after the run: {} records, intact: {}",
        audit_rows.records,
        audit_rows.is_ok()
    );
}

//! Policy benchmarks.
//!
//! 1. Criterion: one evaluation of each example policy in a fresh instance (the server's
//!    path: instantiate from the cached `InstancePre`, write the input, evaluate, parse).
//!    Also prints p50/p99 over 5,000 timed evaluations each.
//! 2. End-to-end Ed25519 sign throughput, in process through the HTTP routes (poem's test
//!    client, 16 concurrent callers, SQLite on disk), with 0, 1 and 5 policies bound.
//!
//! Run: `cargo bench -p keyward-server --bench policy` (needs the wasm32-unknown-unknown target).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use keyward_server::api::routes;
use keyward_server::app::AppState;
use keyward_server::auth::Role;
use keyward_server::policy::{LimitsConfig, PolicyEngine};
use poem::EndpointExt;
use poem::test::TestClient;
use serde_json::{Value, json};

const EXAMPLES: &[&str] = &[
    "allow-all",
    "role-gate",
    "office-hours",
    "rate-limit",
    "approval-above",
];

fn settings(name: &str) -> Value {
    match name {
        "role-gate" => json!({"roles": ["signer"]}),
        "office-hours" => {
            json!({"start": "00:00", "end": "23:59", "weekdays": ["mon","tue","wed","thu","fri","sat","sun"]})
        }
        "rate-limit" => json!({"max_per_hour": 1_000_000_000u64}),
        "approval-above" => {
            json!({"max_message_len": 1_000_000, "approvals": 2, "approver_roles": ["approver"]})
        }
        _ => Value::Null,
    }
}

fn build_examples() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target/policy-wasm");
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "--target-dir",
        ])
        .arg(&target)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s");
    for n in EXAMPLES {
        cmd.args(["-p", n]);
    }
    assert!(cmd.status().unwrap().success());
    target.join("wasm32-unknown-unknown/release")
}

fn wasm(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("{}.wasm", name.replace('-', "_")))).unwrap()
}

fn evaluations(c: &mut Criterion, dir: &std::path::Path) {
    let engine = PolicyEngine::new(LimitsConfig::default()).unwrap();
    let request = keyward_policy::testing::request()
        .key_signatures_last_hour(3)
        .build();
    let mut group = c.benchmark_group("evaluate");
    for name in EXAMPLES {
        let compiled = engine
            .compile(&wasm(dir, name), engine.limits().default)
            .unwrap();
        let input = keyward_policy::testing::input(&request, settings(name));
        let first = engine.evaluate(&compiled, &input);
        assert!(first.failure.is_none(), "{name}: {first:?}");
        group.bench_function(*name, |b| b.iter(|| engine.evaluate(&compiled, &input)));
        let mut samples: Vec<u128> = (0..5000)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(engine.evaluate(&compiled, &input));
                t.elapsed().as_nanos()
            })
            .collect();
        samples.sort_unstable();
        println!(
            "evaluate/{name}: p50 {:.1} us, p99 {:.1} us, fuel {}",
            samples[samples.len() / 2] as f64 / 1000.0,
            samples[samples.len() * 99 / 100] as f64 / 1000.0,
            first.fuel
        );
    }
    group.finish();
}

async fn throughput(dir: &std::path::Path, policies: usize) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let (mut config, _) =
        keyward_server::commands::dev_config(tmp.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    config.policy.bind_on_create.clear();
    config.default_decision = keyward_server::config::DefaultDecision::Allow;
    let state = AppState::build(config, "http://bench.test").await.unwrap();
    let client = TestClient::new(routes::routes(state.clone()).boxed());
    let issuer = state.dev_issuer().unwrap();
    let admin = issuer
        .mint(
            "admin",
            &[Role::Admin, Role::Signer],
            Duration::from_secs(3600),
        )
        .unwrap();
    let bearer = format!("Bearer {admin}");
    let resp = client
        .post("/v1/keys")
        .header("authorization", &bearer)
        .body_json(&json!({"name": "bench", "algorithm": "ed25519"}))
        .send()
        .await;
    let key: Value = resp.0.into_body().into_json().await.unwrap();
    let kid = key["id"].as_str().unwrap().to_string();
    let mut list = Vec::new();
    for name in EXAMPLES.iter().take(policies) {
        let resp = client
            .post("/v1/policies")
            .header("authorization", &bearer)
            .body_json(
                &json!({"name": name, "version": "1", "module": base64_encode(&wasm(dir, name))}),
            )
            .send()
            .await;
        let p: Value = resp.0.into_body().into_json().await.unwrap();
        list.push(json!({"policy_id": p["id"], "settings": settings(name)}));
    }
    let resp = client
        .put(format!("/v1/keys/{kid}/policies"))
        .header("authorization", &bearer)
        .body_json(&json!({"policies": list}))
        .send()
        .await;
    assert!(resp.0.status().is_success());
    let path = format!("/v1/keys/{kid}/sign");
    let body = json!({"message": base64_encode(b"benchmark message")});
    let run = |duration: Duration| {
        let (client, bearer, path, body) = (&client, &bearer, &path, &body);
        async move {
            let deadline = Instant::now() + duration;
            let tasks = (0..16).map(|_| async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let resp = client
                        .post(path)
                        .header("authorization", bearer)
                        .body_json(body)
                        .send()
                        .await;
                    assert!(resp.0.status().is_success(), "{:?}", resp.0.status());
                    n += 1;
                }
                n
            });
            futures_util::future::join_all(tasks)
                .await
                .iter()
                .sum::<u64>()
        }
    };
    run(Duration::from_secs(1)).await; // warm up
    let secs = 5;
    let n = run(Duration::from_secs(secs)).await;
    n as f64 / secs as f64
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn main() {
    let dir = build_examples();
    let mut c = Criterion::default().configure_from_args();
    evaluations(&mut c, &dir);
    c.final_summary();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for n in [0, 1, 5] {
        let rps = rt.block_on(throughput(&dir, n));
        println!("sign throughput, ed25519, {n} policies bound: {rps:.0} signatures/s");
    }
}

//! Crashes: the real binary is killed with SIGKILL under signing load twenty times in a row,
//! on SQLite and on PostgreSQL. Afterwards every signature the server acknowledged (a 200 with
//! a signature) has its `sign` record in the audit log, and the whole chain verifies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use keyward_e2e::{Keyward, PgCluster, b64, client, run_keyward};
use serde_json::{Value, json};

const ROUNDS: u64 = 20;
const WRITERS: u64 = 8;

/// Signs as fast as it can until the server stops answering; returns the request ids of the
/// signatures it was given.
async fn writer(url: String, key: String, token: String, round: u64, w: u64) -> Vec<String> {
    let http = client();
    let mut acked = Vec::new();
    for i in 0..10_000u64 {
        let message = b64(format!("round {round} writer {w} #{i}").as_bytes());
        let sent = http
            .post(format!("{url}/v1/keys/{key}/sign"))
            .bearer_auth(&token)
            .json(&json!({ "message": message }))
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(resp) = sent else { break };
        if resp.status() != 200 {
            continue;
        }
        let Ok(body) = resp.json::<Value>().await else {
            break;
        };
        if body["signature"].is_string() {
            acked.push(body["request_id"].as_str().unwrap().to_string());
        }
    }
    acked
}

/// The request ids of every `sign` record of `key`, through the audit API.
async fn recorded(kw: &Keyward, key: &str) -> BTreeSet<String> {
    let admin = kw.admin().to_string();
    let mut out = BTreeSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?action=sign&key_id={key}&limit=500");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = kw.call("GET", &path, Some(&admin), None).await;
        assert_eq!(status, 200, "{page}");
        for r in page["items"].as_array().unwrap() {
            if r["outcome"] == "ok" {
                out.insert(r["request_id"].as_str().unwrap().to_string());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

async fn crash_twenty_times(data: &Path, env: &[(&str, &str)], verify: &[&str]) {
    let mut acked = Vec::new();
    let mut key = String::new();
    for round in 0..ROUNDS {
        let mut kw = Keyward::dev_with_env(data, env);
        let admin = kw.admin().to_string();
        if round == 0 {
            let (status, created) = kw
                .call(
                    "POST",
                    "/v1/keys",
                    Some(&admin),
                    Some(&json!({"name": "crash", "algorithm": "ed25519"})),
                )
                .await;
            assert_eq!(status, 201, "{created}");
            key = created["id"].as_str().unwrap().to_string();
        }
        let writers = (0..WRITERS)
            .map(|w| tokio::spawn(writer(kw.url.clone(), key.clone(), admin.clone(), round, w)));
        let writers: Vec<_> = writers.collect();
        // Killed somewhere between 150 ms and 550 ms into the load, a different time each round.
        tokio::time::sleep(Duration::from_millis(150 + (round * 137) % 400)).await;
        kw.kill();
        for w in writers {
            acked.extend(w.await.unwrap());
        }
    }
    let kw = Keyward::dev_with_env(data, env);
    let found = recorded(&kw, &key).await;
    let lost: Vec<&String> = acked.iter().filter(|id| !found.contains(*id)).collect();
    eprintln!(
        "{} signatures acknowledged over {ROUNDS} kills, {} sign records",
        acked.len(),
        found.len()
    );
    assert!(
        acked.len() as u64 >= ROUNDS * WRITERS,
        "too little load to prove anything: {}",
        acked.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but not in the audit log: {lost:?}"
    );
    let unique: BTreeSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "a request id acknowledged twice");
    drop(kw);
    let (ok, out, err) = run_keyward(verify);
    assert!(ok, "audit verify: {out}{err}");
    assert!(out.contains("chain intact"), "{out}");
}

#[tokio::test]
async fn twenty_sigkills_under_load_lose_no_acknowledged_signature_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();
    crash_twenty_times(&data, &[], &["audit", "verify", "--data-dir", &data_arg]).await;
}

#[tokio::test]
async fn twenty_sigkills_under_load_lose_no_acknowledged_signature_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgCluster::start(dir.path());
    let url = pg.url.clone();
    let data = dir.path().join("data");
    let config = dir.path().join("verify.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\ndata_dir = \"{d}\"\nurl = \"{url}\"\n[keys]\nkek_file = \"{d}/kek\"\n\
             [auth]\ndev_issuer = true\n",
            d = data.display()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    crash_twenty_times(
        &data,
        &[("KEYWARD_STORAGE__URL", &url)],
        &["audit", "verify", "--config", &config_arg],
    )
    .await;
}

//! Three `keyward serve` nodes on one PostgreSQL database (a throwaway cluster this test
//! starts with scripts/pg-cluster and removes), with the same KEK and a token issuer from a
//! JWKS file: keys, limits, revocation and approvals hold whichever node a request reaches,
//! and a node killed under load loses no acknowledged signature. A second test restarts the
//! database under load: callers get 503, nothing acknowledged is lost, the nodes recover.

use std::path::Path;
use std::process::Command;

use keyward_e2e::{
    JwksIssuer, Keyward, PgCluster, assert_error, b64, example_policy, pg_cluster, workspace_root,
};
use serde_json::{Value, json};

/// Stops the database of the cluster in `dir` at once, as a crash would, and starts it again
/// on the same port after `down` seconds (blocks until it accepts connections).
fn restart_database(dir: &Path, down: u32) {
    pg_cluster("restart", dir, &[&down.to_string()]);
}

fn node(work: &Path, name: &str, url: &str, kek: &str) -> Keyward {
    node_with(work, name, url, kek, "")
}

/// A node whose `[storage]` section has `storage` added.
fn node_with(work: &Path, name: &str, url: &str, kek: &str, storage: &str) -> Keyward {
    let data = work.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
node_id = "{name}"
[storage]
data_dir = "{data}"
url = "{url}"
max_connections = 8
{storage}
[auth]
[[auth.issuers]]
issuer = "https://idp.cluster.test"
audiences = ["keyward"]
jwks_file = "{jwks}"
algorithms = ["ES256"]
[policy]
default_decision = "allow"
"#,
        data = data.display(),
        jwks = work.join("jwks.json").display(),
    );
    let file = work.join(format!("{name}.toml"));
    std::fs::write(&file, config).unwrap();
    Keyward::serve(&file, &data, &[("KEYWARD_KEK", kek)])
}

async fn sign(kw: &Keyward, id: &str, token: &str, message: &[u8]) -> (u16, Value) {
    kw.call(
        "POST",
        &format!("/v1/keys/{id}/sign"),
        Some(token),
        Some(&json!({"message": b64(message)})),
    )
    .await
}

async fn create_key(kw: &Keyward, admin: &str, name: &str) -> String {
    let (s, key) = kw
        .call(
            "POST",
            "/v1/keys",
            Some(admin),
            Some(&json!({"name": name, "algorithm": "ed25519"})),
        )
        .await;
    assert_eq!(s, 201, "{key}");
    key["id"].as_str().unwrap().to_string()
}

async fn upload_and_bind(kw: &Keyward, admin: &str, key: &str, policy: &str, settings: Value) {
    let (s, p) = kw
        .call(
            "POST",
            "/v1/policies",
            Some(admin),
            Some(&json!({"name": policy, "version": "1.0.0", "module": b64(&example_policy(policy))})),
        )
        .await;
    assert!(s == 201 || s == 409, "{p}");
    let policy_id = if s == 201 {
        p["id"].as_str().unwrap().to_string()
    } else {
        let (_, list) = kw.call("GET", "/v1/policies", Some(admin), None).await;
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == policy)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (s, bound) = kw
        .call(
            "PUT",
            &format!("/v1/keys/{key}/policies"),
            Some(admin),
            Some(&json!({"policies": [{"policy_id": policy_id, "settings": settings}]})),
        )
        .await;
    assert_eq!(s, 200, "{bound}");
}

/// One query's answer through `psql` (unaligned, `|` between columns).
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-XAtc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every `sign` record of `key`: its request id and the node that wrote it.
async fn sign_records(kw: &Keyward, auditor: &str, key: &str) -> Vec<(String, String)> {
    let mut records = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, page) = kw
            .call(
                "GET",
                &format!("/v1/audit?key_id={key}&action=sign&limit=500{cursor}"),
                Some(auditor),
                None,
            )
            .await;
        assert_eq!(s, 200, "{page}");
        for r in page["items"].as_array().unwrap() {
            records.push((
                r["request_id"].as_str().unwrap_or_default().to_string(),
                r["node_id"].as_str().unwrap_or_default().to_string(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return records,
        }
    }
}

/// `keyward audit verify --config node-1.toml` passes.
fn audit_verify(work: &Path, kek: &str) {
    let verify = Command::new(keyward_e2e::keyward_bin())
        .args(["audit", "verify", "--config"])
        .arg(work.join("node-1.toml"))
        .env("KEYWARD_KEK", kek)
        .output()
        .expect("keyward audit verify");
    assert!(
        verify.status.success(),
        "audit verify: {} {}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_one_database_keep_every_guarantee() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let cluster = PgCluster::start(work);
    let issuer = JwksIssuer::new(work, "https://idp.cluster.test");
    let kek = "cd".repeat(32);
    let mut nodes: Vec<Keyward> = ["node-1", "node-2", "node-3"]
        .iter()
        .map(|n| node(work, n, &cluster.url, &kek))
        .collect();
    let admin = issuer.token("ops", &["admin", "key-admin", "policy-admin", "auditor"]);
    let app = issuer.token("app", &["signer"]);

    // A key made on node 1 signs on node 3.
    let key = create_key(&nodes[0], &admin, "shared").await;
    let (s, body) = sign(&nodes[2], &key, &app, b"from node 3").await;
    assert_eq!(s, 200, "{body}");

    // A limit of 3, 20 parallel requests spread over the three nodes: at most 3 signatures.
    let limited = create_key(&nodes[0], &admin, "limited").await;
    upload_and_bind(
        &nodes[0],
        &admin,
        &limited,
        "rate-limit",
        json!({"max_per_hour": 3}),
    )
    .await;
    let calls = (0..20).map(|i| {
        let (kw, limited, app) = (&nodes[i % 3], &limited, &app);
        async move { sign(kw, limited, app, format!("race {i}").as_bytes()).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let seen: Vec<String> = results
        .iter()
        .map(|(s, b)| format!("{s} {}", b["code"]))
        .collect();
    let signed = results.iter().filter(|(s, _)| *s == 200).count();
    assert!((1..=3).contains(&signed), "{signed} signatures: {seen:?}");
    for (s, b) in results.iter().filter(|(s, _)| *s != 200) {
        assert_error(*s, b, 403, "POLICY_DENIED");
        assert!(b.get("signature").is_none(), "{b}");
    }

    // Disabled on node 1, refused at once on nodes 2 and 3 (which had it cached as active).
    for trial in 0..20 {
        let id = create_key(&nodes[0], &admin, &format!("revoked-{trial}")).await;
        for kw in &nodes[1..] {
            let (s, b) = sign(kw, &id, &app, b"warm").await;
            assert_eq!(s, 200, "{b}");
        }
        let (s, b) = nodes[0]
            .call(
                "POST",
                &format!("/v1/keys/{id}/disable"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        for kw in &nodes[1..] {
            let (s, b) = sign(kw, &id, &app, b"after").await;
            assert_error(s, &b, 409, "KEY_DISABLED");
            assert!(b.get("signature").is_none(), "{b}");
        }
    }

    // 2-of-3 approvals: 8 approvers race over the three nodes; each request is signed once.
    let treasury = create_key(&nodes[0], &admin, "treasury").await;
    upload_and_bind(
        &nodes[0],
        &admin,
        &treasury,
        "approval-above",
        json!({"max_message_len": 0, "approvals": 2, "approver_roles": ["treasury"]}),
    )
    .await;
    let approvers: Vec<String> = (0..8)
        .map(|i| issuer.token(&format!("approver-{i}"), &["approver", "treasury"]))
        .collect();
    for round in 0..50 {
        let (s, pending) = sign(
            &nodes[round % 3],
            &treasury,
            &app,
            format!("wire {round}").as_bytes(),
        )
        .await;
        assert_eq!(s, 202, "{pending}");
        let id = pending["request_id"].as_str().unwrap().to_string();
        let votes = approvers.iter().enumerate().map(|(i, token)| {
            let (kw, id) = (&nodes[(i + round) % 3], &id);
            async move {
                kw.call(
                    "POST",
                    &format!("/v1/requests/{id}/approve"),
                    Some(token),
                    Some(&json!({})),
                )
                .await
            }
        });
        let answers = futures_util::future::join_all(votes).await;
        let signed_answers = answers
            .iter()
            .filter(|(s, b)| *s == 200 && b["status"] == "signed")
            .count();
        assert!(signed_answers <= 2, "round {round}: {answers:?}");
        let (s, done) = nodes[0]
            .call("GET", &format!("/v1/requests/{id}"), Some(&admin), None)
            .await;
        assert_eq!(
            (s, done["status"].as_str()),
            (200, Some("signed")),
            "{done}"
        );
        let (_, records) = nodes[1]
            .call(
                "GET",
                &format!("/v1/audit?key_id={treasury}&action=sign&limit=500"),
                Some(&admin),
                None,
            )
            .await;
        let signed_records = records["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["request_id"] == id.as_str() && r["outcome"] == "ok")
            .count();
        assert_eq!(signed_records, 1, "round {round}: {records}");
    }
    let (_, sigs) = nodes[2]
        .call(
            "GET",
            &format!("/v1/audit?key_id={treasury}&limit=500"),
            Some(&admin),
            None,
        )
        .await;
    let signatures = sigs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "ok" && r["details"]["signature_sha256"].is_string())
        .count();
    assert_eq!(signatures, 50, "one signature per approved request: {sigs}");

    // Node 2 is killed under load: the others keep serving and every acknowledged signature
    // is in the audit log, which verifies.
    let load = create_key(&nodes[0], &admin, "load").await;
    let killed = nodes.remove(1);
    let (acked, kill) = {
        let load = &load;
        let app = &app;
        let killed_url = killed.url.clone();
        let mut killed = killed;
        let survivors = &nodes;
        let writers = (0..6).map(|w| {
            let url = if w % 3 == 1 {
                killed_url.clone()
            } else {
                survivors[w % 2].url.clone()
            };
            async move {
                let client = keyward_e2e::client();
                let mut acked = Vec::new();
                for i in 0..40 {
                    let r = client
                        .post(format!("{url}/v1/keys/{load}/sign"))
                        .bearer_auth(app)
                        .json(&json!({"message": b64(format!("load {w} {i}").as_bytes())}))
                        .send()
                        .await;
                    if let Ok(r) = r
                        && r.status() == 200
                        && let Ok(body) = r.json::<Value>().await
                    {
                        acked.push(body["request_id"].as_str().unwrap_or_default().to_string());
                    }
                }
                acked
            }
        });
        let load_all = futures_util::future::join_all(writers);
        let kill = async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            killed.kill();
        };
        let (acked, ()) = tokio::join!(load_all, kill);
        (acked.concat(), ())
    };
    let () = kill;
    assert!(
        acked.len() > 40,
        "the survivors kept signing: {}",
        acked.len()
    );
    let (s, b) = sign(&nodes[1], &load, &app, b"after the kill").await;
    assert_eq!(s, 200, "{b}");
    let records = sign_records(&nodes[0], &admin, &load).await;
    let recorded: std::collections::BTreeSet<&str> =
        records.iter().map(|(id, _)| id.as_str()).collect();
    // Each record names the node that wrote it: the killed node's too, up to its death.
    let writers: std::collections::BTreeSet<&str> =
        records.iter().map(|(_, node)| node.as_str()).collect();
    assert!(
        writers.is_subset(&["node-1", "node-2", "node-3"].into()),
        "{writers:?}"
    );
    assert!(
        writers.contains("node-1") && writers.contains("node-3"),
        "{writers:?}"
    );
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !recorded.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not in the audit log: {lost:?}"
    );
    for kw in &mut nodes {
        kw.stop();
    }
    audit_verify(work, &kek);
    drop(cluster);
}

/// What one caller saw during the restart.
enum Seen {
    Signed(String),
    Unavailable,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restarted_under_load_gives_503_loses_nothing_and_the_nodes_recover() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let cluster = PgCluster::start(work);
    let issuer = JwksIssuer::new(work, "https://idp.cluster.test");
    let kek = "ef".repeat(32);
    // A short wait for a connection, so that callers hear of the outage while it lasts.
    let storage = "acquire_timeout_ms = 1000";
    // Three nodes start together on the empty database: each migration is applied once.
    let mut nodes: Vec<Keyward> = std::thread::scope(|scope| {
        let starting: Vec<_> = ["node-1", "node-2", "node-3"]
            .iter()
            .map(|n| scope.spawn(|| node_with(work, n, &cluster.url, &kek, storage)))
            .collect();
        starting
            .into_iter()
            .map(|s| s.join().expect("node start"))
            .collect()
    });
    let migrations = psql(
        &cluster.url,
        "SELECT COUNT(*), COUNT(DISTINCT version), BOOL_AND(success) FROM _sqlx_migrations",
    );
    let applied = std::fs::read_dir(workspace_root().join("server/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(
        migrations,
        format!("{applied}|{applied}|t"),
        "each migration once"
    );
    nodes.truncate(2);
    let admin = issuer.token("ops", &["admin", "key-admin", "auditor"]);
    let app = issuer.token("app", &["signer"]);
    let key = create_key(&nodes[0], &admin, "steady").await;
    for kw in &nodes {
        let (s, b) = sign(kw, &key, &app, b"before").await;
        assert_eq!(s, 200, "{b}");
    }

    let stop = std::sync::atomic::AtomicBool::new(false);
    let writers = (0..6).map(|w| {
        let (kw, key, app, stop) = (&nodes[w % 2], &key, &app, &stop);
        async move {
            let mut seen = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let (s, b) = sign(kw, key, app, format!("load {w} {i}").as_bytes()).await;
                match s {
                    200 => {
                        assert!(b["signature"].is_string(), "{b}");
                        seen.push(Seen::Signed(b["request_id"].as_str().unwrap().to_string()));
                    }
                    503 => {
                        // The usual error body, and no signature.
                        let code = b["code"].as_str().unwrap_or_default();
                        assert!(
                            code == "DATABASE_UNAVAILABLE" || code == "AUDIT_UNAVAILABLE",
                            "{b}"
                        );
                        assert_error(s, &b, 503, code);
                        seen.push(Seen::Unavailable);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    _ => panic!("{w}/{i}: {s} {b}"),
                }
            }
            seen
        }
    });
    let outage = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        // Down for 4 s, longer than a caller waits for a connection.
        let restart = {
            let dir = cluster.dir.clone();
            std::thread::spawn(move || restart_database(&dir, 4))
        };
        // Readiness reports the database while it is away.
        let mut not_ready = None;
        for _ in 0..40 {
            let (s, b) = nodes[1].call("GET", "/health/ready", None, None).await;
            if s == 503 {
                not_ready = Some(b);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        restart.join().expect("restart");
        // Both nodes sign again, without a restart of their own.
        for kw in &nodes {
            let mut recovered = false;
            for _ in 0..120 {
                let (s, _) = sign(kw, &key, &app, b"recovered?").await;
                if s == 200 {
                    recovered = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            assert!(recovered, "{} did not recover", kw.url);
        }
        // Some more load after the recovery, then the writers stop.
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        not_ready
    };
    let (seen, not_ready) = tokio::join!(futures_util::future::join_all(writers), outage);
    let not_ready = not_ready.expect("/health/ready answered 503 while the database was down");
    assert_eq!(not_ready["status"], "unavailable", "{not_ready}");
    assert_ne!(not_ready["checks"]["database"], "ok", "{not_ready}");
    let (s, ready) = nodes[1].call("GET", "/health/ready", None, None).await;
    assert_eq!(s, 200, "ready again: {ready}");
    assert_eq!(ready["checks"]["database"], "ok", "{ready}");

    let seen: Vec<Seen> = seen.into_iter().flatten().collect();
    let acked: Vec<&str> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Signed(id) => Some(id.as_str()),
            Seen::Unavailable => None,
        })
        .collect();
    let refused = seen.len() - acked.len();
    eprintln!(
        "restart under load: {} signed, {refused} answered 503",
        acked.len()
    );
    assert!(refused > 0, "no caller was told of the outage");
    assert!(acked.len() > 20, "signed {} times", acked.len());
    let records = sign_records(&nodes[0], &admin, &key).await;
    let recorded: std::collections::BTreeSet<&str> =
        records.iter().map(|(id, _)| id.as_str()).collect();
    let lost: Vec<&&str> = acked.iter().filter(|id| !recorded.contains(**id)).collect();
    assert!(lost.is_empty(), "acknowledged but not recorded: {lost:?}");
    drop(nodes);
    audit_verify(work, &kek);
    drop(cluster);
}

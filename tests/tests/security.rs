//! Security races against the real binary, with real parallel HTTP requests: a disabled key or
//! a removed signer stops signing at once, and usage and spend limits hold when many requests
//! arrive together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keyward_e2e::{ABANDON, Keyward, b64, example_policy, openssl, run_keyward};
use serde_json::{Value, json};

/// Every audit record about `key_id`, oldest first.
async fn audit_of(kw: &Keyward, key_id: &str) -> Vec<Value> {
    let auditor = kw.token("auditor-1", &["auditor"]);
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/audit?key_id={key_id}&limit=500");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (s, page) = kw.call("GET", &path, Some(&auditor), None).await;
        assert_eq!(s, 200, "{page}");
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    out.sort_by_key(|r| r["seq"].as_i64().unwrap());
    out
}

async fn upload(kw: &Keyward, name: &str) -> String {
    let (s, policy) = kw
        .call(
            "POST",
            "/v1/policies",
            Some(kw.admin()),
            Some(&json!({"name": name, "version": "1.0.0", "module": b64(&example_policy(name))})),
        )
        .await;
    assert_eq!(s, 201, "{policy}");
    policy["id"].as_str().unwrap().to_string()
}

async fn bind(kw: &Keyward, key_id: &str, policies: Value) {
    let (s, bound) = kw
        .call(
            "PUT",
            &format!("/v1/keys/{key_id}/policies"),
            Some(kw.admin()),
            Some(&json!({ "policies": policies })),
        )
        .await;
    assert_eq!(s, 200, "{bound}");
}

/// What one trial of signing in a loop while an administrator changes the key saw.
struct Trial {
    /// 200s for requests sent after the change had returned.
    signed_after_change: usize,
    /// Signatures that succeeded before the change (the window was open).
    signed_before: usize,
}

/// Signs with `key_id` as alice from `threads` parallel loops, runs `change` once a few
/// signatures went through, and goes on signing for a while after it returned.
async fn race(
    kw: &Arc<Keyward>,
    key_id: &str,
    alice: &str,
    threads: usize,
    change: impl std::future::Future<Output = ()>,
) -> Trial {
    let stop = Arc::new(AtomicBool::new(false));
    let changed = Arc::new(AtomicBool::new(false));
    let ok_before = Arc::new(AtomicUsize::new(0));
    let ok_after = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for t in 0..threads {
        let (kw, key_id, alice) = (kw.clone(), key_id.to_string(), alice.to_string());
        let (stop, changed) = (stop.clone(), changed.clone());
        let (ok_before, ok_after) = (ok_before.clone(), ok_after.clone());
        loops.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let sent_after_change = changed.load(Ordering::SeqCst);
                let (s, body) = kw
                    .call(
                        "POST",
                        &format!("/v1/keys/{key_id}/sign"),
                        Some(&alice),
                        Some(&json!({"message": b64(format!("{t}-{n}").as_bytes())})),
                    )
                    .await;
                match s {
                    200 => {
                        assert!(body["signature"].is_string(), "{body}");
                        if sent_after_change {
                            ok_after.fetch_add(1, Ordering::SeqCst);
                        } else {
                            ok_before.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    403 | 409 => {
                        assert!(body.get("signature").is_none(), "{body}");
                        assert!(
                            ["KEY_DISABLED", "FORBIDDEN"].contains(&body["code"].as_str().unwrap()),
                            "{body}"
                        );
                    }
                    other => panic!("unexpected {other}: {body}"),
                }
            }
        }));
    }
    // Let a few signatures through, so that the change lands in the middle of the traffic.
    let started = Instant::now();
    while ok_before.load(Ordering::SeqCst) < 2 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    change.await;
    changed.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.unwrap();
    }
    Trial {
        signed_after_change: ok_after.load(Ordering::SeqCst),
        signed_before: ok_before.load(Ordering::SeqCst),
    }
}

/// In the audit chain, no `sign ok` record for `key_id` comes after the first record of
/// `change_action`.
fn no_signature_after(records: &[Value], change_action: &str) -> Result<(), String> {
    let change = records
        .iter()
        .find(|r| r["action"] == change_action)
        .ok_or_else(|| format!("no {change_action} record"))?["seq"]
        .as_i64()
        .unwrap();
    let late: Vec<i64> = records
        .iter()
        .filter(|r| r["action"] == "sign" && r["outcome"] == "ok")
        .map(|r| r["seq"].as_i64().unwrap())
        .filter(|seq| *seq > change)
        .collect();
    if late.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} signatures recorded after {change_action} (seq {change}): {late:?}",
            late.len()
        ))
    }
}

/// An RSA-4096 PKCS#8 PEM made by openssl (slow to unseal, so the cache-fill window is wide).
fn rsa_4096_pem(dir: &std::path::Path) -> String {
    let (ok, out) = openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:4096",
            "-out",
            "rsa4096.pem",
        ],
    );
    assert!(ok, "{out}");
    std::fs::read_to_string(dir.join("rsa4096.pem")).unwrap()
}

const TRIALS: usize = 20;
const THREADS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_key_and_a_removed_signer_stop_signing_at_once_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Arc::new(Keyward::dev(dir.path()));
    let pem = rsa_4096_pem(dir.path());
    let alice = kw.token("alice", &["signer"]);
    let mut failures = Vec::new();
    let mut windows = 0;
    for (what, trial) in (0..TRIALS)
        .map(|t| ("disable", t))
        .chain((0..TRIALS).map(|t| ("signers", t)))
    {
        let (s, key) = kw
            .call(
                "POST",
                "/v1/keys/import",
                Some(kw.admin()),
                Some(
                    &json!({"name": format!("rsa-{what}-{trial}"), "private_key_pem": pem,
                             "signers": ["subject:alice"]}),
                ),
            )
            .await;
        assert_eq!(s, 201, "{key}");
        let key_id = key["id"].as_str().unwrap().to_string();
        let change = {
            let (kw, key_id) = (kw.clone(), key_id.clone());
            async move {
                let (s, body) = if what == "disable" {
                    kw.call(
                        "POST",
                        &format!("/v1/keys/{key_id}/disable"),
                        Some(kw.admin()),
                        None,
                    )
                    .await
                } else {
                    kw.call(
                        "PUT",
                        &format!("/v1/keys/{key_id}/signers"),
                        Some(kw.admin()),
                        Some(&json!({"signers": ["subject:carol"]})),
                    )
                    .await
                };
                assert_eq!(s, 200, "{body}");
            }
        };
        let seen = race(&kw, &key_id, &alice, THREADS, change).await;
        if seen.signed_before > 0 {
            windows += 1;
        }
        if seen.signed_after_change > 0 {
            failures.push(format!(
                "{what} trial {trial}: {} requests sent after the change were signed",
                seen.signed_after_change
            ));
        }
        let action = if what == "disable" {
            "key.disable"
        } else {
            "key.signers"
        };
        if let Err(e) = no_signature_after(&audit_of(&kw, &key_id).await, action) {
            failures.push(format!("{what} trial {trial}: {e}"));
        }
        // After the change, a fresh request is refused with the right code and no signature.
        let (s, body) = kw
            .call(
                "POST",
                &format!("/v1/keys/{key_id}/sign"),
                Some(&alice),
                Some(&json!({"message": b64(b"after")})),
            )
            .await;
        let want = if what == "disable" {
            (409, "KEY_DISABLED")
        } else {
            (403, "FORBIDDEN")
        };
        if (s, body["code"].as_str()) != (want.0, Some(want.1)) || body.get("signature").is_some() {
            failures.push(format!(
                "{what} trial {trial}: a request after the change answered {s} {body}"
            ));
        }
    }
    assert_eq!(windows, 2 * TRIALS, "every trial signed before its change");
    assert!(failures.is_empty(), "{failures:#?}");
    let (ok, out, err) = run_keyward(&[
        "audit",
        "verify",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok && out.contains("OK: "), "{out} {err}");
}

/// Sends `bodies` to `path` all at once; returns (status, body) of each.
async fn all_at_once(
    kw: &Arc<Keyward>,
    path: &str,
    token: &str,
    bodies: Vec<Value>,
) -> Vec<(u16, Value)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(bodies.len()));
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (kw, path, token, barrier) = (
                kw.clone(),
                path.to_string(),
                token.to_string(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                kw.call("POST", &path, Some(&token), Some(&body)).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn count_signed(results: &[(u16, Value)]) -> usize {
    let mut signed = 0;
    for (s, body) in results {
        match s {
            200 => signed += 1,
            403 => {
                assert_eq!(body["code"], "POLICY_DENIED", "{body}");
                assert!(body.get("signature").is_none(), "{body}");
                assert!(body.get("raw_transaction").is_none(), "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    signed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_requests_never_exceed_a_signature_limit_and_denials_give_capacity_back() {
    let dir = tempfile::tempdir().unwrap();
    let kw = Arc::new(Keyward::dev(dir.path()));
    let alice = kw.token("alice", &["signer"]);
    let rate = upload(&kw, "rate-limit").await;
    let approval = upload(&kw, "approval-above").await;
    for round in 0..3 {
        let (s, key) = kw
            .call(
                "POST",
                "/v1/keys",
                Some(kw.admin()),
                Some(&json!({"name": format!("limited-{round}"), "algorithm": "ed25519"})),
            )
            .await;
        assert_eq!(s, 201, "{key}");
        let key_id = key["id"].as_str().unwrap().to_string();
        // A long message waits for approval (approval-above), so those requests pass the
        // rate limit, reserve their share, and must give it back when they end pending.
        bind(
            &kw,
            &key_id,
            json!([
                {"policy_id": rate, "settings": {"max_per_hour": 3}},
                {"policy_id": approval, "settings": {"max_message_len": 8, "approvals": 1,
                                                     "approver_roles": ["treasury"]}},
            ]),
        )
        .await;
        let path = format!("/v1/keys/{key_id}/sign");
        // 20 requests that end pending: none signs, none keeps capacity.
        let long: Vec<Value> = (0..20)
            .map(|i| json!({"message": b64(format!("a long message {i}").as_bytes())}))
            .collect();
        for (s, body) in all_at_once(&kw, &path, &alice, long).await {
            assert!(s == 202 || s == 403, "{s} {body}");
            assert!(body.get("signature").is_none(), "{body}");
        }
        // 20 short ones at once: exactly the limit signs.
        let short: Vec<Value> = (0..20)
            .map(|i| json!({"message": b64(format!("m{i}").as_bytes())}))
            .collect();
        let results = all_at_once(&kw, &path, &alice, short).await;
        assert_eq!(count_signed(&results), 3, "round {round}: {results:?}");
        let records = audit_of(&kw, &key_id).await;
        let ok = records
            .iter()
            .filter(|r| r["action"] == "sign" && r["outcome"] == "ok")
            .count();
        let denied = records
            .iter()
            .filter(|r| r["action"] == "sign" && r["outcome"] == "denied")
            .count();
        assert_eq!(ok, 3, "round {round}");
        assert!(denied >= 17, "round {round}: {denied} denied records");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_transactions_never_exceed_a_spend_limit_and_denials_give_capacity_back() {
    const ETH: u128 = 1_000_000_000_000_000_000;
    const TO: &str = "0x3535353535353535353535353535353535353535";
    let dir = tempfile::tempdir().unwrap();
    let kw = Arc::new(Keyward::dev(dir.path()));
    let wallet = kw.import_wallet("w", ABANDON).await;
    let account = kw
        .derive_account(&wallet, json!({"chain": "ethereum", "index": 0}))
        .await;
    let key_id = account["key"]["id"].as_str().unwrap().to_string();
    let spend = upload(&kw, "eth-spend-limit").await;
    bind(
        &kw,
        &key_id,
        json!([{"policy_id": spend, "settings": {
            "max_value_per_tx": (3 * ETH / 2).to_string(),
            "max_value_per_day": (3 * ETH).to_string()}}]),
    )
    .await;
    let alice = kw.token("alice", &["signer"]);
    let path = format!("/v1/keys/{key_id}/ethereum/sign-transaction");
    let tx = |nonce: u64, value: u128| {
        json!({"transaction": {"chain_id": "1", "nonce": nonce.to_string(), "gas_price": "1000000000",
                               "gas": "21000", "to": TO, "value": value.to_string()}})
    };
    // 20 transactions of 2 ETH at once: each above the per-transaction limit, all denied,
    // and their reservations must not count against the day.
    let results = all_at_once(
        &kw,
        &path,
        &alice,
        (0..20).map(|n| tx(n, 2 * ETH)).collect(),
    )
    .await;
    assert_eq!(count_signed(&results), 0);
    // 20 transactions of 1 ETH at once against 3 ETH a day: exactly 3 sign.
    let results = all_at_once(&kw, &path, &alice, (100..120).map(|n| tx(n, ETH)).collect()).await;
    assert_eq!(count_signed(&results), 3, "{results:?}");
    // The audit log agrees: 3 signed transactions of 1 ETH.
    let records = audit_of(&kw, &key_id).await;
    let spent: u128 = records
        .iter()
        .filter(|r| r["action"] == "sign" && r["outcome"] == "ok")
        .map(|r| {
            r["details"]["intent"]["value"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap()
        })
        .sum();
    assert_eq!(spent, 3 * ETH);
}

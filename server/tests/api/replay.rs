//! Replays: a draft policy evaluated on the kept inputs of past sign requests reports exactly
//! the requests whose decision it would change, with the host context as it was then; what
//! is kept (signed, denied, pending), filters, refusals, retention off, and the policy logs
//! that dry runs and replays show.

use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::policies::{
    constant_policy, example_wasm, key_with, sign, upload, upload_example, wat_policy,
};
use crate::{TestServer, assert_error, b64, setup, setup_with};

/// Signs a digest; returns the request id.
async fn signed(server: &TestServer, key_id: &str, token: &str, n: u8) -> String {
    let (status, body) = sign(server, key_id, token, json!({"digest": b64(&[n; 32])})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["request_id"].as_str().expect("request id").to_string()
}

async fn replay(server: &TestServer, policy: &str, body: Value) -> (StatusCode, Value) {
    let admin = server.token("pol-admin", &[Role::PolicyAdmin]);
    server
        .call(
            "POST",
            &format!("/v1/policies/{policy}/replay"),
            Some(&admin),
            Some(body),
        )
        .await
}

fn changed_ids(report: &Value) -> Vec<String> {
    let mut ids: Vec<String> = report["changed"]
        .as_array()
        .expect("changed")
        .iter()
        .map(|c| c["request_id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_draft_policy_that_would_deny_3_of_10_past_requests_reports_exactly_those_3() {
    let server = setup().await;
    let allow = upload_example(&server, "allow-all").await;
    let draft = upload_example(&server, "role-gate").await;
    let k = key_with(&server, "k", &[(&allow, Value::Null)]).await;
    let other = key_with(&server, "other", &[(&allow, Value::Null)]).await;
    let treasurer = server.token_named("treasurer", &["signer", "treasury"]);
    let bob = server.token_named("bob", &["signer"]);
    let mut bobs = Vec::new();
    for n in 0..10u8 {
        if [2, 5, 9].contains(&n) {
            bobs.push(signed(&server, &k, &bob, n).await);
        } else {
            signed(&server, &k, &treasurer, n).await;
        }
    }
    let bob_elsewhere = signed(&server, &other, &bob, 10).await;
    bobs.sort();
    let requests_before = server.scalar("SELECT COUNT(*) FROM sign_requests").await;

    let settings = json!({"roles": ["treasury"]});
    let (status, report) = replay(
        &server,
        &draft,
        json!({"settings": settings, "key_id": k, "operation": "raw.sign"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["policy_id"], draft.as_str());
    assert_eq!(report["evaluated"], 10, "{report}");
    assert_eq!(report["complete"], true);
    assert_eq!(
        report["before"],
        json!({"allow": 10, "deny": 0, "require_approval": 0})
    );
    assert_eq!(
        report["after"],
        json!({"allow": 7, "deny": 3, "require_approval": 0})
    );
    assert_eq!(changed_ids(&report), bobs, "{report}");
    for c in report["changed"].as_array().expect("changed") {
        assert_eq!(c["key_id"], k.as_str());
        assert_eq!(c["operation"], "raw.sign");
        assert_eq!(c["before"], "allow");
        assert_eq!(c["after"], "deny");
        assert!(
            c["after_reason"]
                .as_str()
                .is_some_and(|r| r.contains("treasury")),
            "{c}"
        );
        assert!(c["fuel"].as_u64().is_some_and(|f| f > 0), "{c}");
        assert!(c["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{c}");
    }
    assert!(report["fuel_total"].as_u64() >= report["fuel_max"].as_u64());
    assert_eq!(report["digest"].as_str().map(str::len), Some(64));

    // Without the key filter the other key's request is replayed too; `limit` takes the newest.
    let (_, all) = replay(&server, &draft, json!({"settings": settings})).await;
    assert_eq!(all["evaluated"], 11, "{all}");
    let mut with_other = bobs.clone();
    with_other.push(bob_elsewhere.clone());
    with_other.sort();
    assert_eq!(changed_ids(&all), with_other);
    let (_, newest) = replay(&server, &draft, json!({"settings": settings, "limit": 1})).await;
    assert_eq!(newest["evaluated"], 1);
    assert_eq!(changed_ids(&newest), [bob_elsewhere]);
    // Filters that match nothing.
    for filter in [
        json!({"settings": settings, "operation": "ethereum.sign_transaction"}),
        json!({"settings": settings, "since": "2100-01-01T00:00:00Z"}),
        json!({"settings": settings, "until": "2000-01-01T00:00:00Z"}),
        json!({"settings": settings, "key_id": "no-such-key"}),
    ] {
        let (status, r) = replay(&server, &draft, filter.clone()).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(r["evaluated"], 0, "{filter}: {r}");
        assert_eq!(r["changed"], json!([]));
    }

    // A replay signs nothing and changes nothing; it is audited.
    assert_eq!(
        server.scalar("SELECT COUNT(*) FROM sign_requests").await,
        requests_before
    );
    let auditor = server.token("aud", &[Role::Auditor]);
    let records = server.audit("policy.replay", &auditor).await;
    let first = records
        .iter()
        .find(|r| r["details"]["filter"]["key_id"] == k.as_str())
        .unwrap_or_else(|| panic!("no replay of key k in {records:?}"));
    assert_eq!(first["details"]["evaluated"], 10);
    assert_eq!(first["details"]["changed"], 3);
    assert_eq!(first["details"]["policy_id"], draft.as_str());
}

#[tokio::test]
async fn a_replay_sees_the_host_context_as_it_was_and_shows_the_policy_logs() {
    let server = setup().await;
    let allow = upload_example(&server, "allow-all").await;
    let rate = upload_example(&server, "rate-limit").await;
    let k = key_with(&server, "k", &[(&allow, Value::Null)]).await;
    let alice = server.token("alice", &[Role::Signer]);
    let mut ids = Vec::new();
    for n in 0..8u8 {
        ids.push(signed(&server, &k, &alice, n).await);
    }
    // The key has 8 signatures in the last hour now; each request was judged with the count
    // before it (0 to 7). A limit of 5 would have denied the last 3, not all 8.
    let (status, report) = replay(
        &server,
        &rate,
        json!({"settings": {"max_per_hour": 5}, "key_id": k}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["after"]["deny"], 3, "{report}");
    let mut last3 = ids[5..].to_vec();
    last3.sort();
    assert_eq!(changed_ids(&report), last3);
    let changed = report["changed"].as_array().expect("changed");
    // Newest first, each with the count it was judged with, in its reason and its log.
    for (c, used) in changed.iter().zip([7, 6, 5]) {
        assert_eq!(
            c["logs"],
            json!([format!(
                "rate limit hit: {used} signatures in the last hour"
            )]),
            "{c}"
        );
        assert!(
            c["after_reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("made {used} signatures"))),
            "{c}"
        );
    }
}

#[tokio::test]
async fn denied_and_pending_requests_are_kept_and_replayed_with_the_verdict_they_got() {
    let server = setup().await;
    let deny = upload(
        &server,
        "deny-all",
        &constant_policy(r#"{"decision":"deny","reason":"closed"}"#),
        Value::Null,
    )
    .await;
    let ask = upload(
        &server,
        "ask",
        &constant_policy(
            r#"{"decision":"require_approval","reason":"look first","approvals":1,"approver_roles":[],"ttl_seconds":600}"#,
        ),
        Value::Null,
    )
    .await;
    let allow = upload_example(&server, "allow-all").await;
    let denied_key = key_with(&server, "denied", &[(&deny, Value::Null)]).await;
    let pending_key = key_with(&server, "pending", &[(&ask, Value::Null)]).await;
    let alice = server.token("alice", &[Role::Signer]);
    let (status, body) = sign(
        &server,
        &denied_key,
        &alice,
        json!({"digest": b64(&[1; 32])}),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "POLICY_DENIED");
    let (status, body) = sign(
        &server,
        &pending_key,
        &alice,
        json!({"digest": b64(&[2; 32])}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let pending_id = body["request_id"].as_str().expect("id").to_string();

    let (status, report) = replay(&server, &allow, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["evaluated"], 2, "{report}");
    assert_eq!(
        report["before"],
        json!({"allow": 0, "deny": 1, "require_approval": 1})
    );
    assert_eq!(
        report["after"],
        json!({"allow": 2, "deny": 0, "require_approval": 0})
    );
    let changed = report["changed"].as_array().expect("changed");
    let was_pending = changed
        .iter()
        .find(|c| c["request_id"] == pending_id.as_str())
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(was_pending["before"], "require_approval");
    assert_eq!(was_pending["before_reason"], "look first");
    let was_denied = changed
        .iter()
        .find(|c| c["key_id"] == denied_key.as_str())
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(was_denied["before"], "deny");
    assert_eq!(was_denied["before_reason"], "closed");
    assert_eq!(was_denied["after"], "allow");
    assert!(was_denied.get("after_reason").is_none(), "{was_denied}");
}

#[tokio::test]
async fn bad_replays_are_refused_and_need_the_policy_admin_role() {
    let server = setup().await;
    let draft = upload_example(&server, "role-gate").await;
    let ok = json!({"settings": {"roles": ["treasury"]}});
    for (body, want) in [
        (json!({"settings": {"roles": []}}), "refused its settings"),
        (json!({"settings": {"roles": ["x"]}, "limit": 0}), "limit"),
        (
            json!({"settings": {"roles": ["x"]}, "limit": 1001}),
            "limit",
        ),
        (
            json!({"settings": {"roles": ["x"]}, "since": "yesterday"}),
            "since",
        ),
        (
            json!({"settings": {"roles": ["x"]}, "since": "2026-02-01T00:00:00Z",
                   "until": "2026-01-01T00:00:00Z"}),
            "before until",
        ),
    ] {
        let (status, resp) = replay(&server, &draft, body.clone()).await;
        assert_error(
            status,
            &resp,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
        assert!(
            resp["message"].as_str().is_some_and(|m| m.contains(want)),
            "{body}: {resp}"
        );
    }
    let (status, resp) = replay(&server, "no-such-policy", ok.clone()).await;
    assert_error(status, &resp, StatusCode::NOT_FOUND, "NOT_FOUND");
    for role in [Role::Signer, Role::Auditor, Role::KeyAdmin] {
        let token = server.token("someone", &[role]);
        let (status, resp) = server
            .call(
                "POST",
                &format!("/v1/policies/{draft}/replay"),
                Some(&token),
                Some(ok.clone()),
            )
            .await;
        assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");
    }
    let (status, resp) = server
        .call(
            "POST",
            &format!("/v1/policies/{draft}/replay"),
            None,
            Some(ok),
        )
        .await;
    assert_error(status, &resp, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
}

#[tokio::test]
async fn with_no_retention_no_input_is_kept() {
    let server = setup_with(|c| c.policy.replay.days = 0).await;
    let allow = upload_example(&server, "allow-all").await;
    let k = key_with(&server, "k", &[(&allow, Value::Null)]).await;
    let alice = server.token("alice", &[Role::Signer]);
    signed(&server, &k, &alice, 1).await;
    assert_eq!(server.scalar("SELECT COUNT(*) FROM policy_inputs").await, 0);
    let (status, report) = replay(&server, &allow, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["evaluated"], 0);
}

#[tokio::test]
async fn dry_runs_show_what_each_policy_logged_and_signatures_do_not() {
    let server = setup().await;
    let output = r#"{"decision":"allow"}"#;
    let line = "looked at the digest";
    let evaluate = format!(
        "(call $log (i32.const {}) (i32.const {})) \
         (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const {}))",
        16 + output.len(),
        line.len(),
        output.len()
    );
    let module = wat_policy(
        &evaluate,
        &format!("{}{line}", output.replace('"', "\\\"")),
        "",
    );
    let logger = upload(&server, "logger", &module, Value::Null).await;
    let k = key_with(&server, "k", &[(&logger, Value::Null)]).await;
    let alice = server.token("alice", &[Role::Signer]);
    let (status, dry) = sign(
        &server,
        &k,
        &alice,
        json!({"digest": b64(&[3; 32]), "dry_run": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["policy"]["trace"][0]["logs"], json!([line]), "{dry}");
    assert!(
        dry["policy"]["trace"][0]["fuel"]
            .as_u64()
            .is_some_and(|f| f > 0)
    );
    let (status, real) = sign(&server, &k, &alice, json!({"digest": b64(&[3; 32])})).await;
    assert_eq!(status, StatusCode::OK, "{real}");
    assert!(real["signature"].is_string());
    assert!(real["policy"]["trace"][0].get("logs").is_none(), "{real}");
    // Nor does the audit record keep them.
    let auditor = server.token("aud", &[Role::Auditor]);
    let records = server.audit("sign", &auditor).await;
    assert!(!records.is_empty());
    for r in records {
        assert!(!r.to_string().contains(line), "{r}");
    }
}

#[tokio::test]
async fn keyward_policy_replay_answers_the_same_from_a_data_directory() {
    // On SQLite, so that the command reads the data directory as it would on a node; the
    // API tests above cover PostgreSQL, through the same store and replay code.
    let server = setup_with(|c| c.postgres = None).await;
    let allow = upload_example(&server, "allow-all").await;
    let stored = upload_example(&server, "role-gate").await;
    let k = key_with(&server, "k", &[(&allow, Value::Null)]).await;
    let treasurer = server.token_named("treasurer", &["signer", "treasury"]);
    let bob = server.token_named("bob", &["signer"]);
    signed(&server, &k, &treasurer, 1).await;
    let mut bobs = vec![
        signed(&server, &k, &bob, 2).await,
        signed(&server, &k, &bob, 3).await,
    ];
    bobs.sort();
    signed(&server, &k, &treasurer, 4).await;

    let work = tempfile::tempdir().expect("temp dir");
    let module = work.path().join("role-gate.wasm");
    std::fs::write(&module, example_wasm("role-gate")).expect("module");
    let settings = work.path().join("settings.json");
    std::fs::write(&settings, r#"{"roles": ["treasury"]}"#).expect("settings");
    let replay_cli = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["policy", "replay", "--data-dir"])
            .arg(server.dir.path())
            .arg("--settings")
            .arg(&settings)
            .args(["--key", &k])
            .args(extra)
            .output()
            .expect("run keyward");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let module_arg = module.to_str().expect("path");
    // Some decision would change: exit status 1, like a diff.
    let (code, text, err) = replay_cli(&["--module", module_arg]);
    assert_eq!(code, Some(1), "{text}{err}");
    assert!(text.contains("evaluated: 4"), "{text}");
    assert!(text.contains("after:  allow 2, deny 2"), "{text}");
    assert!(text.contains("changed: 2"), "{text}");
    for id in &bobs {
        assert!(text.contains(id.as_str()), "{id} missing: {text}");
    }
    // The same as JSON, and from the stored policy.
    let (code, text, err) = replay_cli(&["--policy", &stored, "--json"]);
    assert_eq!(code, Some(1), "{text}{err}");
    let report: Value = serde_json::from_str(&text).expect("json report");
    assert_eq!(changed_ids(&report), bobs);
    assert_eq!(report["before"]["allow"], 4);
    // The API agrees.
    let (_, api) = replay(
        &server,
        &stored,
        json!({"settings": {"roles": ["treasury"]}, "key_id": k}),
    )
    .await;
    assert_eq!(api["after"], report["after"]);
    // Nothing would change: exit status 0.
    let (code, text, err) =
        replay_cli(&["--module", module_arg, "--since", "2100-01-01T00:00:00Z"]);
    assert_eq!(code, Some(0), "{text}{err}");
    assert!(text.contains("evaluated: 0"), "{text}");
    // Refusals: settings the policy refuses, an unknown policy, no database.
    std::fs::write(&settings, r#"{"roles": []}"#).expect("settings");
    let (code, text, err) = replay_cli(&["--module", module_arg]);
    assert_ne!(code, Some(0), "{text}");
    assert!(err.contains("refused its settings"), "{err}");
    let (code, _, err) = replay_cli(&["--policy", "no-such-policy"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("no policy with id"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["policy", "replay", "--module", module_arg, "--data-dir"])
        .arg(work.path())
        .output()
        .expect("run keyward");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database at"));
}

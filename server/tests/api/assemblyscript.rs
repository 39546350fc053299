//! A policy in a second language: `policies/assemblyscript-value-cap`, written in
//! AssemblyScript from `policy-sdk/ABI.md` and the JSON Schemas alone, built with the `asc`
//! that `scripts/test` installs into `tests/js`, then uploaded, bound and judging real
//! Ethereum sign requests like any Rust policy.
//!
//! A missing node or `asc` fails these tests (it never skips them): `scripts/test` installs both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use keyward_policy::{Intent, testing};
use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::ethereum::{eth, with_account};
use crate::policies::{bind, upload};
use crate::{TestServer, assert_error};

const ETHER: u128 = 1_000_000_000_000_000_000;
const TO: &str = "0x3535353535353535353535353535353535353535";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the AssemblyScript policy once per test process (into a temporary directory, never
/// the source tree) and returns the module.
fn value_cap_wasm() -> &'static [u8] {
    static MODULE: OnceLock<Vec<u8>> = OnceLock::new();
    MODULE.get_or_init(|| {
        let node_modules = workspace().join("tests/js/node_modules");
        let asc = node_modules.join("assemblyscript/bin/asc.js");
        let node = Command::new("node").arg("--version").output();
        assert!(
            node.is_ok_and(|o| o.status.success()),
            "node is not installed; the AssemblyScript policy needs it to build \
             (scripts/test installs nodejs and npm)"
        );
        for needed in [asc.clone(), node_modules.join("json-as/transform")] {
            assert!(
                needed.exists(),
                "{} is missing: run `npm ci` in tests/js (scripts/test does it) to install \
                 assemblyscript and json-as",
                needed.display()
            );
        }
        let out_dir = tempfile::tempdir().expect("temp dir");
        let out = out_dir.path().join("assemblyscript_value_cap.wasm");
        build(&node_modules, &asc, &out);
        std::fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
    })
}

fn build(node_modules: &Path, asc: &Path, out: &Path) {
    // asconfig.json in the policy directory holds the options; the json-as transform is
    // resolved by node (NODE_PATH) and its AssemblyScript sources by asc (--path).
    let output = Command::new("node")
        .arg(asc)
        .args(["--target", "release", "--path"])
        .arg(node_modules)
        .arg("--outFile")
        .arg(out)
        .env("NODE_PATH", node_modules)
        .current_dir(workspace().join("policies/assemblyscript-value-cap"))
        .output()
        .expect("run asc");
    assert!(
        output.status.success() && out.is_file(),
        "asc failed to build policies/assemblyscript-value-cap:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn send(value: u128) -> Value {
    json!({"transaction": {"chain_id": "1", "max_fee_per_gas": "2000000000",
           "max_priority_fee_per_gas": "1", "gas": "21000", "to": TO, "value": value.to_string()}})
}

/// Asserts a denial by the AssemblyScript policy with exactly `reason`, and that nothing
/// signed came back.
fn assert_denied_by_value_cap(status: StatusCode, body: &Value, reason: &str) {
    assert_error(status, body, StatusCode::FORBIDDEN, "POLICY_DENIED");
    for field in ["raw_transaction", "r", "s", "v", "transaction_hash"] {
        assert!(body.get(field).is_none(), "{field} in {body}");
    }
    assert!(body["details"].get("signature").is_none(), "{body}");
    let trace = body["details"]["policy"]["trace"]
        .as_array()
        .expect("trace");
    assert_eq!(trace.len(), 1, "{body}");
    assert_eq!(trace[0]["policy"], "assemblyscript-value-cap", "{body}");
    assert_eq!(trace[0]["decision"], "deny", "{body}");
    assert_eq!(trace[0]["reason"], reason, "{body}");
    assert!(trace[0]["fuel"].as_u64().is_some_and(|f| f > 0), "{body}");
}

async fn upload_value_cap(server: &TestServer) -> String {
    let id = upload(
        server,
        "assemblyscript-value-cap",
        value_cap_wasm(),
        Value::Null,
    )
    .await;
    let (status, body) = server
        .call(
            "GET",
            &format!("/v1/policies/{id}"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["validates_settings"], true, "{body}");
    id
}

#[tokio::test]
async fn assemblyscript_policy_allows_and_denies_real_ethereum_sign_requests() {
    let (server, key) = with_account(None).await;
    let policy = upload_value_cap(&server).await;
    let signer = server.token("alice", &[Role::Signer]);

    // Its settings check refuses what it cannot use, at bind time.
    for (settings, message) in [
        (
            json!({"max_wei": "1e18"}),
            "max_wei must be a decimal string of digits, got 1e18",
        ),
        (
            json!({"max_wei": "1", "deny_kinds": "raw"}),
            "deny_kinds must be a list of strings",
        ),
        (
            json!({"max_wei": "1", "maxwei": "2"}),
            "unknown setting maxwei",
        ),
        (Value::Null, "settings must be {\"max_wei\""),
    ] {
        let (status, body) = bind(&server, &key, &[(&policy, settings.clone())]).await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
        let text = body["message"].as_str().unwrap();
        assert!(
            text.contains("assemblyscript-value-cap refused its settings")
                && text.contains(message),
            "{settings}: {body}"
        );
    }

    let settings = json!({"max_wei": ETHER.to_string(), "deny_kinds": ["ethereum_message"]});
    let (status, body) = bind(&server, &key, &[(&policy, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // At the cap: signed.
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, send(ETHER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["raw_transaction"]
            .as_str()
            .is_some_and(|t| t.starts_with("0x02")),
        "{body}"
    );
    assert!(
        body["r"].as_str().is_some() && body["s"].as_str().is_some(),
        "{body}"
    );
    let trace = &body["policy"]["trace"];
    assert_eq!(trace[0]["policy"], "assemblyscript-value-cap", "{body}");
    assert_eq!(trace[0]["decision"], "allow", "{body}");

    // One wei above: refused, with the policy's reason.
    let (status, body) = eth(&server, &key, "sign-transaction", &signer, send(ETHER + 1)).await;
    assert_denied_by_value_cap(
        status,
        &body,
        "the transaction sends 1000000000000000001 wei, above the cap of \
         1000000000000000000 wei",
    );

    // A kind listed in deny_kinds: refused whatever it says.
    let (status, body) = eth(
        &server,
        &key,
        "sign-message",
        &signer,
        json!({"message": "hello keyward"}),
    )
    .await;
    assert_denied_by_value_cap(
        status,
        &body,
        "intents of kind ethereum_message are not allowed for this key",
    );
    assert!(body.get("signature").is_none(), "{body}");

    // Only the allowed transaction was signed.
    let signed = server
        .scalar("SELECT COUNT(*) FROM sign_requests WHERE status = 'signed'")
        .await;
    assert_eq!(signed, 1);
}

#[tokio::test]
async fn assemblyscript_policy_logs_and_fuel_show_in_the_evaluate_dry_run() {
    let server = crate::setup().await;
    let policy = upload_value_cap(&server).await;
    let pa = server.token("pa", &[Role::PolicyAdmin]);
    let evaluate = |value: &str| {
        let request = testing::request()
            .intent(Intent::EthereumTransaction(testing::ethereum_transaction(
                1, TO, value,
            )))
            .build();
        json!({"request": serde_json::to_value(request).unwrap(),
               "settings": {"max_wei": "1000"}})
    };
    let path = format!("/v1/policies/{policy}/evaluate");

    let (status, resp) = server
        .call("POST", &path, Some(&pa), Some(evaluate("1001")))
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(
        resp["decision"],
        json!({"decision": "deny",
               "reason": "the transaction sends 1001 wei, above the cap of 1000 wei"})
    );
    assert_eq!(
        resp["logs"],
        json!(["value-cap: 1001 wei against a cap of 1000 wei: deny"])
    );
    assert!(resp.get("failure").is_none(), "{resp}");
    // Counted, and small: json-as's start-up arena is shrunk in asconfig.json (at its
    // default 1 MiB, zeroing it alone costs about a million fuel in every fresh instance).
    let fuel = resp["fuel"].as_u64().unwrap();
    assert!(fuel > 0 && fuel < 500_000, "{resp}");

    // Leading zeros do not make a value larger; the same input costs the same fuel.
    let (status, resp) = server
        .call("POST", &path, Some(&pa), Some(evaluate("0001000")))
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["decision"], json!({"decision": "allow"}));
    assert_eq!(
        resp["logs"],
        json!(["value-cap: 0001000 wei against a cap of 1000 wei: allow"])
    );
    let (_, again) = server
        .call("POST", &path, Some(&pa), Some(evaluate("1001")))
        .await;
    assert_eq!(again["fuel"].as_u64(), Some(fuel), "{again}");

    // Intents without a value pass, and say so.
    let raw = json!({"request": serde_json::to_value(testing::request().build()).unwrap(),
                     "settings": {"max_wei": "1000"}});
    let (status, resp) = server.call("POST", &path, Some(&pa), Some(raw)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["decision"], json!({"decision": "allow"}));
    assert_eq!(
        resp["logs"],
        json!(["value-cap: raw carries no value: allow"])
    );
}

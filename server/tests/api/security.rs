//! Security behaviour across routes: JSON-RPC batches as separate requests, approval
//! requirements of several policies kept apart, rights revoked while a request waits or before
//! an idempotent replay, key facts hidden from callers who may not see the key, control
//! characters refused in signers and labels, and refused attempts in the audit log at a
//! bounded rate.

use std::collections::{BTreeSet, HashSet};

use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::ethereum::{recover, with_account};
use crate::policies::{bind, example_wasm, upload};
use crate::wallets::ABANDON_ADDRESS;
use crate::{TestServer, assert_error, b64, setup};

const TO: &str = "0x3535353535353535353535353535353535353535";

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim_start_matches("0x")).unwrap()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sends a JSON-RPC batch to `/rpc/ethereum`; returns the answers.
async fn rpc_batch(server: &TestServer, token: &str, calls: Vec<Value>) -> Vec<Value> {
    let (status, body) = server
        .call(
            "POST",
            "/rpc/ethereum",
            Some(token),
            Some(Value::Array(calls)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap_or_else(|| panic!("a batch is answered with an array: {body}"))
        .clone()
}

fn personal_sign(id: u64, message: &[u8]) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "personal_sign",
           "params": [format!("0x{}", hex::encode(message)), ABANDON_ADDRESS.to_lowercase()]})
}

/// The answer with JSON-RPC id `id`.
fn answer(answers: &[Value], id: u64) -> &Value {
    let matching: Vec<&Value> = answers.iter().filter(|a| a["id"] == id).collect();
    assert_eq!(matching.len(), 1, "one answer with id {id}: {answers:?}");
    matching[0]
}

/// Audit records matching `query` (e.g. `key_id=...&action=sign`), newest first.
async fn audit(server: &TestServer, query: &str) -> Vec<Value> {
    let (status, page) = server
        .call(
            "GET",
            &format!("/v1/audit?{query}&limit=500"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn chain_verifies(server: &TestServer) {
    let report = keyward_server::audit::verify(server.state.signing().store())
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
}

/// Creates a key as admin with `body` merged in (e.g. signers, purpose); returns its id.
async fn create_key_with(server: &TestServer, name: &str, algorithm: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "algorithm": algorithm});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, key) = server
        .call("POST", "/v1/keys", Some(&server.admin), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    key["id"].as_str().unwrap().to_string()
}

async fn set_signers(server: &TestServer, key: &str, signers: Value) -> (StatusCode, Value) {
    server
        .call(
            "PUT",
            &format!("/v1/keys/{key}/signers"),
            Some(&server.admin),
            Some(json!({"signers": signers})),
        )
        .await
}

async fn sign(server: &TestServer, key: &str, token: &str, body: Value) -> (StatusCode, Value) {
    server
        .call(
            "POST",
            &format!("/v1/keys/{key}/sign"),
            Some(token),
            Some(body),
        )
        .await
}

async fn vote(server: &TestServer, id: &str, token: &str) -> (StatusCode, Value) {
    server
        .call(
            "POST",
            &format!("/v1/requests/{id}/approve"),
            Some(token),
            Some(json!({"comment": "ok"})),
        )
        .await
}

/// Binds `approval-above` so that every raw message needs `approvals` approvers from `role`.
async fn bind_approval(server: &TestServer, key: &str, approvals: u32, role: &str) {
    let policy = upload(
        server,
        &format!("approval-{role}"),
        &example_wasm("approval-above"),
        Value::Null,
    )
    .await;
    let settings = json!({"max_message_len": 0, "approvals": approvals, "approver_roles": [role]});
    let (status, body) = bind(server, key, &[(&policy, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn no_signature(body: &Value) {
    for field in [
        "signature",
        "result",
        "raw_transaction",
        "ethereum",
        "document",
    ] {
        assert!(body.get(field).is_none(), "{field} in {body}");
    }
}

#[tokio::test]
async fn a_json_rpc_batch_of_32_personal_signs_makes_32_requests_each_audited() {
    let (server, key) = with_account(None).await;
    let alice = server.token("alice", &[Role::Signer]);
    let messages: Vec<Vec<u8>> = (1..=32u64)
        .map(|i| format!("batch message {i}").into_bytes())
        .collect();
    let calls = (1..=32u64)
        .map(|i| personal_sign(i, &messages[i as usize - 1]))
        .collect();
    let answers = rpc_batch(&server, &alice, calls).await;
    assert_eq!(answers.len(), 32);
    let mut signatures = HashSet::new();
    for i in 1..=32u64 {
        let a = answer(&answers, i);
        assert!(a.get("error").is_none(), "{a}");
        let text = a["result"].as_str().unwrap_or_else(|| panic!("{a}"));
        assert!(text.starts_with("0x"), "{a}");
        let sig = unhex(text);
        assert_eq!(sig.len(), 65, "{a}");
        let hash = alloy_primitives::eip191_hash_message(&messages[i as usize - 1]);
        assert_eq!(
            recover(hash.as_slice(), &sig[..32], &sig[32..64], sig[64] == 28).to_checksum(None),
            ABANDON_ADDRESS,
            "call {i} is signed over its own message"
        );
        signatures.insert(text.to_string());
    }
    assert_eq!(signatures.len(), 32, "every signature differs");

    let records = audit(&server, &format!("key_id={key}&action=sign")).await;
    let ok: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "ok").collect();
    assert_eq!(ok.len(), 32, "{records:?}");
    assert_eq!(records.len(), 32, "{records:?}");
    let ids: HashSet<&str> = ok
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 32, "each call has its own request id");
    let hashes: HashSet<&str> = ok
        .iter()
        .map(|r| r["details"]["signature_sha256"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), 32, "each record names its own signature");
    chain_verifies(&server).await;
}

#[tokio::test]
async fn a_json_rpc_batch_denied_by_policy_gets_three_errors_and_three_denied_records() {
    let (server, key) = with_account(None).await;
    let alice = server.token("alice", &[Role::Signer]);
    let gate = upload(
        &server,
        "role-gate",
        &example_wasm("role-gate"),
        Value::Null,
    )
    .await;
    let (status, body) = bind(&server, &key, &[(&gate, json!({"roles": ["treasury"]}))]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let calls = (1..=3u64)
        .map(|i| personal_sign(i, format!("denied {i}").as_bytes()))
        .collect();
    let answers = rpc_batch(&server, &alice, calls).await;
    assert_eq!(answers.len(), 3);
    let mut answered_ids = BTreeSet::new();
    for i in 1..=3u64 {
        let a = answer(&answers, i);
        assert!(a.get("result").is_none(), "no signature: {a}");
        assert_eq!(a["error"]["code"], 4001, "{a}");
        assert_eq!(a["error"]["data"]["code"], "POLICY_DENIED", "{a}");
        assert!(
            a["error"]["message"]
                .as_str()
                .unwrap()
                .contains("the caller needs one of the roles: treasury"),
            "{a}"
        );
        let rid = a["error"]["data"]["request_id"].as_str().unwrap();
        assert!(!rid.is_empty(), "{a}");
        answered_ids.insert(rid.to_string());
    }
    assert_eq!(answered_ids.len(), 3, "each call has its own request id");

    let records = audit(&server, &format!("key_id={key}&action=sign")).await;
    assert_eq!(records.len(), 3, "{records:?}");
    assert!(
        records.iter().all(|r| r["outcome"] == "denied"),
        "{records:?}"
    );
    let recorded: BTreeSet<String> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recorded, answered_ids, "one record per call, under its id");
    chain_verifies(&server).await;
}

#[tokio::test]
async fn a_json_rpc_batch_with_an_approval_call_leaves_that_request_pending() {
    let (server, key) = with_account(None).await;
    let alice = server.token("alice", &[Role::Signer]);
    let policy = upload(
        &server,
        "approval-above",
        &example_wasm("approval-above"),
        Value::Null,
    )
    .await;
    // Messages pass (digests: false); transactions above 1000 wei wait for treasury.
    let settings = json!({"max_message_len": 0, "max_value_wei": "1000", "approvals": 1,
                          "approver_roles": ["treasury"]});
    let (status, body) = bind(&server, &key, &[(&policy, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let calls = vec![
        personal_sign(1, b"allowed"),
        json!({"jsonrpc": "2.0", "id": 2, "method": "eth_signTransaction",
               "params": [{"from": ABANDON_ADDRESS, "to": TO, "gas": "0x5208", "gasPrice": "0x1",
                           "value": "0x100000", "nonce": "0x0", "chainId": "0x1"}]}),
    ];
    let answers = rpc_batch(&server, &alice, calls).await;
    assert_eq!(answers.len(), 2);
    let allowed = answer(&answers, 1);
    assert_eq!(
        unhex(
            allowed["result"]
                .as_str()
                .unwrap_or_else(|| panic!("{allowed}"))
        )
        .len(),
        65
    );
    let pending = answer(&answers, 2);
    assert!(pending.get("result").is_none(), "{pending}");
    assert_eq!(pending["error"]["code"], -32010, "{pending}");
    assert_eq!(pending["error"]["data"]["code"], "PENDING_APPROVAL");
    let id = pending["error"]["data"]["request_id"].as_str().unwrap();

    let (status, request) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{request}");
    assert_eq!(request["status"], "pending_approval", "{request}");
    assert_eq!(request["votes"], json!([]), "{request}");
    no_signature(&request);
    let requirements = request["requirements"].as_array().unwrap();
    assert_eq!(requirements.len(), 1, "{request}");
    assert_eq!(requirements[0]["met"], false, "{request}");

    // The allowed call was signed and recorded; the pending one was not signed.
    let records = audit(&server, &format!("key_id={key}&action=sign")).await;
    let ok: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "ok").collect();
    assert_eq!(ok.len(), 1, "{records:?}");
    assert_ne!(ok[0]["request_id"], id, "{records:?}");
}

#[tokio::test]
async fn two_approval_policies_each_need_their_own_approvers() {
    let server = setup().await;
    let key = server.create_key("two-quorums", "ed25519").await;
    let key = key["id"].as_str().unwrap();
    let wasm = example_wasm("approval-above");
    let treasury = upload(&server, "approval-treasury", &wasm, Value::Null).await;
    let ops = upload(&server, "approval-ops", &wasm, Value::Null).await;
    let settings =
        |role: &str| json!({"max_message_len": 0, "approvals": 1, "approver_roles": [role]});
    let (status, body) = bind(
        &server,
        key,
        &[(&treasury, settings("treasury")), (&ops, settings("ops"))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let alice = server.token("alice", &[Role::Signer]);
    let (status, pending) = sign(&server, key, &alice, json!({"message": b64(b"pay 5000")})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    assert_eq!(pending["status"], "pending_approval");
    no_signature(&pending);
    let id = pending["request_id"].as_str().unwrap();

    // One ops approver: the ops requirement is met, the treasury one is not.
    let olga = server.token_named("olga", &["approver", "ops"]);
    let (status, voted) = vote(&server, id, &olga).await;
    assert_eq!(status, StatusCode::OK, "{voted}");
    assert_eq!(voted["status"], "pending_approval", "{voted}");
    no_signature(&voted);
    let (status, request) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{request}");
    assert_eq!(request["status"], "pending_approval", "{request}");
    no_signature(&request);
    let requirements = request["requirements"].as_array().unwrap();
    assert_eq!(requirements.len(), 2, "{request}");
    let of = |name: &str| -> Value {
        requirements
            .iter()
            .find(|r| r["policy"] == name)
            .unwrap_or_else(|| panic!("no requirement of {name}: {request}"))
            .clone()
    };
    let (t, o) = (of("approval-treasury"), of("approval-ops"));
    for r in [&t, &o] {
        assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
        assert_eq!(r["approvals_required"], 1, "{r}");
    }
    assert_eq!(t["approver_roles"], json!(["treasury"]));
    assert_eq!(o["approver_roles"], json!(["ops"]));
    assert_eq!(o["approved_by"], json!(["olga"]), "{o}");
    assert_eq!(o["met"], true, "{o}");
    assert_eq!(t["approved_by"], json!([]), "{t}");
    assert_eq!(t["met"], false, "{t}");
    let signed = audit(&server, &format!("key_id={key}&action=sign")).await;
    assert!(signed.iter().all(|r| r["outcome"] != "ok"), "{signed:?}");

    // A treasury approver completes it.
    let tom = server.token_named("tom", &["approver", "treasury"]);
    let (status, voted) = vote(&server, id, &tom).await;
    assert_eq!(status, StatusCode::OK, "{voted}");
    assert_eq!(voted["status"], "signed", "{voted}");
    let (_, request) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&alice), None)
        .await;
    assert_eq!(request["status"], "signed", "{request}");
    assert!(
        request["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["met"] == true),
        "{request}"
    );
    let signature = request["result"]["signature"].as_str().unwrap();
    let (_, verified) = server
        .call(
            "POST",
            &format!("/v1/keys/{key}/verify"),
            Some(&alice),
            Some(json!({"message": b64(b"pay 5000"), "signature": signature})),
        )
        .await;
    assert_eq!(verified["valid"], true, "{verified}");
}

#[tokio::test]
async fn a_requester_removed_from_the_signers_gets_no_signature_and_loses_sight_of_the_request() {
    let server = setup().await;
    let key = create_key_with(
        &server,
        "revoked",
        "ed25519",
        json!({"signers": ["subject:alice"]}),
    )
    .await;
    bind_approval(&server, &key, 2, "treasury").await;
    let alice = server.token("alice", &[Role::Signer]);
    let (status, pending) = sign(&server, &key, &alice, json!({"message": b64(b"pay")})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{pending}");
    let id = pending["request_id"].as_str().unwrap();
    let bob = server.token_named("bob", &["approver", "treasury"]);
    let (status, voted) = vote(&server, id, &bob).await;
    assert_eq!(
        (status, voted["status"].as_str()),
        (StatusCode::OK, Some("pending_approval")),
        "{voted}"
    );
    let (status, _) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&alice), None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the requester sees it while a signer"
    );

    let (status, body) = set_signers(&server, &key, json!(["subject:carol"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["signers"], json!(["subject:carol"]));

    let dave = server.token_named("dave", &["approver", "treasury"]);
    let (status, voted) = vote(&server, id, &dave).await;
    assert_eq!(status, StatusCode::OK, "{voted}");
    assert_eq!(voted["status"], "failed", "{voted}");
    no_signature(&voted);
    let (status, seen) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&dave), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["status"], "failed", "{seen}");
    no_signature(&seen);
    assert!(
        seen["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{seen}"
    );

    let (status, body) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&alice), None)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    no_signature(&body);

    let records = audit(&server, &format!("key_id={key}&action=sign")).await;
    assert!(records.iter().all(|r| r["outcome"] != "ok"), "{records:?}");
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r["request_id"] == id && r["outcome"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{records:?}");
    assert_eq!(failed[0]["details"]["error_code"], "FORBIDDEN");
    chain_verifies(&server).await;
}

#[tokio::test]
async fn an_idempotent_replay_after_the_caller_left_the_signers_is_forbidden() {
    let server = setup().await;
    let key = create_key_with(
        &server,
        "idem-signers",
        "ed25519",
        json!({"signers": ["subject:alice"]}),
    )
    .await;
    let alice = server.token("alice", &[Role::Signer]);
    let path = format!("/v1/keys/{key}/sign");
    let body = json!({"message": b64(b"pay 10")});
    let hdr = [("Idempotency-Key", "k1")];
    let (status, first) = server
        .call_with("POST", &path, Some(&alice), Some(body.clone()), &hdr)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first["signature"].is_string(), "{first}");

    let (status, changed) = set_signers(&server, &key, json!(["subject:carol"])).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let (status, replay) = server
        .call_with("POST", &path, Some(&alice), Some(body), &hdr)
        .await;
    assert_error(status, &replay, StatusCode::FORBIDDEN, "FORBIDDEN");
    no_signature(&replay);
    assert!(
        !replay
            .to_string()
            .contains(first["signature"].as_str().unwrap()),
        "{replay}"
    );

    let records = audit(&server, &format!("key_id={key}&action=sign")).await;
    assert_eq!(
        records.iter().filter(|r| r["outcome"] == "ok").count(),
        1,
        "{records:?}"
    );
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{records:?}");
    assert_eq!(refused[0]["details"]["error_code"], "FORBIDDEN");
    assert_eq!(refused[0]["actor"]["subject"], "alice");
    chain_verifies(&server).await;
}

#[tokio::test]
async fn an_idempotent_replay_after_the_key_was_disabled_is_refused() {
    let server = setup().await;
    let key = create_key_with(
        &server,
        "idem-disabled",
        "p256",
        json!({"signers": ["subject:alice"]}),
    )
    .await;
    let alice = server.token("alice", &[Role::Signer]);
    let path = format!("/v1/keys/{key}/sign");
    let body = json!({"message": b64(b"pay 20")});
    let hdr = [("Idempotency-Key", "k2")];
    let (status, first) = server
        .call_with("POST", &path, Some(&alice), Some(body.clone()), &hdr)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(first["signature"].is_string(), "{first}");

    let (status, disabled) = server
        .call(
            "POST",
            &format!("/v1/keys/{key}/disable"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{disabled}");
    let (status, replay) = server
        .call_with("POST", &path, Some(&alice), Some(body), &hdr)
        .await;
    assert_error(status, &replay, StatusCode::CONFLICT, "KEY_DISABLED");
    no_signature(&replay);

    let records = audit(&server, &format!("key_id={key}&action=sign")).await;
    assert_eq!(
        records.iter().filter(|r| r["outcome"] == "ok").count(),
        1,
        "{records:?}"
    );
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{records:?}");
    assert_eq!(refused[0]["details"]["error_code"], "KEY_DISABLED");
    chain_verifies(&server).await;
}

#[tokio::test]
async fn key_facts_are_hidden_from_callers_outside_the_signers() {
    let server = setup().await;
    let signers = json!({"signers": ["subject:alice"]});
    let raw = create_key_with(&server, "alice-raw", "p256", signers.clone()).await;
    let mut extra = signers.clone();
    extra["purpose"] = json!("document");
    let doc = create_key_with(&server, "alice-doc", "p256", extra).await;
    let (status, cert) = server
        .call(
            "POST",
            &format!("/v1/keys/{doc}/certificate"),
            Some(&server.admin),
            Some(json!({"subject": {"common_name": "Alice Doc"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cert}");
    let cert_id = cert["id"].as_str().unwrap();

    let verify_body = json!({"message": b64(b"hello"), "signature": b64(&[1u8; 64])});
    let mut routes: Vec<(&str, String, Option<Value>)> = Vec::new();
    for key in [&raw, &doc] {
        routes.push(("GET", format!("/v1/keys/{key}"), None));
        routes.push((
            "POST",
            format!("/v1/keys/{key}/verify"),
            Some(verify_body.clone()),
        ));
        routes.push(("GET", format!("/v1/keys/{key}/policies"), None));
    }
    routes.push(("GET", format!("/v1/keys/{doc}/certificates"), None));
    routes.push(("GET", format!("/v1/certificates?key_id={doc}"), None));
    routes.push(("GET", format!("/v1/certificates/{cert_id}"), None));

    let bob = server.token("bob", &[Role::Signer]);
    let alice = server.token("alice", &[Role::Signer]);
    for (method, path, body) in &routes {
        let (status, resp) = server.call(method, path, Some(&bob), body.clone()).await;
        assert_error(status, &resp, StatusCode::NOT_FOUND, "NOT_FOUND");
        assert!(resp.get("public_key").is_none() && resp.get("valid").is_none());
        for who in [&alice, &server.admin] {
            let (status, resp) = server.call(method, path, Some(who), body.clone()).await;
            assert_eq!(status, StatusCode::OK, "{method} {path}: {resp}");
        }
    }
    // The unfiltered certificate list leaves the hidden key's certificate out.
    let (status, page) = server
        .call("GET", "/v1/certificates", Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != cert_id),
        "{page}"
    );
    let (_, page) = server
        .call("GET", "/v1/certificates", Some(&alice), None)
        .await;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == cert_id),
        "{page}"
    );
}

/// A body for each signing route, against `key`.
fn signing_routes(key: &str) -> Vec<(String, Value)> {
    vec![
        (
            format!("/v1/keys/{key}/sign"),
            json!({"digest": b64(&[7u8; 32])}),
        ),
        (
            format!("/v1/keys/{key}/ethereum/sign-message"),
            json!({"message": "hello"}),
        ),
        (
            "/v1/documents/sign".to_string(),
            json!({"key_id": key, "document_hash": b64(&[3u8; 32]),
                   "hash_algorithm": "sha256", "format": "raw"}),
        ),
        (
            format!("/v1/keys/{key}/solana/sign-message"),
            json!({"message": "hello"}),
        ),
        // Not a real PSBT: every refusal tested here comes before the PSBT is decoded.
        (
            format!("/v1/keys/{key}/bitcoin/sign-psbt"),
            json!({"psbt": b64(b"psbt\xff")}),
        ),
    ]
}

#[tokio::test]
async fn without_the_signer_role_a_key_of_another_purpose_is_forbidden_not_wrong_purpose() {
    let (server, eth_key) = with_account(None).await;
    let raw = server.create_key("raw-ed", "ed25519").await;
    let raw = raw["id"].as_str().unwrap().to_string();
    let approver = server.token("ann", &[Role::Approver]);
    let signer = server.token("sid", &[Role::Signer]);
    // Each route with a key whose purpose is not the route's.
    let mut cases = signing_routes(&raw);
    cases[0] = signing_routes(&eth_key).remove(0);
    for (path, body) in cases {
        // A signer learns the purpose mismatch (the key is visible to them) ...
        let (status, resp) = server
            .call("POST", &path, Some(&signer), Some(body.clone()))
            .await;
        assert_error(status, &resp, StatusCode::FORBIDDEN, "WRONG_KEY_PURPOSE");
        // ... a caller without the role is refused for the role.
        let (status, resp) = server
            .call("POST", &path, Some(&approver), Some(body))
            .await;
        assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");
        no_signature(&resp);
        assert!(
            !resp["message"].as_str().unwrap().contains("purpose"),
            "{path}: {resp}"
        );
    }
}

#[tokio::test]
async fn without_the_signer_role_an_unknown_key_is_forbidden_like_a_known_one() {
    let server = setup().await;
    let approver = server.token("ann", &[Role::Approver]);
    // Every route is tried before failing, so that the message names all that answer otherwise.
    let mut wrong = Vec::new();
    for (path, body) in signing_routes("key_does_not_exist") {
        let (status, resp) = server
            .call("POST", &path, Some(&approver), Some(body))
            .await;
        no_signature(&resp);
        if status != StatusCode::FORBIDDEN || resp["code"] != "FORBIDDEN" {
            wrong.push(format!("{path}: {status} {resp}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the role is checked before the key is looked up:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn control_characters_in_signers_and_labels_are_refused() {
    let server = setup().await;
    let key = create_key_with(
        &server,
        "ctl",
        "ed25519",
        json!({"signers": ["subject:alice"]}),
    )
    .await;
    for bad in [
        "subject:al\u{0}ice",
        "subject:alice\n",
        "group:pay\u{1b}[0m",
    ] {
        let (status, body) = set_signers(&server, &key, json!([bad])).await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
        assert!(
            !body["message"].as_str().unwrap().contains(bad),
            "the raw entry is not echoed: {body}"
        );
    }
    let (_, now) = server
        .call("GET", &format!("/v1/keys/{key}"), Some(&server.admin), None)
        .await;
    assert_eq!(now["signers"], json!(["subject:alice"]), "unchanged: {now}");

    for (i, labels) in [
        json!({"te\u{7}am": "payments"}),
        json!({"team": "pay\u{7}ments"}),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("bell-{i}");
        let (status, body) = server
            .call(
                "POST",
                "/v1/keys",
                Some(&server.admin),
                Some(json!({"name": name, "algorithm": "ed25519", "labels": labels})),
            )
            .await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
        assert!(body.get("public_key").is_none(), "{body}");
        let (_, page) = server
            .call("GET", "/v1/keys?limit=500", Some(&server.admin), None)
            .await;
        assert!(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["name"] != name.as_str()),
            "no key was created: {page}"
        );
    }
}

#[tokio::test]
async fn a_garbage_token_is_refused_and_audited() {
    let server = setup().await;
    let garbage = "not.a.jwt-at-all";
    let (status, body) = server.call("GET", "/v1/keys", Some(garbage), None).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED");
    let records = audit(&server, "action=auth").await;
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{records:?}");
    assert_eq!(refused[0]["details"]["error_code"], "UNAUTHENTICATED");
    assert_eq!(refused[0]["details"]["path"], "/v1/keys");
    assert!(
        !refused[0].to_string().contains(garbage),
        "the token is not recorded: {}",
        refused[0]
    );
    chain_verifies(&server).await;
}

#[tokio::test]
async fn a_flood_of_refused_sign_attempts_leaves_a_bounded_number_of_records() {
    let server = setup().await;
    let key = create_key_with(
        &server,
        "flood",
        "ed25519",
        json!({"signers": ["subject:alice"]}),
    )
    .await;
    let bob = server.token("bob", &[Role::Signer]);
    // Stay inside one 60-second window of the limiter.
    let second = now_unix().rem_euclid(60);
    if second > 45 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let window_before = now_unix().div_euclid(60);
    for _ in 0..20 {
        let (status, body) = sign(&server, &key, &bob, json!({"message": b64(b"x")})).await;
        assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
        no_signature(&body);
    }
    let windows = (now_unix().div_euclid(60) - window_before + 1) as usize;
    let records = audit(&server, &format!("key_id={key}&action=sign")).await;
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), records.len(), "{records:?}");
    assert!(!refused.is_empty(), "refusals are recorded: {records:?}");
    assert!(refused.len() <= 5 * windows, "{} records", refused.len());
    if windows == 1 {
        assert_eq!(refused.len(), 5, "{records:?}");
    }
    for r in &refused {
        assert_eq!(r["details"]["error_code"], "FORBIDDEN", "{r}");
        assert_eq!(r["actor"]["subject"], "bob", "{r}");
    }
    chain_verifies(&server).await;
}

#[tokio::test]
async fn refusals_before_the_policy_stage_are_audited_on_every_signing_route() {
    let (server, eth_key) = with_account(None).await;
    let raw = server.create_key("raw-ed", "ed25519").await;
    let raw = raw["id"].as_str().unwrap().to_string();
    let mut cases = signing_routes(&raw);
    cases[0] = signing_routes(&eth_key).remove(0);
    // Every route is tried before failing, so that the message names all that record nothing.
    let mut missing = Vec::new();
    for (token, code) in [
        (server.token("ann", &[Role::Approver]), "FORBIDDEN"),
        (server.token("sid", &[Role::Signer]), "WRONG_KEY_PURPOSE"),
    ] {
        for (path, body) in &cases {
            let before = audit(&server, "action=sign").await.len();
            let (status, resp) = server
                .call("POST", path, Some(&token), Some(body.clone()))
                .await;
            assert_error(status, &resp, StatusCode::FORBIDDEN, code);
            let records = audit(&server, "action=sign").await;
            let newest = records.first();
            if records.len() != before + 1
                || newest
                    .is_none_or(|r| r["outcome"] != "refused" || r["details"]["error_code"] != code)
            {
                missing.push(format!("{code} {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no sign/refused record with that error_code from {missing:?}"
    );
    chain_verifies(&server).await;
}

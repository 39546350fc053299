//! The approval workflow: M-of-N approvals, exactly-once signing under races, expiry,
//! rejection, cancellation, disabled keys, long-polling and the signed webhook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::policies::{bind, example_wasm, upload};
use crate::{TestServer, assert_error, b64, setup, setup_with};

/// Binds `approval-above` so that every message needs `approvals` approvers from `treasury`.
async fn key_needing_approval(server: &TestServer, name: &str, approvals: u32, ttl: u64) -> String {
    let key = server.create_key(name, "ed25519").await;
    let id = key["id"].as_str().unwrap().to_string();
    let policy = upload(
        server,
        &format!("approval-{name}"),
        &example_wasm("approval-above"),
        Value::Null,
    )
    .await;
    let settings = json!({"max_message_len": 0, "approvals": approvals, "approver_roles": ["treasury"], "ttl_seconds": ttl});
    let (status, body) = bind(server, &id, &[(&policy, settings)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    id
}

fn approver(server: &TestServer, who: &str) -> String {
    server.token_named(who, &["approver", "treasury"])
}

async fn request(server: &TestServer, key: &str, token: &str, msg: &[u8]) -> Value {
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/keys/{key}/sign"),
            Some(token),
            Some(json!({"message": b64(msg)})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "pending_approval");
    assert!(body.get("signature").is_none());
    body
}

async fn act(server: &TestServer, id: &str, verb: &str, token: &str) -> (StatusCode, Value) {
    server
        .call(
            "POST",
            &format!("/v1/requests/{id}/{verb}"),
            Some(token),
            Some(json!({"comment": "ok"})),
        )
        .await
}

#[tokio::test]
async fn two_treasury_approvals_complete_the_request_and_the_signature_verifies() {
    let server = setup().await;
    let key = key_needing_approval(&server, "k", 2, 3600).await;
    let alice = server.token_named("alice", &["signer", "approver", "treasury"]);
    let pending = request(&server, &key, &alice, b"pay 1000").await;
    let id = pending["request_id"].as_str().unwrap();
    assert_eq!(pending["status_url"], format!("/v1/requests/{id}"));
    assert_eq!(pending["approvals_required"], 2);

    // The requester cannot approve their own request, even holding the roles.
    let (s, b) = act(&server, id, "approve", &alice).await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "FORBIDDEN");
    // An approver without a treasury role cannot act, nor see it.
    let outsider = server.token_named("oscar", &["approver", "payroll"]);
    let (s, b) = act(&server, id, "approve", &outsider).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "NOT_FOUND");
    // Treasury without the approver role cannot act either.
    let (s, b) = act(
        &server,
        id,
        "approve",
        &server.token_named("tess", &["treasury"]),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "NOT_FOUND");

    let bob = approver(&server, "bob");
    let (s, b) = act(&server, id, "approve", &bob).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "pending_approval");
    assert_eq!(b["votes"].as_array().unwrap().len(), 1);
    let (s, b) = act(&server, id, "approve", &bob).await;
    assert_error(s, &b, StatusCode::CONFLICT, "REQUEST_STATE_CONFLICT");

    let carol = approver(&server, "carol");
    let (s, b) = act(&server, id, "approve", &carol).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "signed", "{b}");

    let (s, mine) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&alice), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let signature = mine["result"]["signature"].as_str().unwrap();
    let (_, verified) = server
        .call(
            "POST",
            &format!("/v1/keys/{key}/verify"),
            Some(&alice),
            Some(json!({"message": b64(b"pay 1000"), "signature": signature})),
        )
        .await;
    assert_eq!(verified["valid"], true);

    // The chain names the approvers on the signature record.
    let (_, audit) = server
        .call(
            "GET",
            &format!("/v1/audit?key_id={key}&action=sign"),
            Some(&server.admin),
            None,
        )
        .await;
    let signed: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "ok")
        .collect();
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0]["details"]["approvers"], json!(["bob", "carol"]));
    let (_, votes) = server
        .call(
            "GET",
            &format!("/v1/audit?key_id={key}&action=approval.approve"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(votes["items"].as_array().unwrap().len(), 2);
    assert!(
        keyward_server::audit::verify(server.state.signing().store())
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test]
async fn racing_approvers_produce_exactly_one_signature() {
    let server = Arc::new(setup().await);
    let key = key_needing_approval(&server, "k", 1, 3600).await;
    let alice = server.token_named("alice", &["signer"]);
    for round in 0..5 {
        let pending = request(&server, &key, &alice, format!("round {round}").as_bytes()).await;
        let id = pending["request_id"].as_str().unwrap().to_string();
        let mut tasks = Vec::new();
        for n in 0..8 {
            let server = server.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let token = approver(&server, &format!("approver-{n}"));
                act(&server, &id, "approve", &token).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                StatusCode::OK => ok += 1,
                StatusCode::CONFLICT => assert_eq!(body["code"], "REQUEST_STATE_CONFLICT"),
                other => panic!("{other}: {body}"),
            }
        }
        assert_eq!(ok, 1, "exactly one approval completes a quorum of one");
        let signed = server
            .audit("sign", &server.admin)
            .await
            .iter()
            .filter(|r| r["request_id"] == id.as_str() && r["outcome"] == "ok")
            .count();
        assert_eq!(signed, 1, "round {round}: one signed audit record");
        let (_, req) = server
            .call("GET", &format!("/v1/requests/{id}"), Some(&alice), None)
            .await;
        assert_eq!(req["status"], "signed");
    }
}

#[tokio::test]
async fn expiry_rejection_cancellation_and_a_disabled_key_end_requests_without_signatures() {
    let server = setup().await;
    let alice = server.token_named("alice", &["signer"]);
    let bob = approver(&server, "bob");

    // Expired: approving afterwards is 409 and the request is `expired`.
    let short = key_needing_approval(&server, "short", 1, 1).await;
    let pending = request(&server, &short, &alice, b"late").await;
    let id = pending["request_id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, b) = act(&server, id, "approve", &bob).await;
    assert_error(s, &b, StatusCode::CONFLICT, "REQUEST_STATE_CONFLICT");
    let (_, req) = server
        .call("GET", &format!("/v1/requests/{id}"), Some(&alice), None)
        .await;
    assert_eq!(req["status"], "expired");
    assert!(req.get("result").is_none());

    // One rejection ends it.
    let key = key_needing_approval(&server, "k", 2, 3600).await;
    let pending = request(&server, &key, &alice, b"no").await;
    let id = pending["request_id"].as_str().unwrap();
    let (s, b) = act(&server, id, "reject", &bob).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("rejected")),
        "{b}"
    );
    let (s, b) = act(&server, id, "approve", &approver(&server, "carol")).await;
    assert_error(s, &b, StatusCode::CONFLICT, "REQUEST_STATE_CONFLICT");

    // Only the requester cancels.
    let pending = request(&server, &key, &alice, b"withdrawn").await;
    let id = pending["request_id"].as_str().unwrap();
    let (s, b) = server
        .call(
            "POST",
            &format!("/v1/requests/{id}/cancel"),
            Some(&bob),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (s, b) = server
        .call(
            "POST",
            &format!("/v1/requests/{id}/cancel"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );

    // The key is disabled before the quorum: the request fails closed.
    let one = key_needing_approval(&server, "one", 1, 3600).await;
    let pending = request(&server, &one, &alice, b"too late").await;
    let id = pending["request_id"].as_str().unwrap();
    let (s, _) = server
        .call(
            "POST",
            &format!("/v1/keys/{one}/disable"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = act(&server, id, "approve", &bob).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "failed", "{b}");
    assert!(b.get("result").is_none(), "{b}");
    let (_, audit) = server
        .call(
            "GET",
            &format!("/v1/audit?key_id={one}&action=sign"),
            Some(&server.admin),
            None,
        )
        .await;
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] != "ok"),
        "{audit}"
    );

    // Approvers list what they may approve.
    let pending = request(&server, &key, &alice, b"listed").await;
    let (_, list) = server
        .call("GET", "/v1/requests?status=pending", Some(&bob), None)
        .await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&pending["request_id"].as_str().unwrap()),
        "{list}"
    );
    let (_, none) = server
        .call(
            "GET",
            "/v1/requests?status=pending",
            Some(&server.token_named("x", &["approver", "payroll"])),
            None,
        )
        .await;
    assert!(none["items"].as_array().unwrap().is_empty(), "{none}");
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_the_state_changes() {
    let server = Arc::new(setup().await);
    let key = key_needing_approval(&server, "k", 1, 3600).await;
    let alice = server.token_named("alice", &["signer"]);
    let pending = request(&server, &key, &alice, b"poll").await;
    let id = pending["request_id"].as_str().unwrap().to_string();
    let waiter = {
        let server = server.clone();
        let (id, alice) = (id.clone(), alice.clone());
        tokio::spawn(async move {
            server
                .call(
                    "GET",
                    &format!("/v1/requests/{id}?wait=60"),
                    Some(&alice),
                    None,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the poll waits while nothing changes"
    );
    let (s, _) = act(&server, &id, "approve", &approver(&server, "bob")).await;
    assert_eq!(s, StatusCode::OK);
    // Far less than the 60 s the caller was willing to wait.
    let (s, body) = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "signed", "{body}");
    let (s, b) = server
        .call(
            "GET",
            &format!("/v1/requests/{id}?wait=100000"),
            Some(&alice),
            None,
        )
        .await;
    assert_error(s, &b, StatusCode::UNPROCESSABLE_ENTITY, "INVALID_REQUEST");
}

/// What a webhook receiver got: (signature header, body) per delivery.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A webhook receiver on loopback that answers `status` and keeps what it got.
async fn receiver(status: u16) -> (String, Received) {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = poem::endpoint::make(move |req: poem::Request| {
        let sink = sink.clone();
        async move {
            let sig = req
                .header("x-keyward-signature")
                .unwrap_or_default()
                .to_string();
            let body = req.into_body().into_vec().await.unwrap_or_default();
            sink.lock().unwrap().push((sig, body));
            poem::Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .finish()
        }
    });
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (format!("http://{addr}/hook"), got)
}

async fn wait_for(got: &Received, pred: impl Fn(&[(String, Vec<u8>)]) -> bool) {
    for _ in 0..200 {
        if pred(&got.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the webhook did not receive the expected events: {} so far",
        got.lock().unwrap().len()
    );
}

#[tokio::test]
async fn the_webhook_gets_signed_events_and_a_failing_one_changes_nothing() {
    let (url, got) = receiver(200).await;
    let server = setup_with(|c| {
        c.approvals.webhook_url = Some(url.clone());
        c.approvals.webhook_secret = Some(zeroize::Zeroizing::new(b"hook-secret".to_vec()));
    })
    .await;
    let key = key_needing_approval(&server, "k", 1, 3600).await;
    let alice = server.token_named("alice", &["signer"]);
    let pending = request(&server, &key, &alice, b"hook").await;
    let id = pending["request_id"].as_str().unwrap();
    act(&server, id, "approve", &approver(&server, "bob")).await;
    wait_for(&got, |events| {
        events
            .iter()
            .any(|(_, b)| serde_json::from_slice::<Value>(b).is_ok_and(|e| e["status"] == "signed"))
    })
    .await;
    for (sig, body) in got.lock().unwrap().iter() {
        let expected = keyward_server::approvals::webhook_signature(b"hook-secret", body);
        assert_eq!(
            sig, &expected,
            "every event is signed with the shared secret"
        );
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["request_id"], id);
    }
    let statuses: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Value>(b).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        statuses.contains(&"pending_approval".to_string()),
        "{statuses:?}"
    );

    // A receiver that always fails: the workflow completes all the same, and retries happen.
    let (url, failing) = receiver(500).await;
    let server = setup_with(|c| {
        c.approvals.webhook_url = Some(url.clone());
        c.approvals.webhook_secret = Some(zeroize::Zeroizing::new(b"s".to_vec()));
    })
    .await;
    let key = key_needing_approval(&server, "k", 1, 3600).await;
    let alice = server.token_named("alice", &["signer"]);
    let pending = request(&server, &key, &alice, b"hook").await;
    let id = pending["request_id"].as_str().unwrap();
    let (s, b) = act(&server, id, "approve", &approver(&server, "bob")).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("signed")),
        "{b}"
    );
    wait_for(&failing, |events| events.len() >= 2).await;
}

#[tokio::test]
async fn an_approval_requirement_beyond_the_server_limits_is_refused_and_audited() {
    let server = setup_with(|c| c.approvals.max_quorum = 3).await;
    let key = key_needing_approval(&server, "k", 5, 3600).await;
    let alice = server.token_named("alice", &["signer"]);
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/keys/{key}/sign"),
            Some(&alice),
            Some(json!({"message": b64(b"x")})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "POLICY_DENIED");
    let (_, audit) = server
        .call(
            "GET",
            &format!("/v1/audit?key_id={key}&action=sign"),
            Some(&server.admin),
            None,
        )
        .await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["outcome"], "denied");
    let (_, pending) = server
        .call(
            "GET",
            "/v1/requests?status=pending",
            Some(&server.admin),
            None,
        )
        .await;
    assert!(pending["items"].as_array().unwrap().is_empty());
    let _ = Role::Signer;
}

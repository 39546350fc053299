//! Two nodes on one PostgreSQL database, in one process: each its own caches, usage
//! reservations and audit writer, as two `keyward serve` processes would have. On SQLite
//! (one node per database) there is nothing to test here; the test command runs this suite on
//! PostgreSQL too.

use keyward_server::store::Dialect;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::policies::{bind, example_wasm, upload};
use crate::{TestServer, assert_error, b64, setup};

async fn two_nodes() -> Option<(TestServer, TestServer)> {
    let one = setup().await;
    if one.dialect() != Dialect::Postgres {
        eprintln!("one node per SQLite database: run with KEYWARD_TEST_POSTGRES for this test");
        return None;
    }
    let two = one.another_node("node-2").await;
    Some((one, two))
}

async fn sign(node: &TestServer, key: &str, message: &[u8]) -> (StatusCode, Value) {
    node.call(
        "POST",
        &format!("/v1/keys/{key}/sign"),
        Some(&node.admin),
        Some(json!({"message": b64(message)})),
    )
    .await
}

#[tokio::test]
async fn a_key_made_on_one_node_signs_on_the_other_into_one_chain() {
    let Some((one, two)) = two_nodes().await else {
        return;
    };
    let key = one.create_key("shared", "ed25519").await;
    let id = key["id"].as_str().unwrap();
    for (i, node) in [&two, &one, &two].into_iter().enumerate() {
        let (status, body) = sign(node, id, format!("m{i}").as_bytes()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["signature"].is_string(), "{body}");
    }
    let report = keyward_server::audit::verify(two.state.signing().store())
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    // Each record names the node that wrote it.
    let auditor = &one.admin;
    let (_, page) = one
        .call("GET", "/v1/audit?action=sign", Some(auditor), None)
        .await;
    let nodes: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node_id"].as_str().unwrap())
        .collect();
    let first = one.state.config().node_id.as_str();
    assert_eq!(nodes, vec!["node-2", first, "node-2"], "{page}");
    let (_, page) = two
        .call(
            "GET",
            "/v1/audit?node_id=node-2&action=sign",
            Some(auditor),
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    let signed = one
        .scalar("SELECT COUNT(*) FROM sign_requests WHERE status = 'signed'")
        .await;
    assert_eq!(signed, 3);
}

#[tokio::test]
async fn a_limit_holds_across_nodes_under_parallel_requests() {
    let Some((one, two)) = two_nodes().await else {
        return;
    };
    let rate = upload(&one, "rate-limit", &example_wasm("rate-limit"), json!({})).await;
    let key = one.create_key("limited", "ed25519").await;
    let id = key["id"].as_str().unwrap().to_string();
    let (status, body) = bind(&one, &id, &[(&rate, json!({"max_per_hour": 3}))]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Both nodes know the key and its binding before the race.
    for node in [&one, &two] {
        let (status, body) = node
            .call("GET", &format!("/v1/keys/{id}"), Some(&node.admin), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let calls = (0..20).map(|i| {
        let node = if i % 2 == 0 { &one } else { &two };
        let id = id.clone();
        async move { sign(node, &id, format!("race {i}").as_bytes()).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let seen: Vec<String> = results
        .iter()
        .map(|(s, b)| format!("{} {}", s.as_u16(), b["code"]))
        .collect();
    let mut signed = 0;
    for (status, body) in &results {
        if *status == StatusCode::OK {
            assert!(body["signature"].is_string(), "{body}");
            signed += 1;
        } else {
            assert_error(*status, body, StatusCode::FORBIDDEN, "POLICY_DENIED");
            assert!(body.get("signature").is_none(), "{body}");
        }
    }
    assert!(
        (1..=3).contains(&signed),
        "a limit of 3 over two nodes signed {signed} times: {seen:?}"
    );
    let recorded = one
        .scalar("SELECT COUNT(*) FROM sign_requests WHERE status = 'signed'")
        .await;
    assert_eq!(
        recorded, signed,
        "every signature returned is recorded, no other"
    );
    // Every request gave its reservation back (or had it taken with its signature) before
    // it answered: none is left to count against the next request.
    let left = one.scalar("SELECT COUNT(*) FROM usage_reservations").await;
    assert_eq!(
        left, 0,
        "every reservation was given back or taken with its signature"
    );
}

#[tokio::test]
async fn a_key_disabled_on_one_node_signs_nowhere_at_once() {
    let Some((one, two)) = two_nodes().await else {
        return;
    };
    for trial in 0..20 {
        let key = one.create_key(&format!("revoked-{trial}"), "ed25519").await;
        let id = key["id"].as_str().unwrap();
        // The other node has the key loaded and cached as active.
        let (status, body) = sign(&two, id, b"before").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = one
            .call(
                "POST",
                &format!("/v1/keys/{id}/disable"),
                Some(&one.admin),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = sign(&two, id, b"after").await;
        assert_error(status, &body, StatusCode::CONFLICT, "KEY_DISABLED");
        assert!(body.get("signature").is_none(), "{body}");
        // Having been refused once, the node shows the key as it is.
        let (_, shown) = two
            .call("GET", &format!("/v1/keys/{id}"), Some(&two.admin), None)
            .await;
        assert_eq!(shown["status"], "disabled", "{shown}");
    }
    let signed = one
        .scalar("SELECT COUNT(*) FROM sign_requests WHERE status = 'signed'")
        .await;
    assert_eq!(signed, 20, "only the signatures made before each disable");
}

#[tokio::test]
async fn policies_bound_on_one_node_judge_the_next_signature_on_the_other() {
    let Some((one, two)) = two_nodes().await else {
        return;
    };
    let rate = upload(&one, "rate-limit", &example_wasm("rate-limit"), json!({})).await;
    for trial in 0..10 {
        let key = one.create_key(&format!("rebound-{trial}"), "ed25519").await;
        let id = key["id"].as_str().unwrap();
        // The other node has judged the key under its (empty) bindings and cached them.
        let (status, body) = sign(&two, id, b"before").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // One signature per hour, and this key has made it.
        let (status, body) = bind(&one, id, &[(&rate, json!({"max_per_hour": 1}))]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = sign(&two, id, b"after").await;
        assert!(body.get("signature").is_none(), "{body}");
        if status == StatusCode::CONFLICT {
            // Judged under the old bindings and refused by the writer: sent again, it is
            // judged under the new ones.
            assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
            let (status, body) = sign(&two, id, b"after").await;
            assert_error(status, &body, StatusCode::FORBIDDEN, "POLICY_DENIED");
        } else {
            assert_error(status, &body, StatusCode::FORBIDDEN, "POLICY_DENIED");
        }
    }
    let signed = one
        .scalar("SELECT COUNT(*) FROM sign_requests WHERE status = 'signed'")
        .await;
    assert_eq!(signed, 10, "only the signatures made before each binding");
}

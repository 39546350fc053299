//! The audit log API and chain verification.

use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::json;

use crate::{assert_error, setup};

#[tokio::test]
async fn admin_actions_and_signatures_are_chained_and_filterable() {
    let server = setup().await;
    let key = server.create_key("k", "ed25519").await;
    let id = key["id"].as_str().unwrap();
    let signer = server.token("alice", &[Role::Signer]);
    for _ in 0..5 {
        let (status, _) = server
            .call(
                "POST",
                &format!("/v1/keys/{id}/sign"),
                Some(&signer),
                Some(json!({"message": "AA=="})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    server
        .call(
            "POST",
            &format!("/v1/keys/{id}/disable"),
            Some(&server.admin),
            None,
        )
        .await;

    let auditor = server.token("carol", &[Role::Auditor]);
    let (status, page) = server
        .call("GET", "/v1/audit?limit=100", Some(&auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    // The dev server's built-in allow-all policy and internal CA made at first start, the key,
    // five signatures, the disable.
    assert_eq!(items.len(), 9);
    let actions: Vec<&str> = items
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"key.disable"));
    assert_eq!(actions[6], "key.create");
    assert_eq!(actions[7], "ca.create");
    assert_eq!(actions.last(), Some(&"policy.upload"));
    assert_eq!(items.last().unwrap()["actor"]["subject"], "system");
    // Newest first, linked by hash.
    for pair in items.windows(2) {
        assert_eq!(
            pair[0]["seq"].as_i64().unwrap(),
            pair[1]["seq"].as_i64().unwrap() + 1
        );
        assert_eq!(pair[0]["prev_hash"], pair[1]["hash"]);
    }
    let sign = &items[1];
    assert_eq!(sign["actor"]["subject"], "alice");
    assert_eq!(sign["outcome"], "ok");
    assert_eq!(sign["details"]["intent"]["kind"], "raw");
    assert!(sign["details"]["signature_sha256"].is_string());
    // Every record names the node that wrote it, and the log filters by node.
    let node = server.state.config().node_id.clone();
    assert!(!node.is_empty());
    assert!(
        items.iter().all(|r| r["node_id"] == node.as_str()),
        "{page}"
    );
    let (_, by_node) = server
        .call(
            "GET",
            &format!("/v1/audit?node_id={node}&limit=100"),
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(by_node["items"].as_array().unwrap().len(), 9);
    let (_, elsewhere) = server
        .call(
            "GET",
            "/v1/audit?node_id=no-such-node",
            Some(&auditor),
            None,
        )
        .await;
    assert!(elsewhere["items"].as_array().unwrap().is_empty());

    let (_, by_subject) = server
        .call(
            "GET",
            "/v1/audit?subject=alice&limit=2",
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(by_subject["items"].as_array().unwrap().len(), 2);
    let cursor = by_subject["next_cursor"].as_str().unwrap();
    let (_, next) = server
        .call(
            "GET",
            &format!("/v1/audit?subject=alice&limit=10&cursor={cursor}"),
            Some(&auditor),
            None,
        )
        .await;
    assert_eq!(next["items"].as_array().unwrap().len(), 3);
    assert!(next["next_cursor"].is_null());

    let (_, future) = server
        .call(
            "GET",
            "/v1/audit?since=2999-01-01T00:00:00Z",
            Some(&auditor),
            None,
        )
        .await;
    assert!(future["items"].as_array().unwrap().is_empty());
    let (status, resp) = server
        .call("GET", "/v1/audit?since=yesterday", Some(&auditor), None)
        .await;
    assert_error(
        status,
        &resp,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
    let (status, resp) = server.call("GET", "/v1/audit", Some(&signer), None).await;
    assert_error(status, &resp, StatusCode::FORBIDDEN, "FORBIDDEN");

    let report = keyward_server::audit::verify(server.state.signing().store())
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.records, 9);
}

#[tokio::test]
async fn verification_names_the_edited_or_missing_record() {
    let server = setup().await;
    for i in 0..6 {
        server.create_key(&format!("k{i}"), "ed25519").await;
    }
    server
        .sql("UPDATE audit_log SET details = '{\"name\":\"forged\"}' WHERE seq = 3")
        .await;
    let report = keyward_server::audit::verify(server.state.signing().store())
        .await
        .unwrap();
    assert_eq!(report.broken.as_ref().map(|b| b.0), Some(3), "{report:?}");

    // The node that wrote a record is hashed with it: neither renamed nor erased unnoticed.
    for edit in [
        "UPDATE audit_log SET node_id = 'elsewhere' WHERE seq = 2",
        "UPDATE audit_log SET node_id = NULL WHERE seq = 2",
    ] {
        let server = setup().await;
        for i in 0..3 {
            server.create_key(&format!("k{i}"), "ed25519").await;
        }
        server.sql(edit).await;
        let report = keyward_server::audit::verify(server.state.signing().store())
            .await
            .unwrap();
        assert_eq!(
            report.broken.as_ref().map(|b| b.0),
            Some(2),
            "{edit}: {report:?}"
        );
    }

    let server = setup().await;
    for i in 0..6 {
        server.create_key(&format!("k{i}"), "ed25519").await;
    }
    server.sql("DELETE FROM audit_log WHERE seq = 4").await;
    let report = keyward_server::audit::verify(server.state.signing().store())
        .await
        .unwrap();
    assert_eq!(report.broken.as_ref().map(|b| b.0), Some(4), "{report:?}");

    server.sql("DELETE FROM audit_log WHERE seq >= 4").await;
    let report = keyward_server::audit::verify(server.state.signing().store())
        .await
        .unwrap();
    assert_eq!(
        report.broken.as_ref().map(|b| b.0),
        Some(4),
        "removing the newest records is detected: {report:?}"
    );
}

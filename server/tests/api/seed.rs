//! `keyward seed`: synthetic keys and signature records through the server's own code, with
//! the chain intact and every seeded key usable.

use keyward_server::commands::{self, DatabaseLocation};
use poem::http::StatusCode;
use serde_json::json;

use crate::{b64, setup_in};

#[tokio::test]
async fn seeding_adds_usable_keys_and_continues_a_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let report = commands::seed(dir.path(), 30, 200).await.unwrap();
    assert_eq!(report.keys, 30);
    // The directory's own start-up records, 30 key records and the template signature come
    // first; the rest are signatures.
    assert!(
        report.signatures > 150 && report.signatures < 200 - 31,
        "{report:?}"
    );
    assert_eq!(report.records, 200);
    let verified = commands::audit_verify(DatabaseLocation::DataDir(dir.path().to_path_buf()))
        .await
        .unwrap();
    assert!(verified.broken.is_none(), "{:?}", verified.broken);
    assert_eq!(verified.records, 200);

    // A second run adds keys of its own names and appends to the same chain; a target the
    // log already holds adds no signature record.
    let again = commands::seed(dir.path(), 5, 250).await.unwrap();
    assert_eq!((again.keys, again.records), (5, 250));
    let none = commands::seed(dir.path(), 1, 10).await.unwrap();
    assert_eq!((none.signatures, none.records), (0, 252));
    let verified = commands::audit_verify(DatabaseLocation::DataDir(dir.path().to_path_buf()))
        .await
        .unwrap();
    assert!(verified.broken.is_none(), "{:?}", verified.broken);
    assert_eq!(verified.records, 252);

    // The server opens the directory and every seeded key signs under its KEK.
    let server = setup_in(dir, |_| {}).await;
    let (status, page) = server
        .call("GET", "/v1/keys?limit=100", Some(&server.admin), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let seeded: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"].as_str().unwrap().starts_with("seed-"))
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(seeded.len(), 36);
    for id in [seeded[0], seeded[35]] {
        let (status, body) = server
            .call(
                "POST",
                &format!("/v1/keys/{id}/sign"),
                Some(&server.admin),
                Some(json!({"message": b64(b"after seeding")})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body["signature"].as_str().is_some_and(|s| !s.is_empty()),
            "{body}"
        );
    }
    // Every appended record is a signature: the seeded ones, three templates and the two
    // signatures made just now.
    let signs = report.signatures + again.signatures + 3 + 2;
    let signed = server.audit("sign", &server.admin).await;
    assert_eq!(signed.len() as u64, signs);
    let created = server.audit("key.create", &server.admin).await;
    assert_eq!(created.len(), 36);
}

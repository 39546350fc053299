//! HD wallets and accounts: creation, import, the mnemonic shown once, Ethereum accounts at
//! their BIP-44 paths, roles, and refusals.

use keyward_server::auth::Role;
use poem::http::StatusCode;
use serde_json::{Value, json};

use crate::{TestServer, assert_error, setup};

pub const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
pub const ABANDON_ADDRESS: &str = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94";

/// Imports `abandon ... about` as `name` and returns its id.
pub async fn import_abandon(server: &TestServer, name: &str) -> String {
    let (status, body) = server
        .call(
            "POST",
            "/v1/wallets",
            Some(&server.admin),
            Some(json!({"name": name, "mnemonic": ABANDON})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("mnemonic").is_none(), "{body}");
    body["wallet"]["id"].as_str().unwrap().to_string()
}

/// Derives an Ethereum account; returns the response.
pub async fn account(server: &TestServer, wallet: &str, body: Value) -> Value {
    let (status, resp) = server
        .call(
            "POST",
            &format!("/v1/wallets/{wallet}/accounts"),
            Some(&server.admin),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{resp}");
    resp
}

fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let path = e.unwrap().path();
        path.is_file()
            && std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
    })
}

#[tokio::test]
async fn abandon_about_derives_the_known_first_address() {
    let server = setup().await;
    let wallet = import_abandon(&server, "w-abandon").await;
    let resp = account(&server, &wallet, json!({"chain": "ethereum", "index": 0})).await;
    assert_eq!(resp["account"]["address"], ABANDON_ADDRESS, "{resp}");
    assert_eq!(resp["account"]["path"], "m/44'/60'/0'/0/0");
    assert_eq!(resp["key"]["purpose"], "ethereum");
    assert_eq!(resp["key"]["algorithm"], "secp256k1");
    assert_eq!(resp["key"]["name"], "w-abandon.ethereum.44h.60h.0h.0.0");
    assert!(
        resp["account"]["public_key"]
            .as_str()
            .unwrap()
            .starts_with("0x0")
    );
    // The same account by its full path is a conflict; index 1 is another address.
    let (status, body) = server
        .call(
            "POST",
            &format!("/v1/wallets/{wallet}/accounts"),
            Some(&server.admin),
            Some(json!({"chain": "ethereum", "path": "m/44'/60'/0'/0/0", "name": "again"})),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
    let second = account(&server, &wallet, json!({"chain": "ethereum", "index": 1})).await;
    assert_eq!(
        second["account"]["address"],
        "0x6Fac4D18c912343BF86fa7049364Dd4E424Ab9C0"
    );
    // The wallet lists both accounts.
    let (status, detail) = server
        .call(
            "GET",
            &format!("/v1/wallets/{wallet}"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["accounts"].as_array().unwrap().len(), 2);
    assert_eq!(detail["wallet"]["origin"], "imported");
    assert_eq!(detail["wallet"]["words"], 12);
    // The key is an ordinary key.
    let key_id = resp["key"]["id"].as_str().unwrap();
    let (status, key) = server
        .call(
            "GET",
            &format!("/v1/keys/{key_id}"),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{key}");
    // The phrase is not stored anywhere in the data directory.
    assert!(!files_contain(
        server.dir.path(),
        b"abandon abandon abandon"
    ));
}

#[tokio::test]
async fn a_new_mnemonic_is_shown_once_and_only_when_asked() {
    let server = setup().await;
    let (status, body) = server
        .call(
            "POST",
            "/v1/wallets",
            Some(&server.admin),
            Some(json!({"name": "w-new", "words": 24, "passphrase": "TREZOR", "reveal_mnemonic": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let phrase = body["mnemonic"].as_str().unwrap().to_string();
    assert_eq!(phrase.split(' ').count(), 24);
    assert_eq!(body["wallet"]["passphrase"], true);
    assert_eq!(body["wallet"]["origin"], "generated");
    let id = body["wallet"]["id"].as_str().unwrap();
    let (_, detail) = server
        .call(
            "GET",
            &format!("/v1/wallets/{id}"),
            Some(&server.admin),
            None,
        )
        .await;
    let (_, list) = server
        .call("GET", "/v1/wallets", Some(&server.admin), None)
        .await;
    let (_, audit) = server
        .call("GET", "/v1/audit?limit=500", Some(&server.admin), None)
        .await;
    let first_words: String = phrase.split(' ').take(4).collect::<Vec<_>>().join(" ");
    for v in [&detail, &list, &audit] {
        assert!(!v.to_string().contains(&first_words), "{v}");
    }
    assert!(!files_contain(server.dir.path(), first_words.as_bytes()));
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Without reveal_mnemonic, no phrase comes back.
    let (status, body) = server
        .call(
            "POST",
            "/v1/wallets",
            Some(&server.admin),
            Some(json!({"name": "w-quiet"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("mnemonic").is_none(), "{body}");
    assert_eq!(body["wallet"]["words"], 12);
}

#[tokio::test]
async fn wallet_refusals() {
    let server = setup().await;
    let signer = server.token("alice", &[Role::Signer]);
    let (status, body) = server
        .call(
            "POST",
            "/v1/wallets",
            Some(&signer),
            Some(json!({"name": "w"})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, body) = server.call("GET", "/v1/wallets", Some(&signer), None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    for (req, why) in [
        (json!({"name": "w", "words": 13}), "13 words"),
        (
            json!({"name": "w", "mnemonic": "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon"}),
            "checksum",
        ),
        (
            json!({"name": "w", "mnemonic": ABANDON, "reveal_mnemonic": true}),
            "reveal an import",
        ),
        (json!({"name": "bad name!"}), "name"),
    ] {
        let (status, body) = server
            .call("POST", "/v1/wallets", Some(&server.admin), Some(req))
            .await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
        assert!(body.get("mnemonic").is_none(), "{why}: {body}");
    }
    let wallet = import_abandon(&server, "w-ok").await;
    let (status, body) = server
        .call(
            "POST",
            "/v1/wallets",
            Some(&server.admin),
            Some(json!({"name": "w-ok"})),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
    let accounts = format!("/v1/wallets/{wallet}/accounts");
    // Bitcoin and Solana accounts are derived (see bitcoin_solana.rs); Ed25519 (SLIP-0010)
    // has hardened steps only.
    let (status, body) = server
        .call(
            "POST",
            &accounts,
            Some(&server.admin),
            Some(json!({"chain": "solana", "path": "m/44'/501'/0'/0"})),
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST",
    );
    assert!(
        body["message"].as_str().unwrap().contains("hardened"),
        "{body}"
    );
    for req in [
        json!({"chain": "ethereum", "index": 1, "path": "m/0"}),
        json!({"chain": "ethereum", "path": "44'/60'"}),
    ] {
        let (status, body) = server
            .call("POST", &accounts, Some(&server.admin), Some(req))
            .await;
        assert_error(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_REQUEST",
        );
    }
    let (status, body) = server
        .call(
            "POST",
            &accounts,
            Some(&signer),
            Some(json!({"chain": "ethereum"})),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "FORBIDDEN");
    let (status, body) = server
        .call(
            "POST",
            "/v1/wallets/wal_nope/accounts",
            Some(&server.admin),
            Some(json!({"chain": "ethereum"})),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
}

//! In-process API tests: one test binary, a module per area, a shared `setup()`.
#![allow(clippy::unwrap_used)]

mod approvals;
mod architecture;
mod assemblyscript;
mod audit;
mod bitcoin_solana;
mod builders;
mod csc;
mod documents;
mod errors;
mod ethereum;
mod identity;
mod keys;
mod nodes;
mod openapi;
mod policies;
mod policy_author;
mod replay;
mod security;
mod seed;
mod signed_policies;
mod signing;
mod wallets;

use std::time::Duration;

use keyward_server::api::routes;
use keyward_server::app::AppState;
use keyward_server::auth::Role;
use keyward_server::config::Config;
use poem::EndpointExt;
use poem::endpoint::BoxEndpoint;
use poem::http::StatusCode;
use poem::test::TestClient;
use serde_json::{Value, json};
use tempfile::TempDir;

/// A server on a temporary data directory, reached through poem's test client.
pub struct TestServer {
    pub client: TestClient<BoxEndpoint<'static>>,
    pub state: AppState,
    pub dir: TempDir,
    pub admin: String,
}

/// The same configuration as `keyward dev` (default decision `allow`), in a temp dir.
pub async fn setup() -> TestServer {
    setup_with(|_| {}).await
}

/// Like `setup`, after `edit` changes the configuration.
pub async fn setup_with(edit: impl FnOnce(&mut Config)) -> TestServer {
    setup_in(tempfile::tempdir().expect("temp dir"), edit).await
}

/// Like `setup_with`, on an existing `keyward dev` data directory.
pub async fn setup_in(dir: TempDir, edit: impl FnOnce(&mut Config)) -> TestServer {
    let (mut config, _) =
        keyward_server::commands::dev_config(dir.path(), "127.0.0.1:0".parse().unwrap())
            .expect("dev config");
    // A data directory that already holds a SQLite database (`keyward seed`) keeps it.
    let existing = dir.path().join("keyward.db").exists();
    if !existing
        && let Some(url) = keyward_server::store::scratch::test_postgres_url()
            .await
            .expect("scratch database")
    {
        config.postgres = Some(keyward_server::store::scratch::postgres_options(&url));
    }
    edit(&mut config);
    start(config, dir).await
}

/// A server on `config`, whose data directory is `dir` (to start again on the same state).
pub async fn start(config: Config, dir: TempDir) -> TestServer {
    let state = AppState::build(config, "http://keyward.test")
        .await
        .expect("state");
    let client = TestClient::new(routes::routes(state.clone()).boxed());
    let mut server = TestServer {
        client,
        state,
        dir,
        admin: String::new(),
    };
    server.admin = server.token("admin-1", &[Role::Admin]);
    server
}

impl TestServer {
    /// Which database the server runs on.
    pub fn dialect(&self) -> keyward_server::store::Dialect {
        self.state.signing().store().dialect()
    }

    /// Runs SQL statements on the server's database behind its back (to tamper, or to break
    /// it).
    pub async fn sql(&self, statements: &str) {
        self.state
            .signing()
            .store()
            .execute_for_tests(statements)
            .await
            .unwrap_or_else(|e| panic!("{statements}: {e}"));
    }

    /// The integer a query on the server's database answers.
    pub async fn scalar(&self, query: &str) -> i64 {
        self.state
            .signing()
            .store()
            .scalar_for_tests(query)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// A byte string as a literal of the server's database.
    pub fn bytes_literal(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self.dialect() {
            keyward_server::store::Dialect::Sqlite => format!("x'{hex}'"),
            keyward_server::store::Dialect::Postgres => format!("'\\x{hex}'::bytea"),
        }
    }

    /// Mints a development token.
    pub fn token(&self, subject: &str, roles: &[Role]) -> String {
        self.state
            .dev_issuer()
            .expect("dev issuer")
            .mint(subject, roles, Duration::from_secs(600))
            .expect("mint")
    }

    /// Mints a development token whose roles claim holds `roles` as given (Keyward roles and
    /// other names, such as an approver group).
    pub fn token_named(&self, subject: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        self.state
            .dev_issuer()
            .expect("dev issuer")
            .mint_named(subject, &roles, Duration::from_secs(600))
            .expect("mint")
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and JSON.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with(method, path, token, body, &[]).await
    }

    /// The audit records of `action` that `token` may read, newest first (up to 500); fails
    /// the test unless the audit API answers 200.
    pub async fn audit(&self, action: &str, token: &str) -> Vec<Value> {
        let path = format!("/v1/audit?action={action}&limit=500");
        let (status, page) = self.call("GET", &path, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["items"].as_array().expect("audit items").clone()
    }

    /// Like `call`, with extra headers.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = match method {
            "GET" => self.client.get(path),
            "POST" => self.client.post(path),
            "PUT" => self.client.put(path),
            "DELETE" => self.client.delete(path),
            other => panic!("method {other}"),
        };
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body_json(&b);
        }
        let resp = req.send().await;
        let status = resp.0.status();
        let bytes = resp.0.into_body().into_bytes().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    /// Creates a key as admin and returns its JSON.
    pub async fn create_key(&self, name: &str, algorithm: &str) -> Value {
        let (status, body) = self
            .call(
                "POST",
                "/v1/keys",
                Some(&self.admin),
                Some(json!({"name": name, "algorithm": algorithm})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

/// Asserts the uniform error body with `code`, and that no signature came back.
pub fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body.get("signature").is_none(), "{body}");
}

/// Standard base64.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl TestServer {
    /// A second node on the same database (PostgreSQL only): the same configuration, KEK and
    /// development issuer, its own caches, audit writer and name.
    pub async fn another_node(&self, node_id: &str) -> TestServer {
        let mut config = self.state.config().clone();
        config.node_id = node_id.to_string();
        let state = AppState::build(config, "http://keyward.test")
            .await
            .expect("second node");
        TestServer {
            client: TestClient::new(routes::routes(state.clone()).boxed()),
            state,
            dir: tempfile::tempdir().expect("temp dir"),
            admin: self.admin.clone(),
        }
    }
}

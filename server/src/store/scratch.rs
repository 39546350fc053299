//! Scratch databases for tests: the store-level tests and the API suite run on SQLite, or on
//! PostgreSQL when `KEYWARD_TEST_POSTGRES` names a database of a throwaway cluster (the test
//! command sets it; see `scripts/pg-cluster`). Each test gets a database of its own there,
//! created from that one and left for the cluster's removal.

use std::time::Duration;

#[cfg(test)]
use super::Store;
use super::{PostgresOptions, Result, StoreError};

/// The environment variable that switches tests to PostgreSQL.
pub const TEST_POSTGRES_ENV: &str = "KEYWARD_TEST_POSTGRES";

/// The PostgreSQL database a test should use: a new one when the switch is set.
pub async fn test_postgres_url() -> Result<Option<String>> {
    match std::env::var(TEST_POSTGRES_ENV) {
        Ok(admin) if !admin.is_empty() => Ok(Some(create_database(&admin).await?)),
        _ => Ok(None),
    }
}

/// Pool settings of scratch databases (tests open many; each pool stays small).
pub fn postgres_options(url: &str) -> PostgresOptions {
    PostgresOptions {
        url: url.to_string(),
        password: None,
        max_connections: 6,
        acquire_timeout: Duration::from_secs(30),
    }
}

/// Creates an empty database beside the one `admin_url` names and returns its URL.
async fn create_database(admin_url: &str) -> Result<String> {
    use sqlx::Connection as _;
    let name = format!("kw_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    // A generated name of hex digits: nothing to quote.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    with_database(admin_url, &name)
        .ok_or_else(|| StoreError::Check(format!("{TEST_POSTGRES_ENV} is not a postgres:// URL")))
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> Option<String> {
    let host_at = url.find("://")? + 3;
    let path_at = url[host_at..].find('/').map_or(url.len(), |i| host_at + i);
    let query = url[path_at..].find('?').map_or("", |i| &url[path_at + i..]);
    Some(format!("{}/{name}{query}", &url[..path_at]))
}

/// A store on a scratch database, for the store-level tests (the guard keeps a SQLite
/// file's directory).
#[cfg(test)]
pub(crate) async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = match test_postgres_url().await.expect("scratch database") {
        Some(url) => Store::open_postgres(&postgres_options(&url)).await,
        None => Store::open_file(&dir.path().join("scratch.db")).await,
    };
    (dir, store.expect("open scratch database"))
}

/// Inserts a software key row `id` (no usable material) with `signers` (a JSON array).
#[cfg(test)]
pub(crate) async fn insert_key(store: &Store, id: &str, signers: &str) {
    use super::db::on_pool;
    on_pool!(store.pool(), |p| sqlx::query(
        "INSERT INTO keys (id, name, algorithm, purpose, backend, status, public_key, \
         material, created_at, created_by, updated_at, signers) \
         VALUES ($1, $1, 'ed25519', 'raw', 'software', 'active', $2, $2, 't', 'a', 't', $3)",
    )
    .bind(id)
    .bind(vec![0u8])
    .bind(signers)
    .execute(p)
    .await
    .map(|_| ()))
    .expect("insert key");
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_of_a_url_is_replaced() {
        for (url, expect) in [
            (
                "postgres://k@127.0.0.1:5/keyward",
                "postgres://k@127.0.0.1:5/x",
            ),
            (
                "postgres://k@h/keyward?sslmode=disable",
                "postgres://k@h/x?sslmode=disable",
            ),
            ("postgres://k@h", "postgres://k@h/x"),
        ] {
            assert_eq!(super::with_database(url, "x").as_deref(), Some(expect));
        }
    }
}

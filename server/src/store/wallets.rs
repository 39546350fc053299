//! Wallet rows (sealed seeds) and account rows (keys derived from a wallet).

use super::db::{Conn, DbRow, on_conn, on_pool};

use super::{Result, Store, conflict_or};

/// A stored HD wallet. `seed` is the sealed BIP-39 seed, never the mnemonic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRow {
    /// Wallet id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Words of the mnemonic.
    pub words: i64,
    /// Whether a BIP-39 passphrase was used.
    pub passphrase: bool,
    /// `generated` or `imported`.
    pub origin: String,
    /// Master key fingerprint, hex.
    pub fingerprint: String,
    /// Sealed seed.
    pub seed: Vec<u8>,
    /// Labels, JSON object.
    pub labels: String,
    /// Creation time.
    pub created_at: String,
    /// Creator (`issuer|subject`).
    pub created_by: String,
}

/// A stored account: a key derived from a wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// The key's id.
    pub key_id: String,
    /// The wallet.
    pub wallet_id: String,
    /// `ethereum`, `bitcoin`, `solana`.
    pub chain: String,
    /// Derivation path.
    pub path: String,
    /// The chain's address of the key.
    pub address: String,
    /// Allowed chain ids, JSON array (empty: any).
    pub chain_ids: String,
    /// The chain's settings of the account, JSON object.
    pub settings: String,
    /// Creation time.
    pub created_at: String,
}

fn wallet_from_row(row: &impl DbRow) -> Result<WalletRow> {
    Ok(WalletRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        words: row.try_get("words")?,
        passphrase: row.try_get::<i64, _>("passphrase")? != 0,
        origin: row.try_get("origin")?,
        fingerprint: row.try_get("fingerprint")?,
        seed: row.try_get("seed")?,
        labels: row.try_get("labels")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

fn account_from_row(row: &impl DbRow) -> Result<AccountRow> {
    Ok(AccountRow {
        key_id: row.try_get("key_id")?,
        wallet_id: row.try_get("wallet_id")?,
        chain: row.try_get("chain")?,
        path: row.try_get("path")?,
        address: row.try_get("address")?,
        chain_ids: row.try_get("chain_ids")?,
        settings: row.try_get("settings")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) async fn insert_wallet(conn: &mut Conn<'_>, row: &WalletRow) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query(
            "INSERT INTO wallets (id, name, words, passphrase, origin, fingerprint, seed, labels, \
         created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(row.words)
        .bind(i64::from(row.passphrase))
        .bind(&row.origin)
        .bind(&row.fingerprint)
        .bind(&row.seed)
        .bind(&row.labels)
        .bind(&row.created_at)
        .bind(&row.created_by)
        .execute(conn)
        .await
        .map_err(|e| {
            conflict_or(e, || {
                format!("a wallet named {:?} already exists", row.name)
            })
        })?;
        Ok(())
    })
}

pub(crate) async fn insert_account(conn: &mut Conn<'_>, row: &AccountRow) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query(
            "INSERT INTO wallet_accounts (key_id, wallet_id, chain, path, address, chain_ids, \
         settings, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&row.key_id)
        .bind(&row.wallet_id)
        .bind(&row.chain)
        .bind(&row.path)
        .bind(&row.address)
        .bind(&row.chain_ids)
        .bind(&row.settings)
        .bind(&row.created_at)
        .execute(conn)
        .await
        .map_err(|e| {
            conflict_or(e, || {
                format!(
                    "wallet {} already has a {} account at {}",
                    row.wallet_id, row.chain, row.path
                )
            })
        })?;
        Ok(())
    })
}

impl Store {
    /// A wallet by id.
    pub async fn wallet(&self, id: &str) -> Result<Option<WalletRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM wallets WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(wallet_from_row).transpose()
        })
    }

    /// Wallets ordered by id, after `after`, at most `limit`.
    pub async fn wallets_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<WalletRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query("SELECT * FROM wallets WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(wallet_from_row).collect()
        })
    }

    /// The accounts of a wallet, oldest first.
    pub async fn wallet_accounts(&self, wallet_id: &str) -> Result<Vec<AccountRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query(
                "SELECT * FROM wallet_accounts WHERE wallet_id = $1 ORDER BY created_at, key_id",
            )
            .bind(wallet_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(account_from_row).collect()
        })
    }

    /// The account row of a key, if the key was derived from a wallet.
    pub async fn account_of_key(&self, key_id: &str) -> Result<Option<AccountRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM wallet_accounts WHERE key_id = $1")
                .bind(key_id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(account_from_row).transpose()
        })
    }

    /// Accounts of `chain` (every wallet), oldest first, at most `limit`.
    pub async fn accounts_of_chain(&self, chain: &str, limit: u32) -> Result<Vec<AccountRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query(
            "SELECT * FROM wallet_accounts WHERE chain = $1 ORDER BY created_at, key_id LIMIT $2",
        )
        .bind(chain)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
            rows.iter().map(account_from_row).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    /// Migration 0012 moves the settings a chain kept in a table of its own into the account
    /// row, and drops that table.
    #[tokio::test]
    async fn account_settings_migration_keeps_existing_settings() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("old.db"))
            .create_if_missing(true)
            .foreign_keys(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let mut before = sqlx::migrate!("./migrations/sqlite");
        before.migrations = before
            .migrations
            .iter()
            .filter(|m| m.version < 12)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        before.run(&pool).await.unwrap();
        for (key, chain) in [("key_a", "bitcoin"), ("key_b", "ethereum")] {
            sqlx::query(
                "INSERT INTO wallet_accounts (key_id, wallet_id, chain, path, address, \
                 created_at) VALUES ($1, 'wal_1', $2, $3, 'addr', 'now')",
            )
            .bind(key)
            .bind(chain)
            .bind(format!("m/{key}"))
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO bitcoin_accounts (key_id, network, address_type) \
             VALUES ('key_a', 'regtest', 'p2tr')",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .unwrap();
        let settings: Vec<(String, String)> =
            sqlx::query_as("SELECT key_id, settings FROM wallet_accounts ORDER BY key_id")
                .fetch_all(&pool)
                .await
                .unwrap();
        let parsed: Vec<(String, serde_json::Value)> = settings
            .into_iter()
            .map(|(k, s)| (k, serde_json::from_str(&s).unwrap()))
            .collect();
        assert_eq!(
            parsed,
            vec![
                (
                    "key_a".to_string(),
                    serde_json::json!({"network": "regtest", "address_type": "p2tr"})
                ),
                ("key_b".to_string(), serde_json::json!({})),
            ]
        );
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE name = 'bitcoin_accounts'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(left, 0);
    }
}

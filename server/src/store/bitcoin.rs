//! Bitcoin account rows: the network and script kind of a wallet account of chain `bitcoin`.

use sqlx::{Row, SqliteConnection};

use super::{Result, Store};

/// The Bitcoin facts of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitcoinAccountRow {
    /// The key's id.
    pub key_id: String,
    /// `bitcoin`, `testnet`, `testnet4`, `signet` or `regtest`.
    pub network: String,
    /// `p2wpkh` or `p2tr`.
    pub address_type: String,
}

pub(crate) async fn insert(conn: &mut SqliteConnection, row: &BitcoinAccountRow) -> Result<()> {
    sqlx::query("INSERT INTO bitcoin_accounts (key_id, network, address_type) VALUES (?, ?, ?)")
        .bind(&row.key_id)
        .bind(&row.network)
        .bind(&row.address_type)
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// The Bitcoin facts of a key, if it is a Bitcoin wallet account.
    pub async fn bitcoin_account(&self, key_id: &str) -> Result<Option<BitcoinAccountRow>> {
        let row = sqlx::query("SELECT * FROM bitcoin_accounts WHERE key_id = ?")
            .bind(key_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(BitcoinAccountRow {
                key_id: r.try_get("key_id")?,
                network: r.try_get("network")?,
                address_type: r.try_get("address_type")?,
            })
        })
        .transpose()
    }
}

//! The two databases the store speaks: SQLite (one node, the embedded default) and PostgreSQL
//! (several nodes on one database).
//!
//! Every repository function is written once, with `$N` placeholders (which sqlx's SQLite
//! driver reads as well) and SQL both databases accept; [`on_conn!`] and [`on_pool!`] compile
//! its body once per database, so no query goes through a type-erased driver on the hot path.
//! Where the dialects differ, the body asks [`Dialect`].

/// Runs `$body` with `$c` bound to the concrete connection behind a `&mut Conn`; the body is
/// compiled once per database and must evaluate to the same type in both.
macro_rules! on_conn {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::db::Conn::Sqlite($c) => {
                let $c: &mut sqlx::SqliteConnection = &mut **$c;
                $body
            }
            $crate::store::db::Conn::Postgres($c) => {
                let $c: &mut sqlx::PgConnection = &mut **$c;
                $body
            }
        }
    };
}

/// Runs `$body` with `$p` bound to the concrete pool behind a `&Pool`.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::store::db::Pool::Sqlite($p) => $body,
            $crate::store::db::Pool::Postgres($p) => $body,
        }
    };
}

pub(crate) use {on_conn, on_pool};

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{
    ColumnIndex, Decode, PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Type,
};

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: one node.
    Sqlite,
    /// PostgreSQL: any number of nodes.
    Postgres,
}

/// A connection pool of either database.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Starts a transaction (on SQLite, one that takes the write lock at once).
    pub(crate) async fn begin_write(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Starts a plain transaction.
    #[cfg(test)]
    pub(crate) async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// A connection of the pool, for the rest of the caller's scope.
    #[cfg(test)]
    pub(crate) async fn acquire(&self) -> sqlx::Result<PoolConn> {
        Ok(match self {
            Pool::Sqlite(p) => PoolConn::Sqlite(p.acquire().await?),
            Pool::Postgres(p) => PoolConn::Postgres(p.acquire().await?),
        })
    }

    /// Waits for the connections to finish and closes them.
    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// A connection taken from a pool (given back when dropped).
#[cfg(test)]
pub(crate) enum PoolConn {
    Sqlite(sqlx::pool::PoolConnection<Sqlite>),
    Postgres(sqlx::pool::PoolConnection<Postgres>),
}

#[cfg(test)]
impl PoolConn {
    /// The connection, for repository functions.
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            PoolConn::Sqlite(c) => Conn::Sqlite(c),
            PoolConn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// A transaction of either database.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    /// The transaction's connection, for repository functions.
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
            Tx::Postgres(tx) => Conn::Postgres(tx),
        }
    }

    pub(crate) async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }

    pub(crate) async fn rollback(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await,
            Tx::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// A connection of either database, borrowed from a pool or a transaction.
pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl<'c> From<&'c mut SqliteConnection> for Conn<'c> {
    fn from(c: &'c mut SqliteConnection) -> Self {
        Conn::Sqlite(c)
    }
}

impl<'c> From<&'c mut PgConnection> for Conn<'c> {
    fn from(c: &'c mut PgConnection) -> Self {
        Conn::Postgres(c)
    }
}

impl Conn<'_> {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement without arguments (savepoints and the like).
    pub(crate) async fn run(&mut self, sql: &'static str) -> sqlx::Result<()> {
        on_conn!(self, |c| sqlx::raw_sql(sql).execute(c).await.map(|_| ()))
    }
}

/// A column type both databases decode.
pub(crate) trait Col:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}
impl<T> Col for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A column index (name or position) both rows accept.
pub(crate) trait ColIdx: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> {}
impl<I> ColIdx for I where I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> {}

/// A row of either database, read the same way: the row decoders of the repositories take
/// `&impl DbRow`.
pub(crate) trait DbRow {
    /// Decodes column `index`.
    fn try_get<T: Col, I: ColIdx>(&self, index: I) -> sqlx::Result<T>;

    /// Decodes column `index`, panicking when it does not decode (for columns the schema
    /// guarantees, as `sqlx::Row::get`).
    fn get<T: Col, I: ColIdx>(&self, index: I) -> T {
        match self.try_get(index) {
            Ok(v) => v,
            Err(e) => panic!("column does not decode: {e}"),
        }
    }
}

impl DbRow for SqliteRow {
    fn try_get<T: Col, I: ColIdx>(&self, index: I) -> sqlx::Result<T> {
        sqlx::Row::try_get(self, index)
    }
}

impl DbRow for PgRow {
    fn try_get<T: Col, I: ColIdx>(&self, index: I) -> sqlx::Result<T> {
        sqlx::Row::try_get(self, index)
    }
}

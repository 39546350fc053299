//! Storage: sqlx over SQLite (one node) or PostgreSQL (several nodes on one database), with
//! embedded migrations for each (see `db`).
//!
//! Repositories hide SQL from the rest of the server: other modules see typed rows and
//! functions, never query strings. State changes that must be audited are applied by the audit
//! writer inside its transaction (see `StateChange`), never on their own.
//!
//! Parts: `keys` (key rows), `policies` (policy modules, bindings, signature counts),
//! `requests` (sign requests and idempotency), `usage` (per-minute and per-hour counters for
//! the policy context), `audit` (chain rows), `approvals` (pending requests and votes),
//! `certificates` (document certificates and the internal CA), `csc` (CSC credential
//! authorizations and SAD hashes), `gate` (the writer's last check that a key may still sign
//! for a requester), `pending` (usage reserved by requests in flight).

pub mod approvals;
pub mod audit;
pub(crate) mod batch;
pub mod certificates;
pub mod csc;
pub(crate) mod db;
pub mod gate;
pub mod inputs;
pub mod keys;
pub mod pending;
pub mod policies;
pub mod requests;
pub mod scratch;
pub mod shared;
pub mod usage;
pub mod usage_read;
pub mod wallets;

use std::path::Path;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use db::Dialect;
use db::{Conn, Pool, on_pool};

pub use certificates::{CaRow, CertStatus, CertificateFilter, CertificateRow};
pub use keys::{KeyRow, KeyStatus};
pub use policies::{BindingRow, ModuleSignature, PolicyRow};
pub use requests::{SignRequestRow, SignStatus};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database is not configured the way Keyward requires.
    #[error("database check failed: {0}")]
    Check(String),
    /// A unique constraint was hit.
    #[error("{0}")]
    Conflict(String),
    /// Stored data does not parse.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The key was disabled (or is gone) before a signature with it could be recorded; nothing
    /// of the job was applied.
    #[error("{0}")]
    KeyInactive(String),
    /// The requester left the key's signers before the signature could be recorded; nothing
    /// of the job was applied.
    #[error("{0}")]
    SignerRemoved(String),
    /// The key's policy bindings changed after the signature was judged; nothing of the job
    /// was applied.
    #[error("{0}")]
    PoliciesChanged(String),
}

/// Result alias of the storage layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A change applied inside the audit writer's transaction, together with its audit record.
#[derive(Debug, Clone)]
pub enum StateChange {
    /// Refuses the rest of the job unless the key is still active and admits the requester
    /// (see `gate`); comes first in every job that records a signature.
    RequireSigner(gate::SignerGrant),
    /// A key was created or imported.
    InsertKey(Box<KeyRow>),
    /// A key's status changed.
    SetKeyStatus {
        /// Key id.
        key_id: String,
        /// New status.
        status: KeyStatus,
        /// When.
        at: String,
    },
    /// A sign request reached its outcome.
    InsertSignRequest(Box<SignRequestRow>),
    /// The input a request's policies judged it with, kept for replays (see `inputs`).
    InsertPolicyInput(Box<inputs::PolicyInputRow>),
    /// A sign request now waits for approvers.
    InsertApprovalRequest(Box<approvals::ApprovalRequestRow>),
    /// An approver voted (may complete or reject the request).
    Vote {
        /// The vote.
        vote: approvals::VoteRow,
        /// Now, Unix seconds (votes after the expiry are refused).
        now_unix: i64,
    },
    /// An approval request changed state.
    ApprovalTransition {
        /// Request id.
        id: String,
        /// States it may be in now.
        from: Vec<approvals::ApprovalStatus>,
        /// Its new state.
        to: approvals::ApprovalStatus,
        /// When.
        at: String,
        /// The sign receipt (JSON), when signed.
        result: Option<String>,
        /// Error code and message, when failed.
        error: Option<(String, String)>,
    },
    /// A certificate of a document key was issued or imported.
    InsertCertificate(Box<CertificateRow>),
    /// A certificate was revoked.
    RevokeCertificate {
        /// Certificate id.
        id: String,
        /// When.
        at: String,
        /// RFC 5280 reason name.
        reason: String,
    },
    /// The internal CA was imported (replacing the one stored).
    PutCertificateAuthority(Box<CaRow>),
    /// The internal CA was made at first start; refused (`Conflict`) when the database has one
    /// already, e.g. made by another node starting at the same time.
    CreateCertificateAuthority(Box<CaRow>),
    /// The internal CA published a new CRL.
    SetCrl {
        /// The CRL, DER.
        crl: Vec<u8>,
        /// Its number.
        number: i64,
        /// When.
        at: String,
    },
    /// A key's signers list changed.
    SetKeySigners {
        /// Key id.
        key_id: String,
        /// The new list, as a JSON array.
        signers: String,
        /// When.
        at: String,
    },
    /// A policy module was uploaded.
    InsertPolicy(Box<PolicyRow>),
    /// A policy was deleted (refused while it is bound).
    DeletePolicy {
        /// Policy id.
        policy_id: String,
    },
    /// Usage counters grew (signature counts are added by `InsertSignRequest` itself; this is
    /// for other metrics, such as the value a transaction moved).
    AddUsage(Vec<usage::UsageDelta>),
    /// An HD wallet was created or imported (its seed sealed).
    InsertWallet(Box<wallets::WalletRow>),
    /// A key was derived from a wallet (follows the key's `InsertKey`).
    InsertWalletAccount(Box<wallets::AccountRow>),
    /// A key's ordered policy bindings were replaced.
    SetKeyPolicies {
        /// Key id.
        key_id: String,
        /// The new bindings, in order.
        bindings: Vec<BindingRow>,
    },
    /// A CSC credential authorization was recorded (pending, or with its SAD issued).
    InsertCscAuthorization(Box<csc::CscAuthorizationRow>),
    /// A pending CSC authorization got its SAD (conditional on `pending`).
    IssueCscSad {
        /// Authorization id.
        id: String,
        /// SHA-256 of the SAD.
        sad_hash: Vec<u8>,
        /// When the SAD expires, Unix seconds.
        expires_unix: i64,
        /// When.
        at: String,
    },
    /// A CSC SAD was consumed by `signHash` (conditional on `issued`, this SAD, not expired).
    ConsumeCscSad {
        /// Authorization id.
        id: String,
        /// SHA-256 of the SAD.
        sad_hash: Vec<u8>,
        /// Now, Unix seconds.
        now_unix: i64,
        /// When.
        at: String,
    },
}

/// How to reach a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/database` (a password in it is used, but configuration
    /// should give it through `password`).
    pub url: String,
    /// The password, when not in the URL.
    pub password: Option<String>,
    /// Connections at most: two for the audit writer and the grouped usage reads, the rest
    /// (at least one) for everything else.
    pub max_connections: u32,
    /// How long a caller waits for a connection before the request fails with `503`.
    pub acquire_timeout: Duration,
}

/// The database handle.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// The connections of the audit writer and of the grouped usage reads (see `hot_pool`).
    hot: Pool,
    pending: std::sync::Arc<pending::PendingUsage>,
    node_id: std::sync::Arc<str>,
    /// The grouping of this node's usage reads (PostgreSQL), started at the first read.
    groups: std::sync::Arc<std::sync::OnceLock<usage_read::UsageGroups>>,
}

/// PostgreSQL connections of the audit writer (one) and of the grouped usage reads (one per
/// group in the database at once), kept out of `storage.max_connections`' shared pool.
pub const HOT_CONNECTIONS: u32 = 1 + usage_read::GROUPS_AT_ONCE as u32;

/// A PostgreSQL connection idle for longer than this is pinged before it is used again.
const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// A PostgreSQL pool of at most `max` connections. sqlx pings every connection as it goes back
/// to the pool. A connection taken again soon after is pinged no more (a round trip per query
/// saved); one idle for longer is, so that one the database dropped meanwhile (a restart) is
/// replaced rather than failing a request.
fn pg_pool(max: u32, min: u32, acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(min)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_PING_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

impl Store {
    /// Opens (creating if missing) the SQLite database at `path`, runs migrations and checks
    /// that WAL, `synchronous=FULL` and foreign keys are in force.
    pub async fn open_file(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::open_with(options).await
    }

    async fn open_with(options: SqliteConnectOptions) -> Result<Self> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // A connection is pinged when it goes back to the pool; a ping when it is taken again
        // would be one more hop to SQLite's thread for every query, for a local file.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let store = Store {
            hot: Pool::Sqlite(pool.clone()),
            pool: Pool::Sqlite(pool),
            pending: Default::default(),
            node_id: "keyward".into(),
            groups: Default::default(),
        };
        store.check_pragmas().await?;
        Ok(store)
    }

    /// Connects to PostgreSQL and runs its migrations (under the migrator's advisory lock, so
    /// that nodes starting together apply each migration once).
    pub async fn open_postgres(options: &PostgresOptions) -> Result<Self> {
        let mut connect: PgConnectOptions = options
            .url
            .parse()
            .map_err(|e| StoreError::Check(format!("storage.url does not parse: {e}")))?;
        if let Some(password) = &options.password {
            connect = connect.password(password);
        }
        let shared = options
            .max_connections
            .saturating_sub(HOT_CONNECTIONS)
            .max(1);
        let pool = pg_pool(shared, 1, options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        // The chain head row every audit batch locks (see `audit::writer`).
        sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(audit::GENESIS_HASH.as_slice())
        .execute(&pool)
        .await?;
        // The audit writer and the grouped usage reads each use one connection at a time, for
        // a few statements prepared once that take their rows as arrays. Left to choose,
        // PostgreSQL planned the usage read anew at every execution (it estimates a plan made
        // for the given arrays cheaper than the shared one): a fifth of the database's work
        // per signature. Their plans do not depend on the values, so on these two connections
        // the shared plan is always used. The other connections keep the choice, which the
        // filtered listings need (a plan for the filters actually given).
        let hot = pg_pool(HOT_CONNECTIONS, 0, options.acquire_timeout)
            .connect_lazy_with(connect.options([("plan_cache_mode", "force_generic_plan")]));
        Ok(Store {
            hot: Pool::Postgres(hot),
            pool: Pool::Postgres(pool),
            pending: Default::default(),
            node_id: "keyward".into(),
            groups: Default::default(),
        })
    }

    async fn check_pragmas(&self) -> Result<()> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Ok(());
        };
        let mut conn = pool.acquire().await?;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Check(format!(
                "journal_mode is {mode}, WAL is required"
            )));
        }
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await?;
        if sync != 2 {
            return Err(StoreError::Check(format!(
                "synchronous is {sync}, FULL (2) is required"
            )));
        }
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await?;
        if fk != 1 {
            return Err(StoreError::Check("foreign_keys is off".into()));
        }
        Ok(())
    }

    /// The connection pool (for repositories in this module and the audit writer).
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool of the audit writer and of the grouped usage reads: on PostgreSQL two
    /// connections of their own, on which every statement runs with its shared plan; on
    /// SQLite the one pool.
    pub(crate) fn hot_pool(&self) -> &Pool {
        &self.hot
    }

    /// This store as used by the node `node_id` (named in what it writes for other nodes).
    pub fn with_node_id(mut self, node_id: &str) -> Self {
        self.node_id = node_id.into();
        self.groups = Default::default();
        self
    }

    /// The node this store belongs to.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    /// The usage reserved by requests in flight (see `pending`).
    pub fn pending_usage(&self) -> &std::sync::Arc<pending::PendingUsage> {
        &self.pending
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(&self.pool, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Reads a `meta` value.
    pub async fn meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let value = on_pool!(&self.pool, |p| sqlx::query_scalar(
            "SELECT value FROM meta WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(p)
        .await)?;
        Ok(value)
    }

    /// Writes a `meta` value if it is not set yet; returns the value in force.
    pub async fn meta_init(&self, name: &str, value: &[u8]) -> Result<Vec<u8>> {
        on_pool!(&self.pool, |p| sqlx::query(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
        )
        .bind(name)
        .bind(value)
        .execute(p)
        .await
        .map(|_| ()))?;
        self.meta(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("meta {name} vanished")))
    }

    /// Closes the pools, waiting for connections to finish.
    pub async fn close(&self) {
        self.hot.close().await;
        self.pool.close().await;
    }

    /// The one integer a query without arguments answers, for tests that look at rows.
    #[doc(hidden)]
    pub async fn scalar_for_tests(&self, sql: &str) -> Result<i64> {
        let value = on_pool!(&self.pool, |p| sqlx::query_scalar::<_, i64>(
            sqlx::AssertSqlSafe(sql.to_owned())
        )
        .fetch_one(p)
        .await)?;
        Ok(value)
    }

    /// Runs statements without arguments, for tests that set up or tamper with rows by hand.
    #[doc(hidden)]
    pub async fn execute_for_tests(&self, sql: &str) -> Result<u64> {
        let done = on_pool!(&self.pool, |p| sqlx::raw_sql(sqlx::AssertSqlSafe(
            sql.to_owned()
        ))
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done)
    }
}

/// Applies one state change inside a transaction.
pub(crate) async fn apply_change(conn: &mut Conn<'_>, change: &StateChange) -> Result<()> {
    match change {
        StateChange::RequireSigner(grant) => gate::check_one(conn, grant).await,
        StateChange::InsertKey(row) => keys::insert(conn, row).await,
        StateChange::SetKeyStatus { key_id, status, at } => {
            keys::set_status(conn, key_id, *status, at).await
        }
        StateChange::InsertSignRequest(row) => requests::insert(conn, row).await,
        StateChange::InsertPolicyInput(row) => inputs::insert(conn, &[row]).await,
        StateChange::InsertApprovalRequest(row) => approvals::insert(conn, row).await,
        StateChange::Vote { vote, now_unix } => approvals::vote(conn, vote, *now_unix).await,
        StateChange::ApprovalTransition {
            id,
            from,
            to,
            at,
            result,
            error,
        } => {
            let error = error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
            approvals::set_status(conn, id, from, *to, at, result.as_deref(), error).await
        }
        StateChange::InsertCertificate(row) => certificates::insert(conn, row).await,
        StateChange::RevokeCertificate { id, at, reason } => {
            certificates::revoke(conn, id, at, reason).await
        }
        StateChange::PutCertificateAuthority(row) => certificates::put_ca(conn, row, true).await,
        StateChange::CreateCertificateAuthority(row) => {
            certificates::put_ca(conn, row, false).await
        }
        StateChange::SetCrl { crl, number, at } => {
            certificates::set_crl(conn, crl, *number, at).await
        }
        StateChange::SetKeySigners {
            key_id,
            signers,
            at,
        } => keys::set_signers(conn, key_id, signers, at).await,
        StateChange::InsertPolicy(row) => policies::insert(conn, row).await,
        StateChange::DeletePolicy { policy_id } => policies::delete(conn, policy_id).await,
        StateChange::SetKeyPolicies { key_id, bindings } => {
            policies::set_bindings(conn, key_id, bindings).await
        }
        StateChange::InsertWallet(row) => wallets::insert_wallet(conn, row).await,
        StateChange::InsertWalletAccount(row) => wallets::insert_account(conn, row).await,
        StateChange::AddUsage(deltas) => {
            for delta in deltas {
                usage::add(conn, delta).await?;
            }
            Ok(())
        }
        StateChange::InsertCscAuthorization(row) => csc::insert(conn, row).await,
        StateChange::IssueCscSad {
            id,
            sad_hash,
            expires_unix,
            at,
        } => csc::issue(conn, id, sad_hash, *expires_unix, at).await,
        StateChange::ConsumeCscSad {
            id,
            sad_hash,
            now_unix,
            at,
        } => csc::consume(conn, id, sad_hash, *now_unix, at).await,
    }
}

/// Maps a unique-constraint violation to `Conflict` with `message`.
pub(crate) fn conflict_or(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(err),
    }
}

/// Opaque pagination cursors: the last id or seq seen, base64url.
pub mod cursor {
    use base64::Engine as _;

    /// Encodes a cursor.
    pub fn encode(last: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.as_bytes())
    }

    /// Decodes a cursor; `None` when it is not one of ours.
    pub fn decode(cursor: &str) -> Option<String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()?;
        String::from_utf8(bytes).ok()
    }
}

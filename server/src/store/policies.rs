//! Policy rows, key bindings, and the signature counts policies see as context.

use super::db::{Conn, DbRow, on_conn, on_pool};
use keyward_policy::Context;

use super::{Result, Store, StoreError, conflict_or, usage};

/// A stored policy module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// Policy id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Version (unique per name).
    pub version: String,
    /// Description.
    pub description: String,
    /// SHA-256 of the module, hex.
    pub digest: String,
    /// The module bytes (empty in listings).
    pub module: Vec<u8>,
    /// Module size, bytes.
    pub size: i64,
    /// Effective limits, JSON.
    pub limits: String,
    /// Whether the module exports `keyward_validate_settings`.
    pub validates_settings: bool,
    /// Upload time.
    pub created_at: String,
    /// Who uploaded it (`issuer|subject`).
    pub created_by: String,
    /// The trusted signer's signature it was uploaded with (`None` when the server needed
    /// none, and for built-in policies).
    pub signature: Option<ModuleSignature>,
}

/// Who signed a stored module, and the signature (kept so that anyone can check it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSignature {
    /// The signature, standard base64 of 64 bytes.
    pub signature: String,
    /// The signer's public key (base64 SPKI DER).
    pub signer_key: String,
    /// The signer's configured name when it signed.
    pub signer_name: Option<String>,
}

/// One policy bound to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRow {
    /// Key id.
    pub key_id: String,
    /// Order, from 0.
    pub position: i64,
    /// Policy id.
    pub policy_id: String,
    /// Settings, JSON.
    pub settings: String,
    /// When bound.
    pub bound_at: String,
    /// Who bound it.
    pub bound_by: String,
}

fn policy_from_row(row: &impl DbRow, with_module: bool) -> Result<PolicyRow> {
    Ok(PolicyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        description: row.try_get("description")?,
        digest: row.try_get("digest")?,
        module: if with_module {
            row.try_get("module")?
        } else {
            Vec::new()
        },
        size: row.try_get("size")?,
        limits: row.try_get("limits")?,
        validates_settings: row.try_get::<i64, _>("validates_settings")? != 0,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        signature: match row.try_get::<Option<String>, _>("signature")? {
            None => None,
            Some(signature) => Some(ModuleSignature {
                signature,
                signer_key: row.try_get("signer_key")?,
                signer_name: row.try_get("signer_name")?,
            }),
        },
    })
}

fn binding_from_row(row: &impl DbRow) -> Result<BindingRow> {
    Ok(BindingRow {
        key_id: row.try_get("key_id")?,
        position: row.try_get("position")?,
        policy_id: row.try_get("policy_id")?,
        settings: row.try_get("settings")?,
        bound_at: row.try_get("bound_at")?,
        bound_by: row.try_get("bound_by")?,
    })
}

pub(crate) async fn insert(conn: &mut Conn<'_>, row: &PolicyRow) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query(
            "INSERT INTO policies (id, name, version, description, digest, module, size, limits, \
         validates_settings, created_at, created_by, signature, signer_key, signer_name) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.version)
        .bind(&row.description)
        .bind(&row.digest)
        .bind(&row.module)
        .bind(row.size)
        .bind(&row.limits)
        .bind(i64::from(row.validates_settings))
        .bind(&row.created_at)
        .bind(&row.created_by)
        .bind(row.signature.as_ref().map(|s| &s.signature))
        .bind(row.signature.as_ref().map(|s| &s.signer_key))
        .bind(row.signature.as_ref().and_then(|s| s.signer_name.as_ref()))
        .execute(conn)
        .await
        .map_err(|e| {
            conflict_or(e, || {
                format!(
                    "policy {:?} version {:?} already exists; upload it with a new version",
                    row.name, row.version
                )
            })
        })?;
        Ok(())
    })
}

pub(crate) async fn delete(conn: &mut Conn<'_>, policy_id: &str) -> Result<()> {
    on_conn!(conn, |conn| {
        let bound: i64 = sqlx::query("SELECT COUNT(*) FROM policy_bindings WHERE policy_id = $1")
            .bind(policy_id)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        if bound > 0 {
            return Err(StoreError::Conflict(format!(
                "policy {policy_id} is bound to {bound} key(s); unbind it first"
            )));
        }
        sqlx::query("DELETE FROM policies WHERE id = $1")
            .bind(policy_id)
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub(crate) async fn set_bindings(
    conn: &mut Conn<'_>,
    key_id: &str,
    bindings: &[BindingRow],
) -> Result<()> {
    on_conn!(conn, |conn| {
        sqlx::query("DELETE FROM policy_bindings WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE keys SET policies_version = policies_version + 1 WHERE id = $1")
            .bind(key_id)
            .execute(&mut *conn)
            .await?;
        for b in bindings {
            sqlx::query(
                "INSERT INTO policy_bindings (key_id, position, policy_id, settings, bound_at, \
             bound_by) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&b.key_id)
            .bind(b.position)
            .bind(&b.policy_id)
            .bind(&b.settings)
            .bind(&b.bound_at)
            .bind(&b.bound_by)
            .execute(&mut *conn)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Conflict(
                    format!("policy {} or key {key_id} no longer exists", b.policy_id),
                ),
                _ => StoreError::Database(e),
            })?;
        }
        Ok(())
    })
}

impl Store {
    /// A policy by id, with its module.
    pub async fn policy(&self, id: &str) -> Result<Option<PolicyRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query("SELECT * FROM policies WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|r| policy_from_row(r, true)).transpose()
        })
    }

    /// A policy by name and version, without its module.
    pub async fn policy_by_name(&self, name: &str, version: &str) -> Result<Option<PolicyRow>> {
        on_pool!(self.pool(), |pool| {
            let row = sqlx::query(
                "SELECT id, name, version, description, digest, size, limits, validates_settings, \
             created_at, created_by, signature, signer_key, signer_name FROM policies WHERE name = $1 AND version = $2",
            )
            .bind(name)
            .bind(version)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(|r| policy_from_row(r, false)).transpose()
        })
    }

    /// Policies ordered by id after `after`, at most `limit`, without their modules.
    pub async fn policies_page(&self, after: Option<&str>, limit: u32) -> Result<Vec<PolicyRow>> {
        on_pool!(self.pool(), |pool| {
            let rows = sqlx::query(
                "SELECT id, name, version, description, digest, size, limits, validates_settings, \
             created_at, created_by, signature, signer_key, signer_name FROM policies WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| policy_from_row(r, false)).collect()
        })
    }

    /// A key's bindings in order.
    /// The policies version of `key_id` (bumped with every change of its bindings) and its
    /// bindings, in order. The version is read first: bindings that changed in between come
    /// with the older version, which the writer's gate then refuses (never the reverse).
    pub async fn key_bindings_versioned(&self, key_id: &str) -> Result<(i64, Vec<BindingRow>)> {
        let version: Option<i64> = on_pool!(self.pool(), |pool| sqlx::query_scalar(
            "SELECT policies_version FROM keys WHERE id = $1"
        )
        .bind(key_id)
        .fetch_optional(pool)
        .await)?;
        Ok((version.unwrap_or(0), self.key_bindings(key_id).await?))
    }

    /// A key's bindings, in order.
    pub async fn key_bindings(&self, key_id: &str) -> Result<Vec<BindingRow>> {
        on_pool!(self.pool(), |pool| {
            let rows =
                sqlx::query("SELECT * FROM policy_bindings WHERE key_id = $1 ORDER BY position")
                    .bind(key_id)
                    .fetch_all(pool)
                    .await?;
            rows.iter().map(binding_from_row).collect()
        })
    }

    /// How many keys a policy is bound to.
    pub async fn policy_binding_count(&self, policy_id: &str) -> Result<i64> {
        on_pool!(self.pool(), |pool| {
            Ok(sqlx::query(
                "SELECT COUNT(DISTINCT key_id) FROM policy_bindings WHERE policy_id = $1",
            )
            .bind(policy_id)
            .fetch_one(pool)
            .await?
            .try_get(0)?)
        })
    }

    /// Signatures made by `key_id` and for the principal `issuer`/`subject` in the hour and
    /// the day before `now` (unix seconds), from the usage counters, with the audit head of the
    /// snapshot they were read from.
    pub async fn signature_context(
        &self,
        key_id: &str,
        issuer: &str,
        subject: &str,
        now: i64,
    ) -> Result<usage::Snapshot<Context>> {
        // One round trip for both scopes: this runs on every request to a key with policies.
        let (key, principal) = (
            usage::key_scope(key_id),
            usage::principal_scope(issuer, subject),
        );
        let counts = self
            .usage_counts([key.as_str(), principal.as_str()], usage::SIGNATURES, now)
            .await?;
        let [key, principal] = &counts.value;
        Ok(usage::Snapshot {
            value: signature_counts(key, principal),
            head: counts.head,
        })
    }
}

/// The policy context of the signature counters of a key and of a principal.
pub(crate) fn signature_counts(
    key: &usage::UsageWindow,
    principal: &usage::UsageWindow,
) -> Context {
    Context {
        key_signatures_last_hour: key.count_hour,
        key_signatures_last_day: key.count_day,
        principal_signatures_last_hour: principal.count_hour,
        principal_signatures_last_day: principal.count_day,
        spend: None,
    }
}

//! Administrative changes to keys: create, import, disable. Each change is applied in the
//! same transaction as its audit record; a change whose audit record fails is not made.
//! Never records private key material, only what the backend needs to load the key again.

use std::collections::BTreeMap;

use serde_json::json;

use crate::audit::AuditError;
use crate::audit::{Actor, AuditEvent};
use crate::auth::Principal;
use crate::keys::{
    Algorithm, GeneratedKey, KeyError, KeyMeta, LoadedKey, Purpose, SoftwareBackend,
};
use crate::pipeline::SigningPath;
use crate::store::{KeyRow, KeyStatus, StateChange, StoreError};

/// Errors of key administration.
#[derive(Debug, thiserror::Error)]
pub enum KeyAdminError {
    /// No such key.
    #[error("no key {0}")]
    NotFound(String),
    /// The key backend failed or refused the key material.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The audit log failed: the change was not made.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Storage failed (a name taken is a conflict).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new key's name, purpose and labels.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Unique name.
    pub name: String,
    /// Purpose.
    pub purpose: Purpose,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Who may sign with it (checked entries, see `auth::signers`); empty admits every signer.
    pub signers: Vec<String>,
}

/// Purposes that keys can be created with on this server.
pub const SUPPORTED_PURPOSES: &[Purpose] = &[Purpose::Raw, Purpose::Document];

/// Checks a key name: 1 to 100 characters of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 100 || !name.chars().all(ok_char) {
        return Err(format!(
            "key name {name:?} is invalid: use 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Checks labels: at most 32, keys up to 64 and values up to 256 characters, and no control
/// characters (NUL, newlines, escapes...) in keys or values.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > 32 {
        return Err("at most 32 labels are allowed".into());
    }
    for (k, v) in labels {
        if k.chars().any(char::is_control) {
            return Err(format!(
                "label name {k:?} contains a control character; control characters are not \
                 allowed in label names or values"
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(format!(
                "label {k:?} has a value with a control character; control characters are not \
                 allowed in label names or values"
            ));
        }
        if k.is_empty() || k.len() > 64 {
            return Err(format!("label name {k:?} must be 1 to 64 characters"));
        }
        if v.len() > 256 {
            return Err(format!(
                "label {k:?} has a value longer than 256 characters"
            ));
        }
    }
    Ok(())
}

fn actor(p: &Principal) -> Actor {
    Actor {
        issuer: p.issuer.clone(),
        subject: p.subject.clone(),
    }
}

/// Generates a key in `backend` and records it.
pub async fn create_key(
    path: &SigningPath,
    principal: &Principal,
    new: NewKey,
    algorithm: Algorithm,
    backend: &str,
) -> Result<KeyMeta, KeyAdminError> {
    let backend = path.keys().backend(backend)?;
    let backend_name = backend.name().to_string();
    let id = new_key_id();
    let key_id = id.clone();
    let made = tokio::task::spawn_blocking(move || backend.generate(&key_id, algorithm))
        .await
        .map_err(|e| KeyError::Unavailable(format!("key generation task failed: {e}")))??;
    record_new_key(
        path,
        principal,
        id,
        new,
        algorithm,
        &backend_name,
        made,
        "key.create",
    )
    .await
}

/// Imports a PKCS#8 PEM private key into a software slot and records it.
pub async fn import_key(
    path: &SigningPath,
    software: &SoftwareBackend,
    principal: &Principal,
    new: NewKey,
    pem: String,
    expected: Option<Algorithm>,
) -> Result<KeyMeta, KeyAdminError> {
    let id = new_key_id();
    let software = software.clone();
    let key_id = id.clone();
    let (algorithm, made) = tokio::task::spawn_blocking(move || {
        let pem = zeroize::Zeroizing::new(pem);
        software.import_pkcs8_pem(&key_id, &pem, expected)
    })
    .await
    .map_err(|e| KeyError::Unavailable(format!("key import task failed: {e}")))??;
    record_new_key(
        path,
        principal,
        id,
        new,
        algorithm,
        "software",
        made,
        "key.import",
    )
    .await
}

/// Records a key adopted from a PKCS#11 token (see `keys::pkcs11::Pkcs11Backend::adopt`).
pub async fn adopt_key(
    path: &SigningPath,
    principal: &Principal,
    new: NewKey,
    backend: &str,
    adopted: crate::keys::pkcs11::AdoptedKey,
) -> Result<KeyMeta, KeyAdminError> {
    record_new_key(
        path,
        principal,
        new_key_id(),
        new,
        adopted.algorithm,
        backend,
        adopted.generated,
        "key.adopt",
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn record_new_key(
    path: &SigningPath,
    principal: &Principal,
    id: String,
    new: NewKey,
    algorithm: Algorithm,
    backend: &str,
    made: GeneratedKey,
    action: &'static str,
) -> Result<KeyMeta, KeyAdminError> {
    let extra = KeyExtras {
        changes: Vec::new(),
        details: serde_json::Value::Null,
    };
    record_new_key_with(
        path, principal, id, new, algorithm, backend, made, action, extra,
    )
    .await
}

/// What a key created elsewhere (e.g. a wallet account) records besides the key row.
#[derive(Debug, Default)]
pub(crate) struct KeyExtras {
    /// State changes applied in the same transaction, after the key row.
    pub changes: Vec<StateChange>,
    /// Merged into the audit record's details under `origin`.
    pub details: serde_json::Value,
}

/// Records a new key with extra state changes in the same audited transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_new_key_with(
    path: &SigningPath,
    principal: &Principal,
    id: String,
    new: NewKey,
    algorithm: Algorithm,
    backend: &str,
    made: GeneratedKey,
    action: &'static str,
    extra: KeyExtras,
) -> Result<KeyMeta, KeyAdminError> {
    let (now, _) = crate::clock::now();
    let (id_for_policies, now_for_policies) = (id.clone(), now.clone());
    let row = KeyRow {
        id: id.clone(),
        name: new.name.clone(),
        algorithm: algorithm.to_string(),
        purpose: new.purpose.to_string(),
        backend: backend.to_string(),
        status: KeyStatus::Active,
        labels: serde_json::to_string(&new.labels).unwrap_or_else(|_| "{}".into()),
        public_key: made.public_key.spki_der().to_vec(),
        material: made.material,
        created_at: now.clone(),
        created_by: principal.display_id(),
        updated_at: now,
        signers: serde_json::to_string(&new.signers).unwrap_or_else(|_| "[]".into()),
    };
    let meta = KeyMeta::from_row(&row)?;
    let mut event = AuditEvent {
        action,
        outcome: "ok",
        actor: actor(principal),
        key_id: Some(id),
        request_id: Some(crate::request_id::current()),
        details: json!({
            "name": new.name,
            "algorithm": algorithm.as_str(),
            "purpose": new.purpose.as_str(),
            "backend": backend,
            "labels": new.labels,
            "signers": new.signers,
            "public_key_sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(made.public_key.spki_der())),
        }),
    };
    if !extra.details.is_null() {
        event.details["origin"] = extra.details;
    }
    let mut changes = vec![StateChange::InsertKey(Box::new(row))];
    changes.extend(extra.changes);
    changes.extend(path.policy().bindings_for_new_key(
        &id_for_policies,
        &principal.display_id(),
        &now_for_policies,
    ));
    path.audit().append(changes, event).await?;
    path.keys().insert(LoadedKey {
        meta: meta.clone(),
        signer: Some(made.key),
    });
    Ok(meta)
}

/// Disables a key; it keeps its history but never signs again.
pub async fn disable_key(
    path: &SigningPath,
    principal: &Principal,
    key_id: &str,
) -> Result<KeyMeta, KeyAdminError> {
    let row = key_row(path, key_id).await?;
    if row.status == KeyStatus::Disabled {
        return KeyMeta::from_row(&row).map_err(Into::into);
    }
    let (now, _) = crate::clock::now();
    let event = AuditEvent {
        action: "key.disable",
        outcome: "ok",
        actor: actor(principal),
        key_id: Some(key_id.to_string()),
        request_id: Some(crate::request_id::current()),
        details: json!({"name": row.name}),
    };
    let change = StateChange::SetKeyStatus {
        key_id: key_id.to_string(),
        status: KeyStatus::Disabled,
        at: now,
    };
    apply_key_change(path, key_id, change, event).await
}

/// Replaces a key's signers list (entries already checked with `auth::signers::normalize`).
pub async fn set_signers(
    path: &SigningPath,
    principal: &Principal,
    key_id: &str,
    signers: Vec<String>,
) -> Result<KeyMeta, KeyAdminError> {
    let row = key_row(path, key_id).await?;
    let before = KeyMeta::from_row(&row)?.signers;
    let (now, _) = crate::clock::now();
    let event = AuditEvent {
        action: "key.signers",
        outcome: "ok",
        actor: actor(principal),
        key_id: Some(key_id.to_string()),
        request_id: Some(crate::request_id::current()),
        details: json!({"name": row.name, "before": before, "after": signers}),
    };
    let change = StateChange::SetKeySigners {
        key_id: key_id.to_string(),
        signers: serde_json::to_string(&signers).unwrap_or_else(|_| "[]".into()),
        at: now,
    };
    apply_key_change(path, key_id, change, event).await
}

/// The stored row of key `key_id`.
async fn key_row(path: &SigningPath, key_id: &str) -> Result<KeyRow, KeyAdminError> {
    path.store()
        .key(key_id)
        .await?
        .ok_or_else(|| KeyAdminError::NotFound(key_id.to_string()))
}

/// Applies `change` to key `key_id` with its audit record and answers the key as it is then.
/// The key cache is invalidated before (no request starts from the old state while the change
/// is on its way) and after (none keeps it once it landed).
async fn apply_key_change(
    path: &SigningPath,
    key_id: &str,
    change: StateChange,
    event: AuditEvent,
) -> Result<KeyMeta, KeyAdminError> {
    path.keys().invalidate(key_id);
    path.audit().append(vec![change], event).await?;
    path.keys().invalidate(key_id);
    let row = key_row(path, key_id).await?;
    Ok(KeyMeta::from_row(&row)?)
}

pub(crate) fn new_key_id() -> String {
    format!("key_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_with_control_characters_are_refused() {
        for bad in ["te\0am", "te\nam", "\u{1b}[0m", "x\u{7f}", "a\u{9b}b", "\t"] {
            let err = check_labels(&labels(&[("ok", "fine"), (bad, "v")])).unwrap_err();
            assert!(
                err.contains("label name") && err.contains("control characters are not allowed"),
                "key {bad:?}: {err}"
            );
            let err = check_labels(&labels(&[("ok", "fine"), ("team", bad)])).unwrap_err();
            assert!(
                err.contains("\"team\" has a value")
                    && err.contains("control characters are not allowed"),
                "value {bad:?}: {err}"
            );
        }
        check_labels(&labels(&[("team", "payments é 財務"), ("env", "")])).unwrap();
        assert!(check_labels(&labels(&[("", "v")])).is_err());
        assert!(check_labels(&labels(&[("k", &"v".repeat(257))])).is_err());
    }
}

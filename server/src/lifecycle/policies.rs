//! Policy lifecycle: upload, delete, bind to keys, dry-run evaluation and replays against
//! history. Each change is
//! applied in the same transaction as its audit record, and the in-memory caches are updated
//! only after that commit. Modules are checked and compiled before anything is stored.

use std::sync::Arc;

use keyward_policy::PolicyInput;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::audit::{Actor, AuditEvent, AuditLog};
use crate::auth::Principal;
use crate::pipeline::SigningPath;
use crate::policy::replay::{BUDGET as REPLAY_BUDGET, ReplayReport};
use crate::policy::{
    BoundPolicy, Evaluation, LoadedPolicy, PolicyError, PolicyLimits, PolicyRegistry,
    RequestedLimits, builtin, signature::TrustedSigners,
};
use crate::store::{BindingRow, ModuleSignature, PolicyRow, StateChange, Store};

/// Most policies bound to one key.
pub const MAX_BINDINGS: usize = 16;
/// Largest settings document, bytes.
pub const MAX_SETTINGS_BYTES: usize = 16 * 1024;

/// A module to upload.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Name: 1 to 100 characters of A-Z, a-z, 0-9, '.', '_' and '-'.
    pub name: String,
    /// Version, unique per name: 1 to 64 such characters.
    pub version: String,
    /// Free text, at most 1000 characters.
    pub description: String,
    /// The module bytes.
    pub module: Vec<u8>,
    /// Limits asked for.
    pub limits: RequestedLimits,
    /// A trusted signer's detached Ed25519 signature over the module, standard base64
    /// (needed when `policy.trusted_signers` is set; ignored otherwise).
    pub signature: Option<String>,
}

/// One entry of a key's new binding list.
#[derive(Debug, Clone)]
pub struct NewBinding {
    /// The policy.
    pub policy_id: String,
    /// Its settings (`null` for none).
    pub settings: Value,
}

fn actor(p: &Principal) -> Actor {
    Actor {
        issuer: p.issuer.clone(),
        subject: p.subject.clone(),
    }
}

fn check_token(what: &str, value: &str, max: usize) -> Result<(), PolicyError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
    if value.is_empty() || value.len() > max || !value.chars().all(ok_char) {
        return Err(PolicyError::Invalid(format!(
            "policy {what} {value:?} is invalid: use 1 to {max} characters of A-Z, a-z, 0-9, \
             '.', '_', '-' and '+'"
        )));
    }
    Ok(())
}

fn limits_json(limits: &PolicyLimits) -> String {
    serde_json::to_string(limits).unwrap_or_default()
}

/// How a module's signer is audited: its key and configured name, or `null`.
fn signer_json(signature: Option<&ModuleSignature>) -> Value {
    signature.map_or(
        Value::Null,
        |s| json!({"public_key": s.signer_key, "name": s.signer_name}),
    )
}

/// Checks, compiles and stores a module (audited as `policy.upload`).
pub async fn upload(
    path: &SigningPath,
    principal: &Principal,
    up: Upload,
) -> Result<PolicyRow, PolicyError> {
    check_token("name", &up.name, 100)?;
    check_token("version", &up.version, 64)?;
    if up.description.chars().count() > 1000 {
        return Err(PolicyError::Invalid(
            "description must be at most 1000 characters".into(),
        ));
    }
    let registry = path.policy().registry();
    let limits = registry
        .engine()
        .limits()
        .resolve(&up.limits)
        .map_err(PolicyError::Invalid)?;
    let signature = path
        .policy()
        .trusted_signers()
        .check(&Sha256::digest(&up.module).into(), up.signature.as_deref())
        .map_err(|refusal| PolicyError::Signature {
            context: String::new(),
            refusal,
        })?;
    let module = Arc::new(up.module);
    let compiled = registry
        .engine()
        .compile_async(module.clone(), limits)
        .await?;
    let (now, _) = crate::clock::now();
    let row = PolicyRow {
        id: format!("pol_{}", uuid::Uuid::now_v7().simple()),
        name: up.name,
        version: up.version,
        description: up.description,
        digest: compiled.digest.clone(),
        module: Arc::unwrap_or_clone(module),
        size: 0,
        limits: limits_json(&limits),
        validates_settings: compiled.validates_settings,
        created_at: now,
        created_by: principal.display_id(),
        signature,
    };
    let row = PolicyRow {
        size: row.module.len() as i64,
        ..row
    };
    let event = AuditEvent {
        action: "policy.upload",
        outcome: "ok",
        actor: actor(principal),
        key_id: None,
        request_id: Some(crate::request_id::current()),
        details: json!({
            "policy_id": row.id,
            "name": row.name,
            "version": row.version,
            "digest": row.digest,
            "size": row.size,
            "limits": limits,
            "signer": signer_json(row.signature.as_ref()),
        }),
    };
    path.audit()
        .append(
            vec![StateChange::InsertPolicy(Box::new(row.clone()))],
            event,
        )
        .await?;
    registry.insert(LoadedPolicy {
        id: row.id.clone(),
        name: row.name.clone(),
        version: row.version.clone(),
        compiled,
        signature: row.signature.clone(),
    });
    Ok(PolicyRow {
        module: Vec::new(),
        ..row
    })
}

/// Deletes a policy that no key is bound to (audited as `policy.delete`).
pub async fn delete(
    path: &SigningPath,
    principal: &Principal,
    policy_id: &str,
) -> Result<(), PolicyError> {
    let row = path
        .store()
        .policy(policy_id)
        .await?
        .ok_or_else(|| PolicyError::NotFound(format!("no policy with id {policy_id:?}")))?;
    let bound = path.store().policy_binding_count(policy_id).await?;
    if bound > 0 {
        return Err(PolicyError::InUse(format!(
            "policy {policy_id} is bound to {bound} key(s); bind other policies to them first"
        )));
    }
    let event = AuditEvent {
        action: "policy.delete",
        outcome: "ok",
        actor: actor(principal),
        key_id: None,
        request_id: Some(crate::request_id::current()),
        details: json!({"policy_id": row.id, "name": row.name, "version": row.version, "digest": row.digest}),
    };
    path.audit()
        .append(
            vec![StateChange::DeletePolicy {
                policy_id: policy_id.to_string(),
            }],
            event,
        )
        .await
        .map_err(|e| match e {
            crate::audit::AuditError::Rejected(crate::store::StoreError::Conflict(m)) => {
                PolicyError::InUse(m)
            }
            e => e.into(),
        })?;
    path.policy().registry().remove(policy_id);
    Ok(())
}

/// Replaces a key's ordered bindings (audited as `key.policies`). Each policy checks its
/// settings first (`keyward_validate_settings`). Under `policy.trusted_signers` each module's
/// recorded signature must verify with a key configured now (built-in policies excepted).
pub async fn bind(
    path: &SigningPath,
    principal: &Principal,
    key_id: &str,
    list: Vec<NewBinding>,
) -> Result<Vec<(BindingRow, Arc<LoadedPolicy>)>, PolicyError> {
    if path.store().key(key_id).await?.is_none() {
        return Err(PolicyError::NotFound(format!("no key with id {key_id:?}")));
    }
    if list.len() > MAX_BINDINGS {
        return Err(PolicyError::Invalid(format!(
            "at most {MAX_BINDINGS} policies may be bound to a key"
        )));
    }
    let registry = path.policy().registry();
    let (now, _) = crate::clock::now();
    let mut out = Vec::with_capacity(list.len());
    for (i, b) in list.into_iter().enumerate() {
        let policy = registry.policy(&b.policy_id).await?.ok_or_else(|| {
            PolicyError::Invalid(format!(
                "policies[{i}]: no policy with id {:?}",
                b.policy_id
            ))
        })?;
        if !builtin::is_builtin(&policy.compiled.digest) {
            let id = &policy.id;
            path.policy()
                .trusted_signers()
                .check_stored(&policy.compiled.digest, policy.signature.as_ref())
                .map_err(|refusal| PolicyError::Signature {
                    context: format!("policies[{i}] ({id}): "),
                    refusal,
                })?;
        }
        let settings = checked_settings(registry.engine(), &policy, &b.settings)
            .await
            .map_err(|e| match e {
                PolicyError::Invalid(m) => PolicyError::Invalid(format!("policies[{i}]: {m}")),
                other => other,
            })?;
        out.push((
            BindingRow {
                key_id: key_id.to_string(),
                position: i as i64,
                policy_id: policy.id.clone(),
                settings,
                bound_at: now.clone(),
                bound_by: principal.display_id(),
            },
            policy,
        ));
    }
    let event = AuditEvent {
        action: "key.policies",
        outcome: "ok",
        actor: actor(principal),
        key_id: Some(key_id.to_string()),
        request_id: Some(crate::request_id::current()),
        details: json!({
            "policies": out.iter().map(|(b, p)| json!({
                "policy_id": p.id, "name": p.name, "version": p.version,
                "digest": p.compiled.digest, "signer": signer_json(p.signature.as_ref()),
                "settings": serde_json::from_str::<Value>(&b.settings).unwrap_or(Value::Null),
            })).collect::<Vec<_>>(),
        }),
    };
    registry.invalidate_key(key_id);
    let result = path
        .audit()
        .append(
            vec![StateChange::SetKeyPolicies {
                key_id: key_id.to_string(),
                bindings: out.iter().map(|(b, _)| b.clone()).collect(),
            }],
            event,
        )
        .await;
    registry.invalidate_key(key_id);
    result?;
    Ok(out)
}

/// Policies bound to at least one key whose module no signer in `signers` vouches for, with
/// their key count. Binding re-checks signatures, but bindings made before
/// `policy.trusted_signers` was set (or before a signer was removed from it) stay in force
/// until the key is bound again; the server names them in a warning at start.
pub async fn unvouched_bound(
    store: &Store,
    signers: &TrustedSigners,
) -> Result<Vec<(PolicyRow, i64)>, crate::store::StoreError> {
    let mut out = Vec::new();
    if !signers.required() {
        return Ok(out);
    }
    let mut after: Option<String> = None;
    loop {
        let page = store.policies_page(after.as_deref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for row in page {
            let vouched = builtin::is_builtin(&row.digest)
                || signers
                    .check_stored(&row.digest, row.signature.as_ref())
                    .is_ok();
            if !vouched {
                let keys = store.policy_binding_count(&row.id).await?;
                if keys > 0 {
                    out.push((row, keys));
                }
            }
        }
    }
    Ok(out)
}

/// The policies bound to a key, in order.
pub async fn bound(path: &SigningPath, key_id: &str) -> Result<Arc<Vec<BoundPolicy>>, PolicyError> {
    if path.store().key(key_id).await?.is_none() {
        return Err(PolicyError::NotFound(format!("no key with id {key_id:?}")));
    }
    path.policy().registry().bindings(key_id).await
}

/// The stored policy `policy_id`, compiled; `NotFound` when there is none.
async fn loaded(path: &SigningPath, policy_id: &str) -> Result<Arc<LoadedPolicy>, PolicyError> {
    path.policy()
        .registry()
        .policy(policy_id)
        .await?
        .ok_or_else(|| PolicyError::NotFound(format!("no policy with id {policy_id:?}")))
}

/// Evaluates a policy on a given input without signing anything.
pub async fn evaluate(
    path: &SigningPath,
    policy_id: &str,
    input: PolicyInput,
) -> Result<(Arc<LoadedPolicy>, Evaluation), PolicyError> {
    let policy = loaded(path, policy_id).await?;
    let input =
        serde_json::to_vec(&input).map_err(|e| PolicyError::Invalid(format!("input: {e}")))?;
    let p = policy.clone();
    let eval = path
        .policy()
        .engine()
        .run_blocking(move |e| e.evaluate(&p.compiled, &input))
        .await?;
    Ok((policy, eval))
}

/// `settings` as stored with a binding, after the size cap and the policy's own check (a
/// policy without `keyward_validate_settings` accepts any).
async fn checked_settings(
    engine: &crate::policy::PolicyEngine,
    policy: &Arc<LoadedPolicy>,
    settings: &Value,
) -> Result<String, PolicyError> {
    let text = serde_json::to_string(settings).unwrap_or_else(|_| "null".into());
    if text.len() > MAX_SETTINGS_BYTES {
        return Err(PolicyError::Invalid(format!(
            "settings are larger than {MAX_SETTINGS_BYTES} bytes"
        )));
    }
    let (p, bytes) = (policy.clone(), text.clone().into_bytes());
    engine
        .run_blocking(move |e| e.validate_settings(&p.compiled, &bytes))
        .await?
        .map_err(|why| {
            PolicyError::Invalid(format!(
                "policy {} refused its settings: {why}",
                policy.name
            ))
        })?;
    Ok(text)
}

/// Replays a policy (bound or not) with `settings` on the kept inputs of past sign requests
/// that `filter` selects, and audits the replay (`policy.replay`: what was asked and the
/// counts; the answer itself is the caller's). Settings the policy refuses are an error, as
/// they would be at bind time.
pub async fn replay(
    path: &SigningPath,
    principal: &Principal,
    policy_id: &str,
    settings: Value,
    filter: crate::store::inputs::InputFilter,
) -> Result<(Arc<LoadedPolicy>, ReplayReport), PolicyError> {
    let policy = loaded(path, policy_id).await?;
    let engine = path.policy().engine();
    checked_settings(engine, &policy, &settings).await?;
    let rows = path.store().policy_inputs(&filter).await?;
    let p = policy.clone();
    let report = engine
        .run_blocking(move |e| {
            crate::policy::replay::replay(e, &p.compiled, &settings, &rows, REPLAY_BUDGET)
        })
        .await?;
    let event = AuditEvent {
        action: "policy.replay",
        outcome: "ok",
        actor: actor(principal),
        key_id: filter.key_id.clone(),
        request_id: Some(crate::request_id::current()),
        details: json!({
            "policy_id": policy.id,
            "digest": policy.compiled.digest,
            "filter": {
                "key_id": filter.key_id,
                "operation": filter.operation,
                "since_unix": filter.since_unix,
                "until_unix": filter.until_unix,
                "limit": filter.limit,
            },
            "evaluated": report.evaluated,
            "complete": report.complete,
            "changed": report.changed.len(),
        }),
    };
    path.audit().append(Vec::new(), event).await?;
    Ok((policy, report))
}

/// Makes sure the built-in policies named in `names` are stored (uploading them, audited, on
/// first start) and returns their ids in order.
pub async fn ensure_builtins(
    store: &Store,
    audit: &AuditLog,
    registry: &PolicyRegistry,
    names: &[String],
) -> Result<Vec<String>, PolicyError> {
    let mut ids = Vec::new();
    for name in names {
        let module = builtin::module(name)
            .ok_or_else(|| PolicyError::Invalid(format!("no built-in policy named {name:?}")))?;
        if let Some(row) = store.policy_by_name(name, builtin::BUILTIN_VERSION).await? {
            ids.push(row.id);
            continue;
        }
        let limits = registry.engine().limits().default;
        let compiled = registry.engine().compile(&module, limits)?;
        let (now, _) = crate::clock::now();
        let row = PolicyRow {
            id: format!("pol_{}", uuid::Uuid::now_v7().simple()),
            name: name.clone(),
            version: builtin::BUILTIN_VERSION.into(),
            description: "Built into the server: allows every request.".into(),
            digest: compiled.digest.clone(),
            size: module.len() as i64,
            module,
            limits: limits_json(&limits),
            validates_settings: compiled.validates_settings,
            created_at: now,
            created_by: "keyward|system".into(),
            signature: None,
        };
        let event = AuditEvent {
            action: "policy.upload",
            outcome: "ok",
            actor: Actor {
                issuer: "keyward".into(),
                subject: "system".into(),
            },
            key_id: None,
            request_id: None,
            details: json!({"policy_id": row.id, "name": row.name, "version": row.version, "digest": row.digest, "builtin": true}),
        };
        audit
            .append(
                vec![StateChange::InsertPolicy(Box::new(row.clone()))],
                event,
            )
            .await?;
        registry.insert(LoadedPolicy {
            id: row.id.clone(),
            name: row.name,
            version: row.version,
            compiled,
            signature: None,
        });
        ids.push(row.id);
    }
    Ok(ids)
}

//! The last check before a signature is recorded: the key must still be active and the
//! requester still among its signers *at the point of the chain where the signature lands*.
//!
//! A sign request reads the key (from the registry's cache or the database) long before its
//! signature is recorded: it evaluates policies and signs in between. An administrator may
//! disable the key or remove the requester from its signers in that time. Every such change
//! and every signature go through the one audit writer, in order, so the writer re-checks each
//! signature against the key as it stands in its own transaction, with the changes earlier in
//! the same batch applied: a signature ordered after a `key.disable` or a signers change that
//! excludes its requester is refused ([`StoreError::KeyInactive`], [`StoreError::SignerRemoved`]) and never returned.
//!
//! The check costs one query per batch (every key the batch signs with), not one per request.
//! It must never admit a signature the current state would refuse.

use std::collections::HashMap;
use std::sync::Arc;

use super::db::{Conn, DbRow, Dialect, on_conn};

use super::{KeyStatus, Result, StateChange, StoreError};

/// Decides whether a key's signers list (the JSON entries, parsed) admits the requester.
pub type AdmitsSigner = Arc<dyn Fn(&[String]) -> bool + Send + Sync>;

/// "This signature may be recorded only if `key_id` is active and admits the requester."
#[derive(Clone)]
pub struct SignerGrant {
    /// The key that signed.
    pub key_id: String,
    /// Who asked, for messages (`subject`).
    pub requester: String,
    /// The requester's match against a signers list (see `auth::signers::admits`).
    pub admits: AdmitsSigner,
    /// The key's policies version the signature was judged under: refused if the bindings
    /// changed since (`None`: not checked, e.g. a request approved under its stored verdict).
    pub policies_version: Option<i64>,
}

impl std::fmt::Debug for SignerGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerGrant")
            .field("key_id", &self.key_id)
            .field("requester", &self.requester)
            .finish_non_exhaustive()
    }
}

/// What the gate knows of a key: its status and signers list, as of this point of the batch.
#[derive(Debug, Clone)]
struct KeyState {
    status: KeyStatus,
    signers: Vec<String>,
    policies_version: i64,
}

/// The keys a batch signs with, as the writer's transaction sees them.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyGate {
    keys: HashMap<String, Option<KeyState>>,
}

impl KeyGate {
    /// Reads, in one query inside the writer's transaction, every key that `changes` sign with.
    pub(crate) async fn load<'a>(
        conn: &mut Conn<'_>,
        changes: impl Iterator<Item = &'a StateChange>,
    ) -> Result<Self> {
        let mut ids: Vec<&str> = Vec::new();
        for change in changes {
            if let StateChange::RequireSigner(grant) = change
                && !ids.contains(&grant.key_id.as_str())
            {
                ids.push(&grant.key_id);
            }
        }
        let mut gate = KeyGate::default();
        if ids.is_empty() {
            return Ok(gate);
        }
        let ids_json = serde_json::to_string(&ids)
            .map_err(|e| StoreError::Corrupt(format!("key ids: {e}")))?;
        let sql = match conn.dialect() {
            Dialect::Sqlite => {
                "SELECT id, status, signers, policies_version FROM keys \
                 WHERE id IN (SELECT value FROM json_each($1))"
            }
            Dialect::Postgres => {
                "SELECT id, status, signers, policies_version FROM keys \
                 WHERE id IN (SELECT json_array_elements_text($1::json))"
            }
        };
        let rows = on_conn!(conn, |c| {
            let rows = sqlx::query(sql).bind(ids_json).fetch_all(c).await?;
            rows.iter()
                .map(|row| -> Result<(String, String, String, i64)> {
                    Ok((
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        row.try_get(3)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?
        });
        for (id, status, signers, policies_version) in rows {
            let state = KeyState {
                status: KeyStatus::parse(&status)?,
                signers: parse_signers(&id, &signers)?,
                policies_version,
            };
            gate.keys.insert(id, Some(state));
        }
        for id in ids {
            gate.keys.entry(id.to_string()).or_insert(None);
        }
        Ok(gate)
    }

    /// Checks a `RequireSigner` change, or follows a change to a key the gate knows; every
    /// change of a batch passes here in order, before it is applied.
    pub(crate) fn admit(&mut self, change: &StateChange) -> Result<()> {
        match change {
            StateChange::RequireSigner(grant) => match self.keys.get(&grant.key_id) {
                Some(Some(state)) => check(grant, state),
                _ => Err(StoreError::KeyInactive(format!(
                    "key {} no longer exists",
                    grant.key_id
                ))),
            },
            StateChange::SetKeyStatus { key_id, status, .. } => {
                if let Some(Some(state)) = self.keys.get_mut(key_id) {
                    state.status = *status;
                }
                Ok(())
            }
            StateChange::SetKeySigners {
                key_id, signers, ..
            } => {
                if let Some(Some(state)) = self.keys.get_mut(key_id) {
                    state.signers = parse_signers(key_id, signers)?;
                }
                Ok(())
            }
            StateChange::SetKeyPolicies { key_id, .. } => {
                if let Some(Some(state)) = self.keys.get_mut(key_id) {
                    state.policies_version += 1;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The same check for one change outside a batch (one query).
pub(crate) async fn check_one(conn: &mut Conn<'_>, grant: &SignerGrant) -> Result<()> {
    let change = StateChange::RequireSigner(grant.clone());
    let mut gate = KeyGate::load(conn, std::iter::once(&change)).await?;
    gate.admit(&change)
}

fn check(grant: &SignerGrant, state: &KeyState) -> Result<()> {
    if state.status != KeyStatus::Active {
        return Err(StoreError::KeyInactive(format!(
            "key {} was disabled before this signature could be recorded",
            grant.key_id
        )));
    }
    if !(grant.admits)(&state.signers) {
        return Err(StoreError::SignerRemoved(format!(
            "{} is no longer among the signers of key {}",
            grant.requester, grant.key_id
        )));
    }
    if grant
        .policies_version
        .is_some_and(|v| v != state.policies_version)
    {
        return Err(StoreError::PoliciesChanged(format!(
            "the policies bound to key {} changed while this request was judged; send it again",
            grant.key_id
        )));
    }
    Ok(())
}

fn parse_signers(key_id: &str, json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("key {key_id}: signers: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn store_with_key() -> (tempfile::TempDir, Store) {
        let (dir, store) = crate::store::scratch::store().await;
        crate::store::scratch::insert_key(&store, "k1", "[\"subject:alice\",\"subject:bob\"]")
            .await;
        (dir, store)
    }

    fn grant(subject: &'static str) -> StateChange {
        StateChange::RequireSigner(SignerGrant {
            key_id: "k1".into(),
            requester: subject.into(),
            admits: Arc::new(move |list: &[String]| {
                list.is_empty() || list.iter().any(|e| e == &format!("subject:{subject}"))
            }),
            policies_version: None,
        })
    }

    #[tokio::test]
    async fn changes_earlier_in_the_batch_decide_later_signatures() {
        let (_dir, store) = store_with_key().await;
        let batch = [
            grant("alice"),
            StateChange::SetKeySigners {
                key_id: "k1".into(),
                signers: "[\"subject:bob\"]".into(),
                at: "t".into(),
            },
            grant("alice"),
            grant("bob"),
            StateChange::SetKeyStatus {
                key_id: "k1".into(),
                status: KeyStatus::Disabled,
                at: "t".into(),
            },
            grant("bob"),
        ];
        let mut conn = store.pool().acquire().await.expect("conn");
        let mut gate = KeyGate::load(&mut conn.conn(), batch.iter())
            .await
            .expect("load");
        let results: Vec<bool> = batch.iter().map(|c| gate.admit(c).is_ok()).collect();
        assert_eq!(results, [true, true, false, true, true, false]);
    }

    #[tokio::test]
    async fn a_signature_judged_under_older_bindings_is_refused() {
        let (_dir, store) = store_with_key().await;
        let judged_at = |v: i64| {
            let StateChange::RequireSigner(mut g) = grant("alice") else {
                unreachable!()
            };
            g.policies_version = Some(v);
            StateChange::RequireSigner(g)
        };
        let batch = [
            judged_at(0),
            StateChange::SetKeyPolicies {
                key_id: "k1".into(),
                bindings: Vec::new(),
            },
            judged_at(0),
            judged_at(1),
        ];
        let mut conn = store.pool().acquire().await.expect("conn");
        let mut gate = KeyGate::load(&mut conn.conn(), batch.iter())
            .await
            .expect("load");
        let results: Vec<bool> = batch.iter().map(|c| gate.admit(c).is_ok()).collect();
        assert_eq!(results, [true, true, false, true]);
        // A committed rebinding bumps the stored version the same way.
        crate::store::policies::set_bindings(&mut conn.conn(), "k1", &[])
            .await
            .expect("rebind");
        let StateChange::RequireSigner(old) = judged_at(0) else {
            unreachable!()
        };
        let err = check_one(&mut conn.conn(), &old).await.expect_err("stale");
        assert!(matches!(err, StoreError::PoliciesChanged(_)), "{err}");
    }

    #[tokio::test]
    async fn an_unknown_key_and_a_disabled_key_are_refused() {
        let (_dir, store) = store_with_key().await;
        let mut conn = store.pool().acquire().await.expect("conn");
        let StateChange::RequireSigner(mut other) = grant("alice") else {
            unreachable!()
        };
        other.key_id = "nope".into();
        assert!(matches!(
            check_one(&mut conn.conn(), &other).await,
            Err(StoreError::KeyInactive(_))
        ));
        store
            .execute_for_tests("UPDATE keys SET status = 'disabled'")
            .await
            .expect("disable");
        let StateChange::RequireSigner(alice) = grant("alice") else {
            unreachable!()
        };
        let err = check_one(&mut conn.conn(), &alice)
            .await
            .expect_err("disabled");
        assert!(err.to_string().contains("disabled"), "{err}");
    }
}

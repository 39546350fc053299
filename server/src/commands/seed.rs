//! `keyward seed`: fills a `keyward dev` data directory with many keys and signature records,
//! so that a load test (`scripts/bench --big`) measures a big store rather than an empty one.
//!
//! Everything goes through the server's own code: keys are made by key administration
//! (generated and sealed by the software slot, one audited transaction each), and signature
//! records by the audit writer (a sign request row and its chained record per signature,
//! group-committed as under load). The signature records repeat the rows of one real
//! signature made through the signing path first, each with its own request id, key and time,
//! so their sizes are those of real records. The chain stays verifiable.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt, stream};

use super::dev_config;
use crate::app::{AppState, StartError};
use crate::audit::{Actor, AuditEvent};
use crate::auth::{Principal, Role};
use crate::intent::raw::RawPayload;
use crate::keys::{Algorithm, HashAlg, Purpose, SignOptions};
use crate::lifecycle::keys::{NewKey, create_key};
use crate::pipeline::{SignCall, Submitted};
use crate::store::audit::AuditFilter;
use crate::store::{SignStatus, StateChange};

/// Appends in flight at once (the writer batches up to 256).
const IN_FLIGHT: usize = 512;

/// What `seed` did.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// Keys created.
    pub keys: u64,
    /// Signature records appended.
    pub signatures: u64,
    /// Audit records in the chain afterwards.
    pub records: i64,
    /// Seconds it took.
    pub seconds: f64,
}

fn fail(what: &str) -> impl Fn(String) -> StartError + '_ {
    move |e| StartError::Other(format!("seed: {what}: {e}"))
}

/// Adds `keys` Ed25519 software keys to the `keyward dev` data directory `data_dir`, then
/// signature records until the audit log holds at least `records` records. The server must
/// not be running on the directory.
pub async fn seed(data_dir: &Path, keys: u64, records: u64) -> Result<SeedReport, StartError> {
    let start = Instant::now();
    let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (config, _) = dev_config(data_dir, listen)?;
    let state = AppState::build(config, "http://127.0.0.1:0").await?;
    let path = state.signing();
    let principal = Principal {
        issuer: "keyward-seed".into(),
        subject: "seed".into(),
        roles: vec![Role::Admin],
        ..Default::default()
    };
    let run = &uuid::Uuid::new_v4().simple().to_string()[..8];

    let ids: Vec<String> = stream::iter(0..keys.max(1))
        .map(|i| {
            let new = NewKey {
                name: format!("seed-{run}-{i:07}"),
                purpose: Purpose::Raw,
                labels: [("seed".to_string(), run.to_string())].into(),
                signers: vec![],
            };
            let principal = &principal;
            async move {
                create_key(path, principal, new, Algorithm::Ed25519, "software")
                    .await
                    .map(|meta| meta.id)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .map_err(|e| fail("creating a key")(e.to_string()))
        .try_collect()
        .await?;

    // One real signature, whose request row and audit record the others repeat.
    let request_id = crate::request_id::fresh();
    let call = SignCall {
        principal: principal.clone(),
        key_id: ids[0].clone(),
        operation: "raw.sign",
        build: Box::new(|algorithm| {
            let payload =
                RawPayload::Message(HashAlg::Sha256, b"seed: pay 10 EUR to Alice".to_vec());
            Ok((payload.into_intent(algorithm), SignOptions::default()))
        }),
        idempotency: None,
        request_id: request_id.clone(),
    };
    let Submitted::Signed(receipt) = path
        .submit(call)
        .await
        .map_err(|e| fail("the template signature")(e.to_string()))?
    else {
        return Err(fail("the template signature")("it was not signed".into()));
    };
    let store = path.store();
    let template_row = store
        .sign_request(&receipt.request_id)
        .await?
        .ok_or_else(|| fail("the template signature")("its request row is missing".into()))?;
    let template_record = store
        .audit_page(&AuditFilter::default(), None, 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.action == "sign" && r.request_id.as_deref() == Some(&receipt.request_id))
        .ok_or_else(|| fail("the template signature")("its audit record is missing".into()))?;
    let details: serde_json::Value = serde_json::from_str(&template_record.details)
        .map_err(|e| fail("the template record")(e.to_string()))?;

    let head = store.audit_head().await?.map_or(0, |(seq, _)| seq);
    let signatures = records.saturating_sub(u64::try_from(head).unwrap_or(0));
    let actor = Actor {
        issuer: principal.issuer.clone(),
        subject: principal.subject.clone(),
    };
    stream::iter(0..signatures)
        .map(|i| {
            let key_id = ids[(i % ids.len() as u64) as usize].clone();
            let (now, unix) = crate::clock::now();
            let mut row = template_row.clone();
            row.id = crate::request_id::fresh();
            row.key_id.clone_from(&key_id);
            row.status = SignStatus::Signed;
            row.created_at.clone_from(&now);
            row.created_unix = unix;
            let event = AuditEvent {
                action: "sign",
                outcome: "ok",
                actor: actor.clone(),
                key_id: Some(key_id),
                request_id: Some(row.id.clone()),
                details: details.clone(),
            };
            let change = StateChange::InsertSignRequest(Box::new(row));
            async move { path.audit().append(vec![change], event).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .map_err(|e| fail("appending a signature record")(e.to_string()))
        .try_for_each(|_| async { Ok(()) })
        .await?;

    let records = store.audit_head().await?.map_or(0, |(seq, _)| seq);
    store.close().await;
    Ok(SeedReport {
        keys: ids.len() as u64,
        signatures,
        records,
        seconds: start.elapsed().as_secs_f64(),
    })
}

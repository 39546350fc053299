//! The audit writer: one task owns the chain's head and appends records in order.
//!
//! Callers send an event with the state changes that go with it and wait for the answer.
//! The writer takes every job that is waiting (up to `MAX_BATCH`), and writes them in one
//! SQLite transaction: for each job its state changes and its chained record (the hashes are
//! computed here; the sign requests, signature counts and records of the whole batch are
//! written at its end with a few multi-row statements, see `store::batch`). Then it updates
//! the recorded head and commits once (one fsync for the whole batch), and only then answers
//! each caller. A job whose own change is refused is rolled back alone (the batch is written
//! again with a savepoint per job); if the commit fails, every job in the batch fails and the
//! head is reloaded.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::refusals::RefusalLimiter;
use super::{AuditError, AuditEvent, GENESIS_HASH, Result, record_hash};
use crate::error_code::ErrorCode;
use crate::store::audit::{self as rows, AuditRow};
use crate::store::batch::DeferredWrites;
use crate::store::db::{Conn, Dialect, Tx};
use crate::store::gate::KeyGate;
use crate::store::pending::Reservation;
use crate::store::{self, StateChange, Store, StoreError};

const MAX_BATCH: usize = 256;
const QUEUE: usize = 4096;

struct Job {
    changes: Vec<StateChange>,
    event: AuditEvent,
    /// The usage this job's signature was reserved (see `store::pending`): marked with the
    /// job's record before the commit that records the usage, and given back after it, so no
    /// reader counts it twice or not at all.
    reservation: Option<Reservation>,
    done: oneshot::Sender<Result<Appended>>,
}

/// Where an event landed in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The record's sequence number.
    pub seq: i64,
    /// The record's timestamp.
    pub ts: String,
}

/// Handle to the audit writer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    jobs: mpsc::Sender<Job>,
    refusals: std::sync::Arc<RefusalLimiter>,
    batches: std::sync::Arc<AtomicU64>,
}

#[derive(Debug, Clone)]
struct Head {
    seq: i64,
    hash: Vec<u8>,
}

impl AuditLog {
    /// Starts the writer on `store`. Must be called inside a Tokio runtime.
    pub async fn start(store: Store) -> std::result::Result<Self, StoreError> {
        let head = load_head(&store).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let batches = std::sync::Arc::new(AtomicU64::new(0));
        tokio::spawn(run(store, head, rx, batches.clone()));
        Ok(AuditLog {
            jobs: tx,
            refusals: Default::default(),
            batches,
        })
    }

    /// How many batches this writer has committed.
    pub fn batches_committed(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Appends `event` and applies `changes` in the same transaction. Returns only after the
    /// transaction committed.
    pub async fn append(&self, changes: Vec<StateChange>, event: AuditEvent) -> Result<Appended> {
        self.append_reserved(changes, event, None).await
    }

    /// Records a refused attempt, at a bounded rate per caller and reason (see `refusals`):
    /// `caller` and `reason` name the bucket; the record carries how many refusals of that
    /// bucket were not recorded before it. Best effort: a refusal that cannot be recorded is
    /// logged, and the caller is refused all the same.
    pub async fn record_refusal(&self, caller: &str, reason: ErrorCode, mut event: AuditEvent) {
        let (_, now) = crate::clock::now();
        let Some(suppressed) = self.refusals.admit(caller, reason.as_str(), now) else {
            return;
        };
        if let serde_json::Value::Object(map) = &mut event.details {
            map.insert("suppressed_before".into(), suppressed.into());
        }
        if let Err(e) = self.append(Vec::new(), event).await {
            tracing::warn!(error = %e, "a refused attempt could not be recorded");
        }
    }

    /// Like `append`, for a signature whose usage was reserved: the reservation is given back
    /// when the batch that records the usage commits (or when the job is refused).
    pub async fn append_reserved(
        &self,
        changes: Vec<StateChange>,
        event: AuditEvent,
        reservation: Option<Reservation>,
    ) -> Result<Appended> {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                changes,
                event,
                reservation,
                done,
            })
            .await
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".into()))?
    }
}

async fn load_head(store: &Store) -> std::result::Result<Head, StoreError> {
    Ok(match store.audit_head().await? {
        Some((seq, hash)) => Head { seq, hash },
        None => Head {
            seq: 0,
            hash: GENESIS_HASH.to_vec(),
        },
    })
}

async fn run(
    store: Store,
    mut head: Head,
    mut rx: mpsc::Receiver<Job>,
    batches: std::sync::Arc<AtomicU64>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcomes = write_batch(&store, &mut head, &mut batch, &mut rx).await;
        match outcomes {
            Ok(results) => {
                batches.fetch_add(1, Ordering::Relaxed);
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.done.send(result);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "audit commit failed; no dependent result is returned");
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(AuditError::Unavailable(err.to_string())));
                }
                match load_head(&store).await {
                    Ok(h) => head = h,
                    Err(e) => tracing::error!(error = %e, "cannot reload the audit head"),
                }
            }
        }
    }
}

/// Writes one batch. `Err` means the whole transaction failed; `Ok` holds each job's result.
///
/// Almost every job succeeds, so the batch is first written without per-job savepoints (two
/// round trips to SQLite fewer per job). If any job is refused (e.g. an idempotency key already
/// used), that transaction is rolled back and the batch is written again job by job, each in
/// its own savepoint, so one refused job never takes the others down with it.
///
/// Jobs that arrive while the transaction begins and waits for what serializes the chain
/// (another node's batch holds the head on PostgreSQL) join this batch: the wait makes the
/// batch larger instead of the next one, so several nodes write as few batches as one.
async fn write_batch(
    store: &Store,
    head: &mut Head,
    batch: &mut Vec<Job>,
    rx: &mut mpsc::Receiver<Job>,
) -> std::result::Result<Vec<Result<Appended>>, StoreError> {
    let mut tx = store.hot_pool().begin_write().await?;
    lock_head(store, &mut tx, head).await?;
    let locked = std::time::Instant::now();
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    let mut gate = KeyGate::load(&mut tx.conn(), batch.iter().flat_map(|j| &j.changes)).await?;
    let mut next = head.clone();
    let mut results = Vec::with_capacity(batch.len());
    let mut refused = false;
    let mut writes = DeferredWrites::default();
    for job in batch.iter() {
        match write_job(
            &mut tx.conn(),
            store.node_id(),
            &mut gate,
            &next,
            job,
            &mut writes,
        )
        .await
        {
            Ok(appended) => {
                next = appended.0;
                results.push(Ok(appended.1));
            }
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    if !refused {
        // The records, the head and the taking of the reservations in one go (one statement
        // on PostgreSQL).
        writes.finish(
            (next.seq, next.hash.clone()),
            reserved_rows(batch, &results),
        );
        refused = writes.write(&mut tx.conn()).await.is_err();
    }
    if !refused {
        commit(tx, batch, &results).await?;
        held(locked, batch.len());
        *head = next;
        return Ok(results);
    }
    tx.rollback().await?;
    write_batch_isolated(store, head, batch).await
}

/// Writes one batch with a savepoint per job: a refused job is rolled back alone.
async fn write_batch_isolated(
    store: &Store,
    head: &mut Head,
    batch: &mut [Job],
) -> std::result::Result<Vec<Result<Appended>>, StoreError> {
    let mut tx = store.hot_pool().begin_write().await?;
    lock_head(store, &mut tx, head).await?;
    let locked = std::time::Instant::now();
    let mut gate = KeyGate::load(&mut tx.conn(), batch.iter().flat_map(|j| &j.changes)).await?;
    let mut next = head.clone();
    let mut results = Vec::with_capacity(batch.len());
    for job in batch.iter() {
        tx.conn().run("SAVEPOINT job").await?;
        // The gate follows the job's changes; a refused job's changes are rolled back, so the
        // gate starts again from the state before it.
        let mut job_gate = gate.clone();
        let mut writes = DeferredWrites::default();
        let written = match write_job(
            &mut tx.conn(),
            store.node_id(),
            &mut job_gate,
            &next,
            job,
            &mut writes,
        )
        .await
        {
            Ok(appended) => writes.write(&mut tx.conn()).await.map(|()| appended),
            Err(e) => Err(e),
        };
        match written {
            Ok((job_head, appended)) => {
                tx.conn().run("RELEASE job").await?;
                gate = job_gate;
                next = job_head;
                results.push(Ok(appended));
            }
            Err(err) => {
                tx.conn().run("ROLLBACK TO job").await?;
                tx.conn().run("RELEASE job").await?;
                results.push(Err(match err {
                    StoreError::Conflict(_)
                    | StoreError::KeyInactive(_)
                    | StoreError::SignerRemoved(_)
                    | StoreError::PoliciesChanged(_) => AuditError::Rejected(err),
                    other => AuditError::Unavailable(other.to_string()),
                }));
            }
        }
    }
    if next.seq != head.seq {
        rows::set_head(&mut tx.conn(), next.seq, &next.hash).await?;
    }
    // On PostgreSQL the reservations are rows: gone in the transaction that adds their usage.
    crate::store::shared::take(&mut tx.conn(), &reserved_rows(batch, &results)).await?;
    commit(tx, batch, &results).await?;
    held(locked, batch.len());
    *head = next;
    Ok(results)
}

/// The usage reservation rows (PostgreSQL) of the jobs of `batch` that are recorded: the
/// batch's transaction deletes them with the usage it adds (see `store::shared`).
fn reserved_rows(batch: &[Job], results: &[Result<Appended>]) -> Vec<i64> {
    let mut rows = Vec::new();
    for (job, result) in batch.iter().zip(results) {
        if let (Some(reservation), Ok(_)) = (&job.reservation, result)
            && let Some(shared) = reservation.shared()
        {
            rows.extend_from_slice(shared.ids());
        }
    }
    rows
}

/// Logs (at debug) how long a committed batch held what serializes the chain: the write lock
/// of the database on SQLite, the chain head row on PostgreSQL (`scripts/bench --postgres`
/// reads these lines to work out the cluster's ceiling).
fn held(locked: std::time::Instant, jobs: usize) {
    tracing::debug!(
        jobs,
        held_us = u64::try_from(locked.elapsed().as_micros()).unwrap_or(u64::MAX),
        "audit batch committed"
    );
}

/// On PostgreSQL, where several nodes append to the one chain, locks the chain head row for
/// the rest of the transaction and takes the head from it: every batch of every node appends
/// after the last committed record, one batch at a time. On SQLite this process is the only
/// writer and its head is current.
async fn lock_head(
    store: &Store,
    tx: &mut Tx,
    head: &mut Head,
) -> std::result::Result<(), StoreError> {
    if store.dialect() == Dialect::Postgres {
        let (seq, hash) = rows::lock_head(&mut tx.conn()).await?;
        *head = Head { seq, hash };
    }
    Ok(())
}

/// Commits a batch (whose transaction deleted its reservation rows on PostgreSQL) and gives
/// back its usage reservations. Each reservation is first marked with the `seq` of the record
/// that carries its usage, so a reader whose snapshot of the counters already holds the record
/// does not count it again (see `store::pending`).
async fn commit(
    tx: Tx,
    batch: &mut [Job],
    results: &[Result<Appended>],
) -> std::result::Result<(), StoreError> {
    for (job, result) in batch.iter().zip(results) {
        if let (Some(reservation), Ok(appended)) = (&job.reservation, result) {
            reservation.recorded_at(appended.seq);
        }
    }
    let done = tx.commit().await;
    if done.is_ok() {
        for (job, result) in batch.iter().zip(results) {
            if let (Some(reservation), Ok(_)) = (&job.reservation, result)
                && let Some(rows) = reservation.shared()
            {
                rows.taken();
            }
        }
    }
    for job in batch.iter_mut() {
        job.reservation = None;
    }
    Ok(done?)
}

/// Checks and applies one job's changes (deferring what `writes` takes) and chains its
/// record, written by `node_id`, after `head` into `writes`; returns the new head and where
/// the record landed.
async fn write_job<'a>(
    conn: &mut Conn<'_>,
    node_id: &str,
    gate: &mut KeyGate,
    head: &Head,
    job: &'a Job,
    writes: &mut DeferredWrites<'a>,
) -> std::result::Result<(Head, Appended), StoreError> {
    for change in &job.changes {
        gate.admit(change)?;
        if !matches!(change, StateChange::RequireSigner(_)) && !writes.defer(change) {
            store::apply_change(conn, change).await?;
        }
    }
    let event = &job.event;
    let (ts, _) = crate::clock::now();
    let mut row = AuditRow {
        seq: head.seq + 1,
        ts,
        action: event.action.to_string(),
        outcome: event.outcome.to_string(),
        actor_issuer: event.actor.issuer.clone(),
        actor_subject: event.actor.subject.clone(),
        key_id: event.key_id.clone(),
        request_id: event.request_id.clone(),
        details: serde_json::to_string(&event.details)
            .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
        prev_hash: head.hash.clone(),
        node_id: Some(node_id.to_string()),
        hash: Vec::new(),
    };
    row.hash = record_hash(&row).to_vec();
    let next = Head {
        seq: row.seq,
        hash: row.hash.clone(),
    };
    let appended = Appended {
        seq: row.seq,
        ts: row.ts.clone(),
    };
    writes.audit(row);
    Ok((next, appended))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Actor;
    use crate::store::{SignRequestRow, SignStatus};

    fn event(n: usize) -> AuditEvent {
        AuditEvent {
            action: "sign",
            outcome: "ok",
            actor: Actor {
                issuer: "iss".into(),
                subject: "alice".into(),
            },
            key_id: Some("k1".into()),
            request_id: Some(format!("r{n}")),
            details: serde_json::json!({"n": n}),
        }
    }

    fn request(n: usize, idempotency_key: &str) -> StateChange {
        StateChange::InsertSignRequest(Box::new(SignRequestRow {
            id: format!("r{n}"),
            key_id: "k1".into(),
            issuer: "iss".into(),
            subject: "alice".into(),
            operation: "raw.sign".into(),
            status: SignStatus::Signed,
            intent: "{}".into(),
            decision: "{}".into(),
            idempotency_key: Some(idempotency_key.into()),
            body_hash: None,
            response: None,
            error_code: None,
            error_message: None,
            created_at: "t".into(),
            created_unix: 1_800_000_000,
        }))
    }

    #[tokio::test]
    async fn a_refused_job_in_a_batch_is_rolled_back_alone() {
        let (_dir, store) = crate::store::scratch::store().await;
        crate::store::scratch::insert_key(&store, "k1", "[]").await;
        let log = AuditLog::start(store.clone()).await.expect("writer");
        // Five jobs queued together; the third reuses the first one's idempotency key.
        let keys = ["a", "b", "a", "c", "d"];
        let results = futures_util::future::join_all(
            keys.iter()
                .enumerate()
                .map(|(n, k)| log.append(vec![request(n, k)], event(n))),
        )
        .await;
        for (n, result) in results.iter().enumerate() {
            if n == 2 {
                assert!(matches!(result, Err(AuditError::Rejected(_))), "{result:?}");
            } else {
                assert!(result.is_ok(), "job {n}: {result:?}");
            }
        }
        let seqs: Vec<i64> = results.iter().flatten().map(|a| a.seq).collect();
        assert_eq!(
            seqs,
            vec![1, 2, 3, 4],
            "the refused job took no place in the chain"
        );
        let n: i64 = store
            .scalar_for_tests("SELECT COUNT(*) FROM sign_requests")
            .await
            .expect("count");
        assert_eq!(n, 4);
        // The refused job's signature was not counted either.
        let w = store
            .usage_of(
                &store::usage::key_scope("k1"),
                store::usage::SIGNATURES,
                1_800_000_000,
            )
            .await
            .expect("usage");
        assert_eq!(w.count_hour, 4);
        let report = crate::audit::chain::verify(&store).await.expect("verify");
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.records, 4);
    }

    #[tokio::test]
    async fn jobs_that_arrive_while_the_writer_waits_for_the_chain_join_its_batch() {
        let (_dir, store) = crate::store::scratch::store().await;
        crate::store::scratch::insert_key(&store, "k1", "[]").await;
        let log = AuditLog::start(store.clone()).await.expect("writer");
        // Another writer (another node on PostgreSQL) holds what serializes the chain.
        let mut other = store.pool().begin_write().await.expect("begin");
        if store.dialect() == Dialect::Postgres {
            rows::lock_head(&mut other.conn()).await.expect("lock head");
        }
        let first = tokio::spawn({
            let log = log.clone();
            async move { log.append(vec![request(0, "k0")], event(0)).await }
        });
        // The writer takes the first job and waits; nineteen more arrive meanwhile.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let rest: Vec<_> = (1..20)
            .map(|n| {
                let log = log.clone();
                tokio::spawn(async move {
                    log.append(vec![request(n, &format!("k{n}"))], event(n))
                        .await
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            log.batches_committed(),
            0,
            "nothing commits while the chain is held"
        );
        other.rollback().await.expect("release");
        let mut seqs = vec![first.await.expect("join").expect("first").seq];
        for job in rest {
            seqs.push(job.await.expect("join").expect("job").seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=20).collect::<Vec<i64>>());
        assert_eq!(
            log.batches_committed(),
            1,
            "the waiting jobs were written with the first"
        );
        let report = crate::audit::chain::verify(&store).await.expect("verify");
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.records, 20);
    }
}

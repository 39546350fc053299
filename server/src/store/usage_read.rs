//! How a sign request's policies get the usage they judge: the request reserves what it will
//! add, then reads what others reserved and what the counters hold (see `pending` for why in
//! that order).
//!
//! On SQLite the reservation is a step in memory and the counters one or two reads. On
//! PostgreSQL the reservation is a row every node sees (`shared`), and a node groups the
//! requests it has in flight, as the audit writer groups commits: one statement inserts the
//! reservations of the whole group (committed at once), then one statement reads, in one
//! snapshot, the reservations of every scope the group asks for, their signature counters,
//! their spend counters and the audit head. Each request gets the sums minus its own rows.
//! So a group of N requests costs two statements instead of 3N.
//!
//! The guarantee is the one of a request alone: a request's read comes after its insert
//! committed, so of two requests racing for the last unit of a limit on any nodes, the one
//! whose group inserted later sees the other's row. Requests of one group see each other (they
//! are all in flight), which errs towards a denial as any two requests in flight do. Reading the
//! reservations and the counters in one snapshot counts a signature committed at any moment
//! exactly once: as a row before its commit, in the counters after.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ruint::aliases::U256;
use sqlx::{PgPool, Row};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::pending::{InFlight, Reservation};
use super::shared::{RESERVATION_TTL, SharedReservation, sum_of_amounts};
use super::usage::{self, SIGNATURES, Snapshot, UsageDelta, UsageWindow};
use super::{Result, Store, StoreError, db::Pool};

/// What a sign request asks of the usage.
#[derive(Debug, Clone)]
pub struct UsageAsk {
    /// The key's scope ([`usage::key_scope`]).
    pub key_scope: String,
    /// The principal's scope ([`usage::principal_scope`]).
    pub principal_scope: String,
    /// What the request adds if it is signed (its reservation).
    pub own: Vec<UsageDelta>,
    /// The metric prefix of the spend counters of the key to read, if the intent has any.
    pub spend_prefix: Option<String>,
    /// The request's time (Unix seconds).
    pub now: i64,
}

/// What a sign request's policies judge, with the reservation the request holds meanwhile.
#[derive(Debug)]
pub struct UsageRead {
    /// What other requests in flight reserved in the request's scopes.
    pub in_flight: InFlight,
    /// The request's own reservation (given back when dropped).
    pub reservation: Reservation,
    /// The signature counters of the key and of the principal.
    pub signatures: Snapshot<[UsageWindow; 2]>,
    /// The key's spend counters under the asked prefix, when one was asked.
    pub spend: Option<Snapshot<BTreeMap<String, UsageWindow>>>,
}

/// Most requests in one group (bounds the statements' arrays).
const MAX_GROUP: usize = 256;
/// Groups of one node in the database at once: while one runs, the next requests gather.
/// One measured best: with two, groups were half as large and the database spent about 15%
/// more per request on two nodes, for no more throughput on one.
pub(super) const GROUPS_AT_ONCE: usize = 1;

impl Store {
    /// Reserves `ask.own` and reads the usage the request's policies judge.
    pub async fn read_usage(&self, ask: UsageAsk) -> Result<UsageRead> {
        let (Pool::Postgres(hot), Pool::Postgres(pool)) = (self.hot_pool(), self.pool()) else {
            let scopes = [ask.key_scope.as_str(), ask.principal_scope.as_str()];
            let (in_flight, reservation) = self.pending_usage().reserve(&scopes, ask.own);
            let signatures = self.usage_counts(scopes, SIGNATURES, ask.now).await?;
            let spend = match &ask.spend_prefix {
                Some(prefix) => Some(self.usage_snapshot(&ask.key_scope, prefix, ask.now).await?),
                None => None,
            };
            return Ok(UsageRead {
                in_flight,
                reservation,
                signatures,
                spend,
            });
        };
        let groups = self
            .groups
            .get_or_init(|| UsageGroups::start(hot.clone(), pool.clone(), self.node_id().into()));
        let (reply, answer) = oneshot::channel();
        groups.jobs.send(Job { ask, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// How many groups this node's usage reads ran in (PostgreSQL; 0 on SQLite).
    pub fn usage_groups_run(&self) -> u64 {
        self.groups
            .get()
            .map_or(0, |g| g.run.load(std::sync::atomic::Ordering::Relaxed))
    }
}

fn gone() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

/// One request waiting in a group.
struct Job {
    ask: UsageAsk,
    reply: oneshot::Sender<Result<UsageRead>>,
}

/// The task that groups a node's usage reads (PostgreSQL).
#[derive(Debug)]
pub(super) struct UsageGroups {
    jobs: mpsc::UnboundedSender<Job>,
    run: Arc<std::sync::atomic::AtomicU64>,
}

impl UsageGroups {
    /// Groups on `hot` (the store's `hot_pool`); the reservations are given back through
    /// `pool`.
    fn start(hot: PgPool, pool: PgPool, node_id: Arc<str>) -> Self {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let run = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = run.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(GROUPS_AT_ONCE));
            while let Some(first) = queue.recv().await {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                // Everything that arrived while the slot was busy joins this group.
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match queue.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (hot, pool, node_id) = (hot.clone(), pool.clone(), node_id.clone());
                tokio::spawn(async move {
                    run_group(&hot, &pool, &node_id, group).await;
                    drop(slot);
                });
            }
        });
        UsageGroups { jobs, run }
    }
}

/// Inserts the reservations of `group`, then reads for each distinct request time (usually
/// one), and answers every request.
async fn run_group(hot: &PgPool, pool: &PgPool, node_id: &str, group: Vec<Job>) {
    let ids = match insert(hot, node_id, &group).await {
        Ok(ids) => ids,
        Err(e) => {
            for job in group {
                let _ = job.reply.send(Err(copy_of(&e)));
            }
            return;
        }
    };
    let mut by_time: BTreeMap<i64, Vec<(Job, Reservation)>> = BTreeMap::new();
    for (job, ids) in group.into_iter().zip(ids) {
        let reservation = Reservation::from_shared(SharedReservation::new(ids, pool.clone()));
        by_time
            .entry(job.ask.now)
            .or_default()
            .push((job, reservation));
    }
    for (now, jobs) in by_time {
        let asks: Vec<&UsageAsk> = jobs.iter().map(|(j, _)| &j.ask).collect();
        match read(hot, now, &asks).await {
            Ok(read) => {
                for (job, reservation) in jobs {
                    let answer = read.answer(&job.ask, reservation);
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                // Each reservation is given back as it drops.
                for (job, _) in jobs {
                    let _ = job.reply.send(Err(copy_of(&e)));
                }
            }
        }
    }
}

/// The error of a group's statement, for each of its requests.
fn copy_of(e: &StoreError) -> StoreError {
    match e {
        StoreError::Database(sqlx::Error::PoolTimedOut) => {
            StoreError::Database(sqlx::Error::PoolTimedOut)
        }
        StoreError::Database(sqlx::Error::PoolClosed) => gone(),
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

/// Inserts every request's reservation rows in one statement; the ids of each request's rows.
async fn insert(pool: &PgPool, node_id: &str, group: &[Job]) -> Result<Vec<Vec<i64>>> {
    let rows: usize = group.iter().map(|j| j.ask.own.len()).sum();
    if rows == 0 {
        return Ok(vec![Vec::new(); group.len()]);
    }
    let (mut scope, mut metric, mut count, mut amount, mut created) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for job in group {
        for d in &job.ask.own {
            scope.push(d.scope.as_str());
            metric.push(d.metric.as_str());
            count.push(
                i64::try_from(d.count)
                    .map_err(|_| StoreError::Corrupt("usage count out of range".into()))?,
            );
            amount.push(d.amount.to_string());
            created.push(job.ask.now);
        }
    }
    // The rows are inserted in the order given, so their ids (from one sequence, ascending
    // within a statement) sorted are the rows in that order. One statement text whatever the
    // number of rows: prepared once per connection.
    let mut ids = sqlx::query_scalar::<_, i64>(
        "INSERT INTO usage_reservations (node_id, scope, metric, count, amount, created_unix) \
         SELECT $1, scope, metric, count, amount, created \
         FROM UNNEST($2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::BIGINT[]) \
         WITH ORDINALITY AS r (scope, metric, count, amount, created, ord) \
         ORDER BY ord \
         RETURNING id",
    )
    .bind(node_id)
    .bind(&scope)
    .bind(&metric)
    .bind(&count)
    .bind(&amount)
    .bind(&created)
    .fetch_all(pool)
    .await?;
    if ids.len() != rows {
        return Err(StoreError::Corrupt(format!(
            "{} reservation rows inserted, {} returned",
            rows,
            ids.len()
        )));
    }
    ids.sort_unstable();
    let mut ids = ids.into_iter();
    Ok(group
        .iter()
        .map(|job| ids.by_ref().take(job.ask.own.len()).collect())
        .collect())
}

/// The reservations, signature counters, spend counters and audit head a group asked for, read
/// in one snapshot.
#[derive(Default)]
struct GroupRead {
    /// Reserved (count, amount) by scope and metric, every request of the group included.
    reserved: BTreeMap<(String, String), (u64, U256)>,
    /// Signature counters by scope.
    signatures: BTreeMap<String, UsageWindow>,
    /// Spend counters by scope and metric.
    spend: BTreeMap<(String, String), UsageWindow>,
    head: i64,
}

/// Reads what the requests `asks`, all at time `now`, need.
async fn read(pool: &PgPool, now: i64, asks: &[&UsageAsk]) -> Result<GroupRead> {
    let scopes: BTreeSet<&str> = asks
        .iter()
        .flat_map(|a| [a.key_scope.as_str(), a.principal_scope.as_str()])
        .collect();
    let scopes: Vec<&str> = scopes.into_iter().collect();
    let spend: BTreeSet<(&str, &str)> = asks
        .iter()
        .filter_map(|a| Some((a.key_scope.as_str(), a.spend_prefix.as_deref()?)))
        .collect();
    let (mut spend_scope, mut spend_from, mut spend_to) = (Vec::new(), Vec::new(), Vec::new());
    for (scope, prefix) in spend {
        spend_scope.push(scope);
        spend_from.push(prefix);
        spend_to.push(usage::prefix_end(prefix));
    }
    let (minute_from, hour_from) = usage::window_starts(now);
    let rows = sqlx::query(
        "SELECT 0 AS part, scope, metric, CAST(NULL AS BIGINT) AS span, \
                CAST(SUM(count) AS BIGINT) AS count, CAST(SUM(CAST(amount AS NUMERIC)) AS TEXT) AS amount \
         FROM usage_reservations WHERE scope = ANY($1) AND created_unix >= $2 \
         GROUP BY scope, metric \
         UNION ALL \
         SELECT 1, scope, NULL, span, CAST(SUM(count) AS BIGINT), NULL FROM usage_counters \
         WHERE scope = ANY($1) AND metric = $3 \
         AND ((span = 60 AND bucket >= $4) OR (span = 3600 AND bucket >= $5)) \
         GROUP BY scope, span \
         UNION ALL \
         SELECT 2, c.scope, c.metric, c.span, CAST(SUM(c.count) AS BIGINT), \
                CAST(SUM(CAST(c.amount AS NUMERIC)) AS TEXT) \
         FROM usage_counters c \
         WHERE EXISTS (SELECT 1 FROM UNNEST($6::TEXT[], $7::TEXT[], $8::TEXT[]) AS p (scope, lo, hi) \
                       WHERE c.scope = p.scope AND c.metric >= p.lo AND c.metric < p.hi) \
         AND ((c.span = 60 AND c.bucket >= $4) OR (c.span = 3600 AND c.bucket >= $5)) \
         GROUP BY c.scope, c.metric, c.span \
         UNION ALL \
         SELECT 3, NULL, NULL, NULL, seq, NULL FROM audit_head WHERE id = 1",
    )
    .bind(&scopes)
    .bind(now - RESERVATION_TTL)
    .bind(SIGNATURES)
    .bind(minute_from)
    .bind(hour_from)
    .bind(&spend_scope)
    .bind(&spend_from)
    .bind(&spend_to)
    .fetch_all(pool)
    .await?;
    let mut out = GroupRead::default();
    for row in rows {
        let part: i32 = row.try_get(0)?;
        let count = row.try_get::<i64, _>(4)?.max(0) as u64;
        let amount = || -> Result<U256> { sum_of_amounts(&row.try_get::<String, _>(5)?) };
        let in_hour = || -> Result<bool> { Ok(row.try_get::<i64, _>(3)? == usage::MINUTE) };
        match part {
            0 => {
                let key = (row.try_get(1)?, row.try_get(2)?);
                out.reserved.insert(key, (count, amount()?));
            }
            1 => {
                let w = out.signatures.entry(row.try_get(1)?).or_default();
                *(if in_hour()? {
                    &mut w.count_hour
                } else {
                    &mut w.count_day
                }) = count;
            }
            2 => {
                let w = out
                    .spend
                    .entry((row.try_get(1)?, row.try_get(2)?))
                    .or_default();
                let amount = amount()?;
                if in_hour()? {
                    (w.count_hour, w.amount_hour) = (count, amount);
                } else {
                    (w.count_day, w.amount_day) = (count, amount);
                }
            }
            _ => out.head = count as i64,
        }
    }
    Ok(out)
}

impl GroupRead {
    /// One request's share of the group's read: the others' reservations are the sums of its
    /// scopes less its own rows.
    fn answer(&self, ask: &UsageAsk, reservation: Reservation) -> UsageRead {
        let mut others = Vec::new();
        for ((scope, metric), (count, amount)) in &self.reserved {
            if *scope != ask.key_scope && *scope != ask.principal_scope {
                continue;
            }
            let (mut count, mut amount) = (*count, *amount);
            for own in ask
                .own
                .iter()
                .filter(|d| d.scope == *scope && d.metric == *metric)
            {
                count = count.saturating_sub(own.count);
                amount = amount.saturating_sub(own.amount);
            }
            if count > 0 || !amount.is_zero() {
                others.push(UsageDelta {
                    scope: scope.clone(),
                    metric: metric.clone(),
                    at_unix: ask.now,
                    count,
                    amount,
                });
            }
        }
        let signatures = [&ask.key_scope, &ask.principal_scope]
            .map(|s| self.signatures.get(s).copied().unwrap_or_default());
        let spend = ask.spend_prefix.as_ref().map(|prefix| Snapshot {
            value: self
                .spend
                .iter()
                .filter(|((scope, metric), _)| {
                    *scope == ask.key_scope && metric.starts_with(prefix.as_str())
                })
                .map(|((_, metric), w)| (metric.clone(), *w))
                .collect(),
            head: self.head,
        });
        UsageRead {
            in_flight: InFlight::of_rows(others),
            reservation,
            signatures: Snapshot {
                value: signatures,
                head: self.head,
            },
            spend,
        }
    }
}

#[cfg(test)]
mod tests;

//! The grouped usage reads on PostgreSQL (each test returns at once on SQLite, whose reads
//! the pending-usage tests cover).

use std::collections::BTreeMap;

use ruint::aliases::U256;
use sqlx::Row;

use super::*;
use crate::store::Dialect;

const NOW: i64 = 1_800_000_000;

fn delta(scope: &str, metric: &str, count: u64, amount: U256) -> UsageDelta {
    UsageDelta {
        scope: scope.into(),
        metric: metric.into(),
        at_unix: NOW,
        count,
        amount,
    }
}

fn ask(principal: &str, own: Vec<UsageDelta>, now: i64) -> UsageAsk {
    UsageAsk {
        key_scope: "key:k".into(),
        principal_scope: format!("principal:{principal}"),
        own,
        spend_prefix: None,
        now,
    }
}

async fn postgres() -> Option<(tempfile::TempDir, Store, PgPool)> {
    let (dir, store) = crate::store::scratch::store().await;
    if store.dialect() != Dialect::Postgres {
        return None;
    }
    let Pool::Postgres(pool) = store.pool().clone() else {
        unreachable!("a PostgreSQL store has a PostgreSQL pool");
    };
    Some((dir, store, pool))
}

/// Forty requests at once, request `i` reserving the amount 2^i: the amount each one sees in
/// flight names exactly the others it saw. Of every two, at least one saw the other (so two
/// of them cannot both take the last unit of a limit), none saw itself, and they were read in
/// fewer groups than requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_at_once_are_grouped_and_of_any_two_one_sees_the_other() {
    let Some((_dir, store, _)) = postgres().await else {
        return;
    };
    const N: usize = 40;
    let mut tasks = Vec::new();
    for i in 0..N {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let own = vec![delta("key:k", SIGNATURES, 1, U256::from(1) << i)];
            store.read_usage(ask(&format!("p{i}"), own, NOW)).await
        }));
    }
    let mut reads = Vec::new();
    for task in tasks {
        reads.push(task.await.expect("task").expect("read"));
    }
    let seen: Vec<U256> = reads
        .iter()
        .map(|r| r.in_flight.window("key:k", SIGNATURES, 0).amount_hour)
        .collect();
    for (i, mask) in seen.iter().enumerate() {
        assert!(!mask.bit(i), "request {i} counted its own reservation");
        let count = reads[i].in_flight.window("key:k", SIGNATURES, 0).count_hour;
        assert_eq!(count, mask.count_ones() as u64, "request {i}");
        // Its principal's scope holds only its own row.
        let principal = reads[i]
            .in_flight
            .window(&format!("principal:p{i}"), SIGNATURES, 0);
        assert_eq!(principal.count_hour, 0);
        for (j, other) in seen.iter().enumerate().skip(i + 1) {
            assert!(
                mask.bit(j) || other.bit(i),
                "requests {i} and {j} did not see each other"
            );
        }
    }
    let groups = store.usage_groups_run();
    assert!(
        groups < N as u64,
        "{N} requests at once were read in {groups} groups"
    );
    for r in reads {
        r.reservation.release().await;
    }
    let after = store.read_usage(ask("q", Vec::new(), NOW)).await.unwrap();
    assert_eq!(after.in_flight.window("key:k", SIGNATURES, 0).count_hour, 0);
}

/// One group of requests at different times, some reserving several rows and some none:
/// each request's reservation holds exactly its rows, and each reads the windows of its own
/// time.
#[tokio::test]
async fn a_group_gives_each_request_its_rows_and_its_windows() {
    let Some((_dir, store, pool)) = postgres().await else {
        return;
    };
    // Signatures counted an hour and a half before NOW: in the day window of NOW, and in the
    // hour window of a request made 50 minutes earlier.
    let mut tx = store.pool().begin().await.unwrap();
    let mut past = delta("key:k", SIGNATURES, 3, U256::ZERO);
    past.at_unix = NOW - 5400;
    usage::add(&mut tx.conn(), &past).await.unwrap();
    let mut spent = delta("key:k", "eth:1:native", 1, U256::from(250));
    spent.at_unix = NOW - 30;
    usage::add(&mut tx.conn(), &spent).await.unwrap();
    tx.commit().await.unwrap();

    let mut asks = vec![
        ask(
            "a",
            vec![
                delta("key:k", SIGNATURES, 1, U256::ZERO),
                delta("key:k", "eth:1:native", 1, U256::from(7)),
            ],
            NOW,
        ),
        ask("b", Vec::new(), NOW),
        ask(
            "c",
            vec![delta("principal:c", SIGNATURES, 1, U256::ZERO)],
            NOW - 3000,
        ),
    ];
    asks[0].spend_prefix = Some("eth:1:".into());
    let mut answers = Vec::new();
    let mut jobs = Vec::new();
    for a in &asks {
        let (reply, answer) = oneshot::channel();
        jobs.push(Job {
            ask: a.clone(),
            reply,
        });
        answers.push(answer);
    }
    run_group(&pool, &pool, "node-x", jobs).await;
    let mut reads = Vec::new();
    for answer in answers {
        reads.push(answer.await.unwrap().unwrap());
    }

    for (read, ask) in reads.iter().zip(&asks) {
        let ids = read
            .reservation
            .shared()
            .map(|r| r.ids().to_vec())
            .unwrap_or_default();
        let rows = sqlx::query(
            "SELECT scope, metric, count, amount, created_unix, node_id FROM usage_reservations \
             WHERE id = ANY($1) ORDER BY id",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await
        .unwrap();
        let got: Vec<(String, String, i64, String, i64, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect();
        let wanted: Vec<_> = ask
            .own
            .iter()
            .map(|d| {
                (
                    d.scope.clone(),
                    d.metric.clone(),
                    d.count as i64,
                    d.amount.to_string(),
                    ask.now,
                    "node-x".to_string(),
                )
            })
            .collect();
        assert_eq!(got, wanted, "the rows of {}", ask.principal_scope);
    }

    // `b` sees `a`'s rows in flight, and the day's three signatures (not within the hour).
    let b = &reads[1];
    assert_eq!(b.in_flight.window("key:k", SIGNATURES, 0).count_hour, 1);
    assert_eq!(
        b.in_flight.window("key:k", "eth:1:native", 0).amount_hour,
        U256::from(7)
    );
    assert_eq!(b.signatures.value[0].count_hour, 0);
    assert_eq!(b.signatures.value[0].count_day, 3);
    // `a` does not see its own rows; its spend counters are the one of the last minute.
    let a = &reads[0];
    assert_eq!(a.in_flight.window("key:k", SIGNATURES, 0).count_hour, 0);
    let spend = a.spend.as_ref().expect("a asked for its spend counters");
    let wanted: BTreeMap<String, UsageWindow> = [(
        "eth:1:native".to_string(),
        UsageWindow {
            count_hour: 1,
            count_day: 1,
            amount_hour: U256::from(250),
            amount_day: U256::from(250),
        },
    )]
    .into();
    assert_eq!(spend.value, wanted);
    assert!(reads[1].spend.is_none());
    // `c`, fifty minutes earlier, has the three signatures within its hour.
    let c = &reads[2];
    assert_eq!(c.signatures.value[0].count_hour, 3);
    assert_eq!(c.in_flight.window("key:k", SIGNATURES, 0).count_hour, 1);
    // The same as the separate reads of the counters.
    let separate = store
        .usage_counts(["key:k", "principal:a"], SIGNATURES, NOW)
        .await
        .unwrap();
    assert_eq!(a.signatures.value, separate.value);
    assert_eq!(a.signatures.head, separate.head);
    let separate = store.usage_snapshot("key:k", "eth:1:", NOW).await.unwrap();
    assert_eq!(spend.value, separate.value);

    // Given back, each request's rows are gone and only its rows.
    let left = |ids: Vec<i64>| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM usage_reservations WHERE id = ANY($1)",
            )
            .bind(ids)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let mut reads = reads.into_iter();
    let a = reads.next().unwrap();
    let a_ids = a.reservation.shared().unwrap().ids().to_vec();
    a.reservation.release().await;
    assert_eq!(left(a_ids).await, 0);
    let c = reads.nth(1).unwrap();
    let c_ids = c.reservation.shared().unwrap().ids().to_vec();
    assert_eq!(left(c_ids.clone()).await, 1);
    drop(c);
    // Dropped without release: given back in the background.
    for _ in 0..100 {
        if left(c_ids.clone()).await == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("a dropped reservation was not given back");
}

/// The audit writer's and the grouped reads' connections run every statement with its shared
/// plan (see `Store::open_postgres`): left to choose, PostgreSQL planned the usage read anew at
/// every execution. The other connections keep the choice, which filtered listings need.
#[tokio::test]
async fn the_hot_connections_run_the_shared_plans_and_the_others_choose() {
    let Some((_dir, store, pool)) = postgres().await else {
        return;
    };
    let Pool::Postgres(hot) = store.hot_pool().clone() else {
        unreachable!("a PostgreSQL store has PostgreSQL pools");
    };
    async fn modes(pool: &PgPool, n: usize) -> Vec<String> {
        let mut held = Vec::new();
        let mut modes = Vec::new();
        for _ in 0..n {
            let mut conn = pool.acquire().await.expect("connection");
            let mode: String = sqlx::query_scalar("SELECT current_setting('plan_cache_mode')")
                .fetch_one(&mut *conn)
                .await
                .expect("setting");
            modes.push(mode);
            held.push(conn);
        }
        modes
    }
    assert_eq!(modes(&hot, 2).await, ["force_generic_plan"; 2]);
    assert_eq!(modes(&pool, 3).await, ["auto"; 3]);
}

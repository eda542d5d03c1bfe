//! payments against the real stack: payments through Kafka move money as balanced ledger pairs,
//! a payment takes effect once however often it arrives, insufficient funds fail without moving
//! money, an unreachable database ends in the dead letters, and re-reading the whole topic with
//! the group's offsets deleted changes no balance and adds no ledger row.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use circulatory::codec::avro_to_json;
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_payments::{register, GROUP};
use circulatory_testkit::{count_records, header, read_records, TestEnv};
use serde_json::{json, Value};
use sqlx::PgPool;

const WITHIN: Duration = Duration::from_secs(30);

/// A currency of this test alone (the external account per currency is shared otherwise).
fn currency() -> String {
    uuid()
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .take(6)
        .collect::<Vec<u8>>()
        .chunks(2)
        .map(|pair| char::from(b'A' + ((u32::from(pair[0]) * 7 + u32::from(pair[1])) % 26) as u8))
        .collect()
}

/// A user and their wallet.
#[derive(Clone)]
struct Party {
    user: String,
    wallet: String,
}

fn party() -> Party {
    Party {
        user: uuid(),
        wallet: uuid(),
    }
}

fn payment(kind: &str, from: &Party, to: Option<&Party>, amount: i64, currency: &str) -> Value {
    json!({
        "paymentId": uuid(),
        "walletId": from.wallet,
        "payeeWalletId": to.map(|p| p.wallet.clone()),
        "payerId": from.user,
        "payeeId": to.map(|p| p.user.clone()),
        "amountMinor": amount,
        "currency": currency,
        "kind": kind,
        "reference": null,
        "note": null,
        "initiatedAt": "2026-11-27T10:00:00Z"
    })
}

/// Publishes a payment and waits until the ledger decided it; returns its id and status.
async fn pay(
    env: &TestEnv,
    publisher: &circulatory::publisher::EventPublisher,
    pool: &PgPool,
    data: Value,
) -> (String, String) {
    let payment_id = data["paymentId"].as_str().expect("id").to_string();
    publish_with_id(env, publisher, "payment.initiated", &uuid(), data).await;
    let status = decided(pool, &payment_id).await;
    (payment_id, status)
}

async fn decided(pool: &PgPool, payment_id: &str) -> String {
    eventually("payment decided", WITHIN, || async {
        sqlx::query_as::<_, (String,)>("SELECT status FROM payments WHERE payment_id = $1")
            .bind(payment_id)
            .fetch_optional(pool)
            .await
            .expect("query")
            .map(|(s,)| s)
    })
    .await
}

async fn balance(pool: &PgPool, wallet: &str) -> Option<i64> {
    sqlx::query_as::<_, (i64,)>("SELECT balance_minor FROM wallets WHERE wallet_id = $1")
        .bind(wallet)
        .fetch_optional(pool)
        .await
        .expect("query")
        .map(|(b,)| b)
}

/// (direction, wallet, amount) of a payment's ledger entries.
async fn entries(pool: &PgPool, payment_id: &str) -> Vec<(String, String, i64)> {
    sqlx::query_as(
        "SELECT direction, wallet_id, amount_minor FROM ledger_entries WHERE payment_id = $1 \
         ORDER BY direction",
    )
    .bind(payment_id)
    .fetch_all(pool)
    .await
    .expect("query")
}

/// Every record of the payments topic: (type, id, data).
async fn payment_events(env: &TestEnv) -> Vec<(String, String, Value)> {
    let topic = env.topic_of("payment.initiated");
    let count = count_records(&env.kafka, &topic).await as usize;
    let mut out = Vec::new();
    for record in read_records(&env.kafka, &topic, count, WITHIN).await {
        let payload = rdkafka::Message::payload(&record).expect("value");
        let decoded = env.oracle.decode(payload).await.expect("decodable");
        out.push((
            header(&record, "ce_type").expect("type"),
            header(&record, "ce_id").expect("id"),
            avro_to_json(&decoded.value),
        ));
    }
    out
}

/// Waits until the payments topic holds `count` records of `event_type`, then returns them.
async fn events_of(env: &TestEnv, event_type: &str, count: usize) -> Vec<(String, Value)> {
    eventually(&format!("{count} {event_type}"), WITHIN, || async {
        let events: Vec<(String, Value)> = payment_events(env)
            .await
            .into_iter()
            .filter(|(t, _, _)| t == event_type)
            .map(|(_, id, data)| (id, data))
            .collect();
        (events.len() >= count).then_some(events)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_move_money_as_balanced_ledger_pairs() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let pool = &deps.pool;
    let cur = currency();
    let (a, b, c) = (party(), party(), party());

    // Money enters through a top-up, moves wallet to wallet (the payee wallet is created by its
    // first credit), and leaves through a payout. Each step waits for the previous one: the
    // wallets are different partition keys, so Kafka alone does not order them.
    let (top_up, s1) = pay(
        &env,
        &publisher,
        pool,
        payment("TOP_UP", &a, None, 1000, &cur),
    )
    .await;
    let (tip, s2) = pay(
        &env,
        &publisher,
        pool,
        payment("TIP", &a, Some(&b), 300, &cur),
    )
    .await;
    let (purchase, s3) = pay(
        &env,
        &publisher,
        pool,
        payment("PURCHASE", &b, Some(&c), 100, &cur),
    )
    .await;
    let (payout, s4) = pay(
        &env,
        &publisher,
        pool,
        payment("PAYOUT", &a, None, 200, &cur),
    )
    .await;
    assert_eq!([s1, s2, s3, s4], ["COMPLETED"; 4].map(String::from));

    assert_eq!(balance(pool, &a.wallet).await, Some(500));
    assert_eq!(balance(pool, &b.wallet).await, Some(200));
    assert_eq!(balance(pool, &c.wallet).await, Some(100));
    let owner: (Option<String>, String) =
        sqlx::query_as("SELECT user_id, currency FROM wallets WHERE wallet_id = $1")
            .bind(&c.wallet)
            .fetch_one(pool)
            .await
            .expect("query");
    assert_eq!(owner, (Some(c.user.clone()), cur.clone()));

    let external = format!("external:{cur}");
    let expected = [
        (top_up.as_str(), &external, &a.wallet, 1000),
        (tip.as_str(), &a.wallet, &b.wallet, 300),
        (purchase.as_str(), &b.wallet, &c.wallet, 100),
        (payout.as_str(), &a.wallet, &external, 200),
    ];
    for (payment_id, debited, credited, amount) in expected {
        assert_eq!(
            entries(pool, payment_id).await,
            vec![
                ("CREDIT".to_string(), credited.clone(), amount),
                ("DEBIT".to_string(), debited.clone(), amount),
            ],
            "{payment_id}"
        );
    }
    // Each balance is the sum of its wallet's entries; the external account went negative by
    // what entered and left (this currency is this test's alone).
    for (wallet, expected) in [
        (&a.wallet, 500),
        (&b.wallet, 200),
        (&c.wallet, 100),
        (&external, -800),
    ] {
        let (sum,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE direction WHEN 'CREDIT' THEN amount_minor \
                                              ELSE -amount_minor END), 0)::BIGINT \
             FROM ledger_entries WHERE wallet_id = $1",
        )
        .bind(wallet)
        .fetch_one(pool)
        .await
        .expect("query");
        assert_eq!(sum, expected, "{wallet}");
        assert_eq!(balance(pool, wallet).await, Some(expected), "{wallet}");
    }

    // Outcomes and balance updates reached Kafka: one completion per payment, one
    // wallet.updated per user wallet of each (top-up 1, tip 2, purchase 2, payout 1).
    let completed = events_of(&env, "payment.completed", 4).await;
    let ids: BTreeSet<&str> = completed
        .iter()
        .map(|(_, d)| d["paymentId"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            top_up.as_str(),
            tip.as_str(),
            purchase.as_str(),
            payout.as_str()
        ])
    );
    let updates = events_of(&env, "wallet.updated", 6).await;
    let last_of_a = updates
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["walletId"] == a.wallet.as_str())
        .max_by_key(|d| d["version"].as_i64())
        .expect("updates of a");
    assert_eq!(last_of_a["balanceMinor"], 500);
    assert_eq!(last_of_a["changeMinor"], -200);
    assert_eq!(last_of_a["version"], 3);
    assert_eq!(last_of_a["userId"], a.user.as_str());
    assert_eq!(last_of_a["lastPaymentId"], payout.as_str());
    let tip_update_of_b = updates
        .iter()
        .map(|(_, d)| d)
        .find(|d| d["walletId"] == b.wallet.as_str() && d["lastPaymentId"] == tip.as_str())
        .expect("b credited by the tip");
    assert_eq!(tip_update_of_b["balanceMinor"], 300);
    assert_eq!(tip_update_of_b["changeMinor"], 300);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_payment_twice_changes_nothing_more() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let pool = &deps.pool;
    let cur = currency();
    let a = party();

    let data = payment("TOP_UP", &a, None, 700, &cur);
    let payment_id = data["paymentId"].as_str().expect("id").to_string();
    let event_id = uuid();
    // The same event twice (a redelivery), then the same payment id in a new event (a client
    // retry): the wallet is credited once.
    publish_with_id(
        &env,
        &publisher,
        "payment.initiated",
        &event_id,
        data.clone(),
    )
    .await;
    publish_with_id(
        &env,
        &publisher,
        "payment.initiated",
        &event_id,
        data.clone(),
    )
    .await;
    publish_with_id(&env, &publisher, "payment.initiated", &uuid(), data).await;
    // A later payment of the same wallet (same key): once it is decided, all three are handled.
    let (marker, _) = pay(&env, &publisher, pool, payment("TOP_UP", &a, None, 1, &cur)).await;
    assert_eq!(decided(pool, &payment_id).await, "COMPLETED");

    assert_eq!(balance(pool, &a.wallet).await, Some(701));
    assert_eq!(entries(pool, &payment_id).await.len(), 2);
    let (processed,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM processed_events WHERE consumer_group = $1 AND event_id = $2",
    )
    .bind(GROUP)
    .bind(&event_id)
    .fetch_one(pool)
    .await
    .expect("query");
    assert_eq!(processed, 1);

    // The redelivery re-emitted the same completion id; the client retry emitted nothing.
    let completed = events_of(&env, "payment.completed", 3).await;
    let of_payment: Vec<&String> = completed
        .iter()
        .filter(|(_, d)| d["paymentId"] == payment_id.as_str())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(of_payment.len(), 2, "{completed:?}");
    assert_eq!(of_payment[0], of_payment[1]);
    assert!(completed
        .iter()
        .any(|(_, d)| d["paymentId"] == marker.as_str()));
    env.wait_until_settled(GROUP, WITHIN).await;
    assert_eq!(balance(pool, &a.wallet).await, Some(701));
    let updates = events_of(&env, "wallet.updated", 2).await;
    let distinct: BTreeSet<&str> = updates.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(distinct.len(), 2, "one update per payment: {updates:?}");
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn insufficient_funds_and_invalid_payments_fail_without_moving_money() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let pool = &deps.pool;
    let cur = currency();
    let (a, b) = (party(), party());

    pay(
        &env,
        &publisher,
        pool,
        payment("TOP_UP", &a, None, 100, &cur),
    )
    .await;
    let (too_much, status) = pay(
        &env,
        &publisher,
        pool,
        payment("TIP", &a, Some(&b), 500, &cur),
    )
    .await;
    assert_eq!(status, "FAILED");
    // A wallet nobody funded, and a tip without a payee: failures, not handler errors.
    let (unfunded, s1) = pay(
        &env,
        &publisher,
        pool,
        payment("TIP", &b, Some(&a), 1, &cur),
    )
    .await;
    let (invalid, s2) = pay(&env, &publisher, pool, payment("TIP", &a, None, 5, &cur)).await;
    assert_eq!([s1, s2], ["FAILED"; 2].map(String::from));

    assert_eq!(balance(pool, &a.wallet).await, Some(100));
    assert_eq!(balance(pool, &b.wallet).await.unwrap_or(0), 0);
    for payment_id in [&too_much, &unfunded, &invalid] {
        assert!(entries(pool, payment_id).await.is_empty());
    }
    let failed = events_of(&env, "payment.failed", 3).await;
    let reason_of = |payment_id: &str| {
        let (_, data) = failed
            .iter()
            .find(|(_, d)| d["paymentId"] == payment_id)
            .expect("a failure event");
        (
            data["reason"].as_str().expect("reason").to_string(),
            data["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let (reason, message) = reason_of(&too_much);
    assert_eq!(reason, "INSUFFICIENT_FUNDS");
    assert!(message.contains("holds 100"), "{message}");
    assert_eq!(reason_of(&unfunded).0, "INSUFFICIENT_FUNDS");
    let (reason, message) = reason_of(&invalid);
    assert_eq!(reason, "OTHER");
    assert!(message.contains("payeeWalletId"), "{message}");
    // Nothing was a handler error.
    let dlq = env.catalog.topic_name(
        &env.catalog
            .group(GROUP)
            .expect("group")
            .dead_letter_topic_base(),
    );
    assert_eq!(count_records(&env.kafka, &dlq).await, 0);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered() {
    let env = TestEnv::new().with_fast_retries();
    DatabaseOutage {
        group: GROUP,
        register,
        options: NoOptions {},
        event_type: "payment.initiated",
        data: payment("TOP_UP", &party(), None, 10, "USD"),
    }
    .dead_letters(env)
    .await;
}

/// Deletes the consumer group's committed offsets, so its next start reads from offset 0.
async fn forget_offsets(env: &TestEnv, group_id: &str) {
    let admin = circulatory::kafka::admin(&env.kafka).expect("admin");
    let options =
        rdkafka::admin::AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    eventually("group offsets deleted", WITHIN, || async {
        let results = admin
            .delete_groups(&[group_id], &options)
            .await
            .expect("delete_groups");
        // The member leaves asynchronously: a non-empty group is tried again.
        results.into_iter().all(|r| r.is_ok()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rereading_the_whole_topic_changes_no_balance() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let pool = &deps.pool;
    let cur = currency();
    let parties: Vec<Party> = (0..4).map(|_| party()).collect();

    let mut payment_ids = Vec::new();
    for p in &parties {
        payment_ids.push(
            pay(
                &env,
                &publisher,
                pool,
                payment("TOP_UP", p, None, 10_000, &cur),
            )
            .await
            .0,
        );
    }
    // Tips in every direction, all at once: each wallet holds far more than it can send.
    for round in 0..4 {
        for (i, from) in parties.iter().enumerate() {
            let to = &parties[(i + round + 1) % parties.len()];
            if to.wallet == from.wallet {
                continue;
            }
            let data = payment("TIP", from, Some(to), 10 + i as i64 + round as i64, &cur);
            payment_ids.push(data["paymentId"].as_str().expect("id").to_string());
            publish_with_id(&env, &publisher, "payment.initiated", &uuid(), data).await;
        }
    }
    for payment_id in &payment_ids {
        assert_eq!(decided(pool, payment_id).await, "COMPLETED");
    }
    let n = payment_ids.len();
    let completed = events_of(&env, "payment.completed", n).await;
    assert_eq!(completed.len(), n);

    let snapshot = || async {
        let mut balances = BTreeMap::new();
        for p in &parties {
            balances.insert(p.wallet.clone(), balance(pool, &p.wallet).await);
        }
        let (ledger_rows,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM ledger_entries WHERE payment_id = ANY($1)")
                .bind(&payment_ids)
                .fetch_one(pool)
                .await
                .expect("query");
        (balances, ledger_rows)
    };
    let before = snapshot().await;
    assert_eq!(before.1, 2 * n as i64);
    let total: i64 = before.0.values().map(|b| b.expect("wallet")).sum();
    assert_eq!(total, 40_000);
    group.stop().await;

    // A new instance of the group with no committed offsets: it reads the whole topic again.
    forget_offsets(&env, &env.catalog.topic_name(GROUP)).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    // Every payment.initiated is handled again: each re-emits its completion with the same id.
    let again = events_of(&env, "payment.completed", 2 * n).await;
    let distinct: BTreeSet<&str> = again.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(distinct.len(), n, "re-emitted completions keep their ids");
    env.wait_until_settled(GROUP, WITHIN).await;
    assert_eq!(snapshot().await, before);
    group.stop().await;
}

//! Ids are unique per store only (DESIGN.md): two stores use the same
//! campaign id and the same subscriber ids. Each store's campaign reaches
//! exactly its own subscribers, with its own content and notification ids,
//! the second launch is not taken for a repeat of the first, and expiring
//! a subscriber in one store leaves the other store's alone.

mod common;

use common::Env;
use pushflow_dispatch::{notification_id, VapidKey};
use pushflow_push_sim::Behaviour;
use pushflow_runtime::token::PingKeys;
use pushflow_schemas::{new_event_id, now_millis, Event, SubscriptionExpired};
use std::collections::HashSet;
use std::time::Duration;

const N: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_with_the_same_ids_never_touch_each_other() {
    let env = Env::new().await;
    let sim = env.sim(Behaviour::default()).await;
    let stores = [
        pushflow_testkit::unique("store-a"),
        pushflow_testkit::unique("store-b"),
    ];
    // Each store's subscribers are distinct browsers (push-sim endpoints)
    // with the same subscriber ids, shared-0 … shared-2.
    let mut endpoints: Vec<Vec<String>> = Vec::new();
    for store in &stores {
        let mut subs = sim.state.add_subscribers(store, N);
        endpoints.push(subs.iter().map(|s| s.subscriber_id.clone()).collect());
        for (i, s) in subs.iter_mut().enumerate() {
            s.subscriber_id = format!("shared-{i}");
        }
        sim.state.publish(&subs).await.unwrap();
    }
    let out = env.collect();
    let dispatch = env.dispatch(
        Env::settings(),
        VapidKey::generate(),
        &pushflow_testkit::unique("g"),
    );
    let stop = pushflow_runtime::CancellationToken::new();
    let task = tokio::spawn(dispatch.run_until(stop.clone(), None));
    for store in &stores {
        env.wait_active(store, N as i64, Duration::from_secs(60))
            .await;
    }

    // The same campaign id in both stores, launched one after the other.
    let campaign = pushflow_testkit::unique("camp");
    let titles = ["Store A: winter sale", "Store B: spring sale"];
    for (k, store) in stores.iter().enumerate() {
        env.launch_as(store, &campaign, titles[k]).await;
        out.wait_decided(&campaign, N * (k + 1), Duration::from_secs(90))
            .await;
    }

    // Every browser got exactly one push: its store's.
    let keys = PingKeys::from_env().unwrap();
    let now = now_millis() / 1000;
    let mut nids = HashSet::new();
    for (k, store) in stores.iter().enumerate() {
        for (i, endpoint) in endpoints[k].iter().enumerate() {
            let got = sim.state.received(endpoint);
            assert_eq!(got.len(), 1, "{store} shared-{i}: {} pushes", got.len());
            let p = got[0].payload.as_ref().expect("decrypted payload");
            let nid = notification_id(store, &campaign, &format!("shared-{i}"));
            assert_eq!(p["title"], titles[k], "{store} shared-{i}");
            assert_eq!(p["notification_id"], nid.as_str());
            let claims = keys.verify(p["ping_token"].as_str().unwrap(), now).unwrap();
            assert_eq!(claims.store_id, *store);
            assert!(nids.insert(nid), "a notification id shared by two stores");
        }
    }
    // One outcome per (store, subscriber), six in all, none failed.
    let dispatched = out.dispatched.lock().unwrap().clone();
    let mine: Vec<_> = dispatched
        .iter()
        .filter(|d| d.campaign_id == campaign)
        .collect();
    assert_eq!(mine.len(), 2 * N);
    for store in &stores {
        assert_eq!(mine.iter().filter(|d| &d.store_id == store).count(), N);
    }
    assert!(out
        .failed
        .lock()
        .unwrap()
        .iter()
        .all(|f| f.campaign_id != campaign));

    // Store A's shared-0 expires; store B's shared-0 stays active.
    let e = SubscriptionExpired {
        event_id: new_event_id(),
        occurred_at: now_millis(),
        store_id: stores[0].clone(),
        subscriber_id: "shared-0".into(),
        reason: "unsubscribed".into(),
    };
    let bytes = env.services.codec.encode(&e).await.unwrap();
    env.services
        .producer
        .send(
            &env.topics.subscription_expired,
            Some(e.key().as_bytes()),
            &bytes,
            &[],
        )
        .await
        .unwrap();
    env.wait_active(&stores[0], N as i64 - 1, Duration::from_secs(30))
        .await;
    let store = env.store().await;
    assert_eq!(store.active_count(&stores[1]).await.unwrap(), N as i64);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn tables_keyed_by_id_alone_are_keyed_by_store_and_id_on_connect() {
    let (name, url) = pushflow_testkit::fresh_database("dispatch_rekey");
    pushflow_testkit::create_database(&name).await;
    let c = pushflow_testkit::connect(&url).await;
    // The tables as releases before per-store ids made them, with a row.
    c.batch_execute(
        "CREATE SCHEMA dispatch;
         CREATE TABLE dispatch.subscriptions (subscriber_id text PRIMARY KEY, store_id text NOT NULL,
           endpoint text NOT NULL, p256dh text NOT NULL, auth text NOT NULL,
           expired boolean NOT NULL DEFAULT false, updated_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE dispatch.campaigns (campaign_id text PRIMARY KEY, store_id text NOT NULL,
           title text NOT NULL, body text NOT NULL, url text NOT NULL, icon text,
           ttl_seconds integer NOT NULL, urgency text NOT NULL);
         CREATE TABLE dispatch.launches (campaign_id text PRIMARY KEY, store_id text NOT NULL,
           planned boolean NOT NULL DEFAULT false, batches integer, audience bigint,
           launched_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO dispatch.subscriptions (subscriber_id, store_id, endpoint, p256dh, auth)
           VALUES ('sub-1', 'shop-1', 'https://push.example/1', 'k', 'a');",
    )
    .await
    .unwrap();
    let store = pushflow_dispatch::store::Store::connect(&url)
        .await
        .unwrap();
    for (table, id) in [
        ("subscriptions", "subscriber_id"),
        ("campaigns", "campaign_id"),
        ("launches", "campaign_id"),
    ] {
        let def: String = c
            .query_one(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint
                 WHERE conrelid = ('dispatch.' || $1)::regclass AND contype = 'p'",
                &[&table],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(def, format!("PRIMARY KEY (store_id, {id})"), "{table}");
    }
    assert_eq!(
        store.active_count("shop-1").await.unwrap(),
        1,
        "the row stays"
    );
    // Connecting again changes nothing.
    pushflow_dispatch::store::Store::connect(&url)
        .await
        .unwrap();
}

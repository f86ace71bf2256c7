//! Two dispatch instances in one consumer group share one campaign: the
//! batches are spread over every partition (key `<campaign>:<batch_no>`),
//! so both send a fair part of it. Each instance signs with its own VAPID
//! key, so push-sim's records tell who sent what.

mod common;

use common::Env;
use pushflow_dispatch::VapidKey;
use pushflow_push_sim::{Behaviour, RandomRule, Rule};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_one_campaign() {
    let env = Env::new().await;
    let slow = Rule {
        status: 201,
        retry_after: None,
        delay_ms: Some(20),
        times: None,
    };
    let sim = env
        .sim(Behaviour {
            random: vec![RandomRule {
                fraction: 1.0,
                rule: slow,
            }],
            ..Behaviour::default()
        })
        .await;
    let store_id = pushflow_testkit::unique("store");
    let subs = sim.state.add_subscribers(&store_id, 1200);
    sim.state.publish(&subs).await.unwrap();
    let out = env.collect();
    let group = pushflow_testkit::unique("g");
    let mut settings = Env::settings();
    settings.batch_size = 50;
    settings.parallel_batches = 1;
    settings.concurrency_per_origin = 8;
    let (ka, kb) = (VapidKey::generate(), VapidKey::generate());
    let (pa, pb) = (ka.public_b64.clone(), kb.public_b64.clone());
    let stop = pushflow_runtime::CancellationToken::new();
    let a = tokio::spawn(
        env.dispatch(settings.clone(), ka, &group)
            .run_until(stop.clone(), None),
    );
    let b = tokio::spawn(
        env.dispatch(settings, kb, &group)
            .run_until(stop.clone(), None),
    );
    env.wait_active(&store_id, 1200, Duration::from_secs(60))
        .await;
    // Both members hold batch partitions before the launch (the broker's
    // own view of the group, not a fixed wait).
    let batches_group = format!("{group}-batches");
    tokio::task::spawn_blocking(move || {
        pushflow_testkit::wait_group_stable(
            &pushflow_testkit::brokers(),
            &batches_group,
            2,
            6,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let campaign = env.launch(&store_id).await;
    out.wait_decided(&campaign.campaign_id, 1200, Duration::from_secs(120))
        .await;

    let mut by_key: HashMap<String, usize> = HashMap::new();
    for s in &subs {
        for r in sim.state.received(&s.subscriber_id) {
            let auth = r.authorization.unwrap_or_default();
            let k = auth.split("k=").nth(1).unwrap_or_default().to_string();
            *by_key.entry(k).or_default() += 1;
        }
    }
    let (na, nb) = (
        by_key.get(&pa).copied().unwrap_or(0),
        by_key.get(&pb).copied().unwrap_or(0),
    );
    eprintln!("instance a sent {na}, instance b sent {nb}");
    assert_eq!(na + nb, 1200, "{by_key:?}");
    assert!(na >= 200 && nb >= 200, "uneven share: a {na}, b {nb}");
    stop.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}

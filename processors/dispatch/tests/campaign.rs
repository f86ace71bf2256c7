//! A campaign to 2,000 simulated subscribers with injected 404/410, 429
//! (Retry-After), 500s and timeouts, over real HTTP to push-sim; then a
//! second campaign to the same store skips the expired subscribers. An
//! independent Python check decrypts one payload and verifies one JWT.

mod common;

use common::Env;
use pushflow_dispatch::{notification_id, VapidKey};
use pushflow_push_sim::{Behaviour, Rule};
use pushflow_runtime::token::PingKeys;
use pushflow_schemas::FailureKind;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

fn rule(status: u16, times: Option<u32>, retry_after: Option<u64>) -> Rule {
    Rule {
        status,
        retry_after,
        delay_ms: None,
        times,
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Dispatched,
    Gone,
    Exhausted,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn campaign_with_faults_then_second_campaign_skips_expired() {
    let env = Env::new().await;
    let sim = env.sim(Behaviour::default()).await;
    let store_id = pushflow_testkit::unique("store");
    let subs = sim.state.add_subscribers(&store_id, 2000);
    sim.state.publish(&subs).await.unwrap();
    let ids: Vec<String> = subs.iter().map(|s| s.subscriber_id.clone()).collect();

    // Faults: 410 and 404 (gone), 429 with Retry-After then OK, 500 twice
    // then OK, 500 forever (exhausted), slow beyond the timeout once.
    let mut expect: HashMap<String, Expect> = ids
        .iter()
        .map(|i| (i.clone(), Expect::Dispatched))
        .collect();
    let mut b = Behaviour::default();
    for (i, id) in ids.iter().enumerate().take(110) {
        let (r, e) = match i {
            0..=19 => (rule(410, None, None), Expect::Gone),
            20..=29 => (rule(404, None, None), Expect::Gone),
            30..=49 => (rule(429, Some(1), Some(1)), Expect::Dispatched),
            50..=79 => (rule(500, Some(2), None), Expect::Dispatched),
            80..=99 => (rule(503, None, None), Expect::Exhausted),
            _ => (
                Rule {
                    status: 201,
                    retry_after: None,
                    delay_ms: Some(4000),
                    times: Some(1),
                },
                Expect::Dispatched,
            ),
        };
        b.subscribers.insert(id.clone(), r);
        expect.insert(id.clone(), e);
    }
    let b_slow: HashSet<String> = ids[100..110].iter().cloned().collect();
    sim.state.set_behaviour(b);

    let out = env.collect();
    let dispatch = env.dispatch(
        Env::settings(),
        VapidKey::generate(),
        &pushflow_testkit::unique("g"),
    );
    let stop = pushflow_runtime::CancellationToken::new();
    let task = tokio::spawn(dispatch.run_until(stop.clone(), None));
    env.wait_active(&store_id, 2000, Duration::from_secs(60))
        .await;

    let campaign = env.launch(&store_id).await;
    out.wait_decided(&campaign.campaign_id, 2000, Duration::from_secs(90))
        .await;

    // Exactly one outcome per subscriber, the expected one.
    let dispatched = out.dispatched.lock().unwrap().clone();
    let failed = out.failed.lock().unwrap().clone();
    let mut seen: HashMap<String, Expect> = HashMap::new();
    for d in dispatched
        .iter()
        .filter(|d| d.campaign_id == campaign.campaign_id)
    {
        assert_eq!(
            d.notification_id,
            notification_id(&campaign.store_id, &campaign.campaign_id, &d.subscriber_id)
        );
        assert!(
            seen.insert(d.subscriber_id.clone(), Expect::Dispatched)
                .is_none(),
            "two outcomes for {}",
            d.subscriber_id
        );
    }
    for f in failed
        .iter()
        .filter(|f| f.campaign_id == campaign.campaign_id)
    {
        let e = match f.kind {
            FailureKind::Gone => {
                assert!(!f.retryable);
                assert!(matches!(f.status_code, Some(404) | Some(410)), "{f:?}");
                Expect::Gone
            }
            FailureKind::RetriesExhausted => {
                assert!(f.retryable);
                assert_eq!(f.status_code, Some(503));
                Expect::Exhausted
            }
            k => panic!("unexpected failure kind {k:?}: {f:?}"),
        };
        assert!(
            seen.insert(f.subscriber_id.clone(), e).is_none(),
            "two outcomes for {}",
            f.subscriber_id
        );
    }
    assert_eq!(seen.len(), 2000);
    for (id, want) in &expect {
        assert_eq!(seen.get(id), Some(want), "subscriber {id}");
    }

    // The gone subscriptions were expired.
    let expired: HashSet<String> = out
        .expired
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.subscriber_id.clone())
        .collect();
    let gone: HashSet<String> = expect
        .iter()
        .filter(|(_, e)| **e == Expect::Gone)
        .map(|(i, _)| i.clone())
        .collect();
    assert_eq!(expired, gone);

    // push-sim decrypted every accepted payload to the expected JSON with a
    // valid ping token, and nobody got the notification twice.
    let keys = PingKeys::from_env().unwrap();
    let now = pushflow_schemas::now_millis() / 1000;
    for (id, want) in &expect {
        let got = sim.state.received(id);
        if *want != Expect::Dispatched {
            assert!(got.is_empty(), "{id} should have received nothing");
            continue;
        }
        // A push that timed out on our side may still have been accepted
        // by the slow push service: that one may arrive twice.
        let slow = b_slow.contains(id);
        assert!(
            got.len() == 1 || (slow && got.len() == 2),
            "{id} received {} pushes",
            got.len()
        );
        let r = &got[0];
        let p = r.payload.as_ref().expect("decrypted payload");
        let nid = notification_id(&campaign.store_id, &campaign.campaign_id, id);
        assert_eq!(p["notification_id"], nid.as_str());
        assert_eq!(p["campaign_id"], campaign.campaign_id.as_str());
        assert_eq!(p["title"], "Winter sale");
        assert_eq!(p["body"], campaign.body.as_str());
        assert_eq!(p["url"], campaign.url.as_str());
        assert_eq!(p["icon"], "https://shop.example/icon.png");
        let claims = keys
            .verify(p["ping_token"].as_str().unwrap(), now)
            .expect("valid ping token");
        assert_eq!(
            (
                claims.notification_id.as_str(),
                claims.subscriber_id.as_str()
            ),
            (nid.as_str(), id.as_str())
        );
        assert_eq!(claims.store_id, store_id);
        assert!(claims.exp > now + 6 * 86400);
        assert_eq!(r.ttl.as_deref(), Some("3600"));
        assert_eq!(r.urgency.as_deref(), Some("high"));
        assert_eq!(r.topic.as_ref().map(|t| t.len()), Some(32));
    }
    let stats = sim.state.stats();
    assert_eq!(stats["vapid_rejected"], 0);
    assert_eq!(stats["decrypt_failed"], 0);

    // Independent check in Python: one payload and one JWT.
    python_check(&sim, &ids[500]).await;

    // Second campaign: the 30 expired subscribers are skipped.
    env.wait_active(&store_id, 1970, Duration::from_secs(30))
        .await;
    sim.state.set_behaviour(Behaviour::default());
    let second = env.launch(&store_id).await;
    out.wait_decided(&second.campaign_id, 1970, Duration::from_secs(60))
        .await;
    let d2: Vec<_> = out
        .dispatched
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.campaign_id == second.campaign_id)
        .cloned()
        .collect();
    let f2 = out
        .failed
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.campaign_id == second.campaign_id)
        .count();
    assert_eq!((d2.len(), f2), (1970, 0));
    assert!(d2.iter().all(|d| !gone.contains(&d.subscriber_id)));
    for g in &gone {
        assert!(
            sim.state.received(g).is_empty(),
            "expired {g} was sent a push"
        );
    }
    stop.cancel();
    task.await.unwrap().unwrap();
}

async fn python_check(sim: &pushflow_push_sim::PushSim, subscriber: &str) {
    let r = &sim.state.received(subscriber)[0];
    let keys = reqwest_keys(sim, subscriber).await;
    let input = serde_json::json!({
        "body": r.body,
        "authorization": r.authorization,
        "private_key": keys["private_key"],
        "auth": keys["auth"],
        "public_key": keys["public_key"],
        "audience": sim.origin(),
    });
    let path = std::env::temp_dir().join(format!(
        "{}.json",
        pushflow_testkit::unique("webpush-check")
    ));
    std::fs::write(&path, input.to_string()).unwrap();
    // The independent check, in Python.
    let stdout = pushflow_testkit::python("check_webpush.py", &[path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(stdout.contains("\"notification_id\""), "{stdout}");
}

async fn reqwest_keys(sim: &pushflow_push_sim::PushSim, subscriber: &str) -> serde_json::Value {
    let url = format!("{}/sim/keys/{subscriber}", sim.origin());
    reqwest::get(&url).await.unwrap().json().await.unwrap()
}

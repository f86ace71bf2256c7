//! push-sim over real HTTP, driven by the web-push crate (code it shares
//! nothing with): accepts and decrypts a valid push, refuses bad VAPID,
//! answers as told, and records what it received.

use pushflow_push_sim::crypto::vapid_keys;
use pushflow_push_sim::{Behaviour, PushSim, Rule};
use web_push::{ContentEncoding, SubscriptionInfo, VapidSignatureBuilder, WebPushMessageBuilder};

struct Sent {
    status: u16,
    retry_after: Option<String>,
}

/// Builds a push with the web-push crate and posts it.
async fn push(
    info: &SubscriptionInfo,
    private: &str,
    claims: &[(&str, serde_json::Value)],
    body: &[u8],
) -> Sent {
    let mut sig = VapidSignatureBuilder::from_base64(private, info).unwrap();
    for (k, v) in claims {
        sig.add_claim(k, v.clone());
    }
    let mut b = WebPushMessageBuilder::new(info);
    b.set_ttl(60);
    b.set_payload(ContentEncoding::Aes128Gcm, body);
    b.set_vapid_signature(sig.build().unwrap());
    let msg = b.build().unwrap();
    let p = msg.payload.unwrap();
    let mut req = reqwest::Client::new()
        .post(&info.endpoint)
        .header("ttl", "60")
        .header("urgency", "low");
    for (k, v) in &p.crypto_headers {
        req = req.header(*k, v);
    }
    let resp = req
        .header("content-encoding", "aes128gcm")
        .body(p.content)
        .send()
        .await
        .unwrap();
    Sent {
        status: resp.status().as_u16(),
        retry_after: resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string()),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn verifies_vapid_decrypts_and_follows_its_behaviour() {
    let sim = PushSim::start("127.0.0.1:0", Behaviour::default(), None)
        .await
        .unwrap();
    let subs = sim.state.add_subscribers("store-1", 2);
    let (a, b) = (&subs[0], &subs[1]);
    let info = SubscriptionInfo::new(a.endpoint.clone(), a.p256dh.clone(), a.auth.clone());
    let (private, _) = vapid_keys();
    let origin = sim.origin().to_string();
    let good = [
        ("aud", serde_json::json!(origin)),
        ("sub", serde_json::json!("mailto:t@example.com")),
    ];

    // Accepted and decrypted.
    let sent = push(&info, &private, &good, br#"{"title":"hi"}"#).await;
    assert_eq!(sent.status, 201);
    let got: Vec<serde_json::Value> = reqwest::get(format!(
        "{origin}/sim/received?subscriber={}",
        a.subscriber_id
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["payload"]["title"], "hi");
    assert_eq!(got[0]["urgency"], "low");
    assert_eq!(got[0]["vapid_sub"], "mailto:t@example.com");

    // The crate's default aud drops the port: refused, as a real service would.
    assert_eq!(push(&info, &private, &[], b"{}").await.status, 401);
    // Expired, or more than 24 h ahead.
    let past = [
        good[0].clone(),
        good[1].clone(),
        ("exp", serde_json::json!(now() - 10)),
    ];
    assert_eq!(push(&info, &private, &past, b"{}").await.status, 401);
    let far = [
        good[0].clone(),
        good[1].clone(),
        ("exp", serde_json::json!(now() + 48 * 3600)),
    ];
    assert_eq!(push(&info, &private, &far, b"{}").await.status, 401);
    // Wrong subscriber keys: cannot decrypt.
    let wrong = SubscriptionInfo::new(a.endpoint.clone(), b.p256dh.clone(), b.auth.clone());
    assert_eq!(push(&wrong, &private, &good, b"{}").await.status, 400);
    // No Authorization at all.
    let r = reqwest::Client::new()
        .post(&a.endpoint)
        .header("ttl", "1")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Behaviour over HTTP: 429 with Retry-After twice, then accepted; 410 for b.
    let mut behaviour = Behaviour::default();
    behaviour.subscribers.insert(
        a.subscriber_id.clone(),
        Rule {
            status: 429,
            retry_after: Some(3),
            delay_ms: None,
            times: Some(2),
        },
    );
    behaviour.subscribers.insert(
        b.subscriber_id.clone(),
        Rule {
            status: 410,
            retry_after: None,
            delay_ms: None,
            times: None,
        },
    );
    let r = reqwest::Client::new()
        .post(format!("{origin}/sim/behaviour"))
        .json(&behaviour)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    for _ in 0..2 {
        let s = push(&info, &private, &good, b"{}").await;
        assert_eq!((s.status, s.retry_after.as_deref()), (429, Some("3")));
    }
    assert_eq!(push(&info, &private, &good, b"{\"n\":2}").await.status, 201);
    let info_b = SubscriptionInfo::new(b.endpoint.clone(), b.p256dh.clone(), b.auth.clone());
    assert_eq!(push(&info_b, &private, &good, b"{}").await.status, 410);

    let stats: serde_json::Value = reqwest::get(format!("{origin}/sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["accepted"], 2);
    assert_eq!(stats["vapid_rejected"], 4);
    assert_eq!(stats["decrypt_failed"], 1);
    assert_eq!(stats["statuses"]["429"], 2);
    assert_eq!(stats["statuses"]["410"], 1);
}

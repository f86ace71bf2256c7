//! `/v1/pings`, `/v1/subscriptions`, the rate limit, CORS and the served
//! scripts, over real HTTP, the real broker and registry.

mod common;

use common::*;
use pushflow_runtime::codec::Codec;
use pushflow_runtime::token::{PingClaims, PingKeys};
use pushflow_schemas::{NotificationClicked, NotificationDelivered, SubscriptionCreated};
use pushflow_testkit::http::{get_json, get_text, ok_body};
use serde_json::{json, Value};
use std::time::Duration;

fn claims(n: &str, exp: i64) -> PingClaims {
    PingClaims {
        notification_id: n.into(),
        campaign_id: "camp-1".into(),
        store_id: "store-1".into(),
        subscriber_id: "sub-1".into(),
        exp,
        iat: Some(pushflow_schemas::now_millis() / 1000),
    }
}

fn in_an_hour() -> i64 {
    pushflow_schemas::now_millis() / 1000 + 3600
}

async fn ping(s: &Server, ct: &str, body: String) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = client()
        .post(format!("{}/v1/pings", s.url))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let (st, h) = (r.status().as_u16(), r.headers().clone());
    (st, r.json().await.unwrap_or(Value::Null), h)
}

fn metric(name_and_labels: &str) -> f64 {
    let text = pushflow_runtime::telemetry::prometheus().render();
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn valid_pings_become_events_and_bad_tokens_get_401_and_are_counted() {
    let s = start("", &["notification.delivered", "notification.clicked"]).await;
    let t1 = s.keys.mint(&claims("n-1", in_an_hour()));
    let (st, body, _) = ping(
        &s,
        "application/json",
        json!({"type": "delivered", "token": t1}).to_string(),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    // sendBeacon's text/plain body.
    let t2 = s.keys.mint(&claims("n-2", in_an_hour()));
    let (st, body, _) = ping(
        &s,
        "text/plain;charset=UTF-8",
        json!({"type": "clicked", "token": t2}).to_string(),
    )
    .await;
    assert_eq!(st, 202, "{body}");
    let codec = Codec::for_registry(&s.registry).unwrap();
    let d = consume(
        &s.topic("notification.delivered"),
        1,
        Duration::from_secs(20),
    );
    let e: NotificationDelivered = codec.decode(&d[0].3).await.unwrap();
    assert_eq!(
        (
            e.notification_id.as_str(),
            e.campaign_id.as_str(),
            e.store_id.as_str()
        ),
        ("n-1", "camp-1", "store-1")
    );
    assert_eq!(d[0].2, b"n-1");
    assert!((pushflow_schemas::now_millis() - e.occurred_at).abs() < 60_000);
    let c = consume(&s.topic("notification.clicked"), 1, Duration::from_secs(20));
    let e: NotificationClicked = codec.decode(&c[0].3).await.unwrap();
    assert_eq!(e.notification_id, "n-2");
    assert_eq!(json!(e.event_id), body["event_id"]);

    let before = |r: &str| {
        metric(&format!(
            "pushflow_ingest_pings_rejected_total{{reason=\"{r}\"}}"
        ))
    };
    let (forged0, expired0, unknown0, malformed0) = (
        before("bad_signature"),
        before("expired"),
        before("unknown_key"),
        before("malformed"),
    );
    let forged = PingKeys::parse("k1:another-secret-of-16b")
        .unwrap()
        .mint(&claims("n-3", in_an_hour()));
    let parts: Vec<&str> = t1.split('.').collect();
    let mut c2 = claims("n-1", in_an_hour());
    c2.store_id = "victim".into();
    let other_body = PingKeys::parse("k1:whatever-0123456789").unwrap().mint(&c2);
    let tampered = format!(
        "v1.k1.{}.{}",
        other_body.split('.').nth(2).unwrap(),
        parts[3]
    );
    let expired = s.keys.mint(&claims("n-4", 1_000));
    let unknown = PingKeys::parse("k9:0123456789abcdef-test")
        .unwrap()
        .mint(&claims("n-5", in_an_hour()));
    for (tok, why) in [
        (forged, "signature is invalid"),
        (tampered, "signature is invalid"),
        (expired, "expired"),
        (unknown, "unknown key id \"k9\""),
        ("garbage".to_string(), "malformed"),
    ] {
        let (st, body, _) = ping(
            &s,
            "application/json",
            json!({"type": "delivered", "token": tok}).to_string(),
        )
        .await;
        assert_eq!(st, 401, "{why}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{why}: {body}"
        );
    }
    assert!(before("bad_signature") >= forged0 + 2.0);
    assert!(before("expired") > expired0);
    assert!(before("unknown_key") > unknown0);
    assert!(before("malformed") > malformed0);
    let (st, body, _) = ping(
        &s,
        "application/json",
        json!({"type": "opened", "token": t1}).to_string(),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        body["error"],
        json!("field `type`: \"opened\" is not one of delivered, clicked")
    );
    let (st, _, _) = ping(&s, "application/xml", "<x/>".into()).await;
    assert_eq!(st, 415);
    let (st, body, _) = ping(&s, "application/json", "{\"type\": ".into()).await;
    assert_eq!(st, 400);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("malformed JSON at line 1"));
    // Only the two valid pings were produced.
    let all = consume_all(&s.topic("notification.delivered"), Duration::from_secs(20));
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn at_is_the_event_time_within_issue_time_and_now_else_ingest_s_clock() {
    use pushflow_ingest::pings::PING_TIME_SKEW_MS;
    let s = start("", &["notification.delivered"]).await;
    let corrected = |r: &str| {
        metric(&format!(
            "pushflow_ingest_ping_time_corrected_total{{reason=\"{r}\"}}"
        ))
    };
    let before: Vec<f64> = ["absent", "no_issue_time", "before_issue", "future"]
        .iter()
        .map(|r| corrected(r))
        .collect();
    let now = pushflow_schemas::now_millis();
    // Issued 10 minutes ago, valid for an hour more.
    let issued = now / 1000 - 600;
    let mut c = claims("n-at", in_an_hour());
    c.iat = Some(issued);
    let token = s.keys.mint(&c);
    let mut old = claims("n-old", in_an_hour());
    old.iat = None;
    let old = s.keys.mint(&old);
    let shown = issued * 1000 + 5_000;
    let cases: Vec<(&str, Value, Option<i64>)> = vec![
        // Taken: between the issue time (minus the skew) and now (plus it).
        ("shown", json!(shown), Some(shown)),
        (
            "skew before issue",
            json!(issued * 1000 - PING_TIME_SKEW_MS),
            Some(issued * 1000 - PING_TIME_SKEW_MS),
        ),
        ("a little ahead", json!(now + 60_000), Some(now + 60_000)),
        // Corrected to ingest's clock.
        ("absent", Value::Null, None),
        (
            "before issue",
            json!(issued * 1000 - PING_TIME_SKEW_MS - 1),
            None,
        ),
        ("last month", json!(now - 40 * 86_400_000), None),
        ("future", json!(now + PING_TIME_SKEW_MS + 60_000), None),
    ];
    for (why, at, _) in &cases {
        let mut body = json!({"type": "delivered", "token": token});
        if !at.is_null() {
            body["at"] = at.clone();
        }
        let (st, b, _) = ping(&s, "application/json", body.to_string()).await;
        assert_eq!(st, 202, "{why}: {b}");
    }
    // A token minted before `iat` existed: no lower bound, so no `at`.
    let (st, b, _) = ping(
        &s,
        "application/json",
        json!({"type": "delivered", "token": old, "at": shown}).to_string(),
    )
    .await;
    assert_eq!(st, 202, "{b}");
    for bad in [json!(1.5), json!("1700000000000"), json!({"ms": 1})] {
        let (st, b, _) = ping(
            &s,
            "application/json",
            json!({"type": "delivered", "token": token, "at": bad}).to_string(),
        )
        .await;
        assert_eq!(st, 400, "{bad}: {b}");
        assert!(
            b["error"].as_str().unwrap().starts_with("field `at`: "),
            "{bad}: {b}"
        );
    }
    let after = pushflow_schemas::now_millis();

    let codec = Codec::for_registry(&s.registry).unwrap();
    let got = consume(
        &s.topic("notification.delivered"),
        cases.len() + 1,
        Duration::from_secs(20),
    );
    assert_eq!(
        consume_all(&s.topic("notification.delivered"), Duration::from_secs(20)).len(),
        cases.len() + 1,
        "the 400s produced nothing"
    );
    let mut times = Vec::new();
    for (_, _, _, v) in &got {
        let e: NotificationDelivered = codec.decode(v).await.unwrap();
        times.push((e.notification_id, e.occurred_at));
    }
    for (why, _, taken) in &cases {
        if let Some(t) = taken {
            assert!(
                times.iter().any(|(n, at)| n == "n-at" && at == t),
                "{why}: occurred_at {t} in {times:?}"
            );
        }
    }
    let by_clock = times
        .iter()
        .filter(|(_, t)| (now..=after).contains(t))
        .count();
    assert_eq!(by_clock, 5, "4 corrected + the old token's: {times:?}");
    assert!(times
        .iter()
        .any(|(n, t)| n == "n-old" && (now..=after).contains(t)));
    for (r, (reason, before)) in ["absent", "no_issue_time", "before_issue", "future"]
        .iter()
        .zip(&before)
        .enumerate()
    {
        let want = [1.0, 1.0, 2.0, 1.0][r];
        assert!(
            corrected(reason) >= before + want,
            "{reason}: {} after {before}",
            corrected(reason)
        );
    }
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after() {
    let s = start("rate_limit: {per_second: 0.5, burst: 2}\n", &[]).await;
    let body = json!({"type": "delivered", "token": "garbage"}).to_string();
    assert_eq!(ping(&s, "application/json", body.clone()).await.0, 401);
    assert_eq!(ping(&s, "application/json", body.clone()).await.0, 401);
    let (st, b, h) = ping(&s, "application/json", body).await;
    assert_eq!(st, 429, "{b}");
    assert_eq!(h["retry-after"], "2");
    assert!(b["error"].as_str().unwrap().contains("too many requests"));
}

/// A ping with an invalid token (401 means "not rate-limited") sent as if
/// through a proxy that forwarded it for `xff`.
async fn ping_via(s: &Server, xff: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{}/v1/pings", s.url))
        .header("content-type", "application/json")
        .header("x-forwarded-for", xff)
        .body(json!({"type": "delivered", "token": "garbage"}).to_string())
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_rate_limit_keys_on_x_forwarded_for() {
    let limit = "rate_limit: {per_second: 0.5, burst: 2}\n";
    // The test client (127.0.0.1) is the trusted load balancer.
    let s = start(
        &format!("{limit}trusted_proxies: [\"127.0.0.1/32\"]\n"),
        &[],
    )
    .await;
    let (a, b) = ("203.0.113.7", "198.51.100.9, 203.0.113.8");
    assert_eq!(ping_via(&s, a).await.0, 401);
    assert_eq!(ping_via(&s, a).await.0, 401);
    let (st, body) = ping_via(&s, a).await;
    assert_eq!(st, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests from 203.0.113.7"),
        "{body}"
    );
    // Another client behind the same proxy has its own bucket.
    let (st, body) = ping_via(&s, b).await;
    assert_eq!(st, 401, "{body}");

    // Without trusted_proxies the header is ignored: one bucket per peer.
    let s = start(limit, &[]).await;
    assert_eq!(ping_via(&s, "203.0.113.7").await.0, 401);
    assert_eq!(ping_via(&s, "203.0.113.8").await.0, 401);
    let (st, body) = ping_via(&s, "203.0.113.9").await;
    assert_eq!(st, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests from 127.0.0.1"),
        "{body}"
    );
}

#[tokio::test]
async fn subscriptions_cors_scripts_and_vapid_key() {
    let s = start(
        "vapid_public_key: BPubKeyForTests\n",
        &["subscription.created"],
    )
    .await;
    let endpoint = "https://push.example/ep/abc";
    let sub = json!({"store_id": "store-9", "subscription": {"endpoint": endpoint, "expirationTime": null,
                     "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM", "auth": "tBHItJI5svbpez7KI4CCXg"}}});
    let r = client()
        .post(format!("{}/v1/subscriptions", s.url))
        .json(&sub)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let id = pushflow_ingest::pings::subscriber_id(endpoint);
    assert_eq!(body["subscriber_id"], json!(id));
    assert_eq!(id.len(), 64);
    let got = consume(&s.topic("subscription.created"), 1, Duration::from_secs(20));
    let e: SubscriptionCreated = Codec::for_registry(&s.registry)
        .unwrap()
        .decode(&got[0].3)
        .await
        .unwrap();
    assert_eq!(
        (
            e.subscriber_id.as_str(),
            e.endpoint.as_str(),
            e.store_id.as_str()
        ),
        (id.as_str(), endpoint, "store-9")
    );
    let mut bad = sub.clone();
    bad["subscription"]["endpoint"] = json!("ftp://x");
    let r = client()
        .post(format!("{}/v1/subscriptions", s.url))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("subscription.endpoint"));

    // CORS preflight from any origin on the public endpoints; none on events.
    let pre = |path: &str| {
        client()
            .request(reqwest::Method::OPTIONS, format!("{}{path}", s.url))
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = pre("/v1/pings").await.unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = pre("/v1/events/campaign.created").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let js = ok_body(
        client().get(format!("{}/sw.js", s.url)),
        "application/javascript",
    )
    .await;
    assert!(
        js.contains(&format!("'{}'", s.url)),
        "sw.js carries this ingest's origin"
    );
    assert!(js.contains("addEventListener('push'") && js.contains("notificationclick"));
    let r = client()
        .get(format!("{}/subscribe.js", s.url))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    assert!(r.text().await.unwrap().contains("/v1/subscriptions"));
    let k = get_json(&client(), &format!("{}/v1/vapid-public-key", s.url)).await;
    assert_eq!(k["public_key"], "BPubKeyForTests");
}

#[tokio::test]
async fn the_component_serves_healthz_and_metrics_and_stops_on_shutdown() {
    let registry = pushflow_testkit::start_registry().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut t = pushflow_testkit::topology_with(
        &pushflow_testkit::brokers(),
        &registry,
        "postgres://unused",
    );
    t.services.ingest_addr = format!("127.0.0.1:{port}");
    let spec = t
        .components
        .iter()
        .find(|c| c.kind == "ingest")
        .unwrap()
        .clone();
    let c = pushflow_ingest::IngestComponent::with_env(&spec, &t, |_| None).unwrap();
    let (shutdown, running) = pushflow_testkit::run_component(c, spec, t);
    let url = format!("http://127.0.0.1:{port}");
    let mut ok = false;
    for _ in 0..50 {
        if let Ok(r) = client().get(format!("{url}/healthz")).send().await {
            ok = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "/healthz answers 200");
    // The dev token of topology.yaml is accepted (bad record, so nothing is written).
    let r = client()
        .post(format!("{url}/v1/events/campaign.created"))
        .bearer_auth("pushflow-dev-token")
        .json(&json!({"store_id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let m = get_text(&client(), &format!("{url}/metrics")).await;
    assert!(m.contains("pushflow_ingest_requests_total"), "{m}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

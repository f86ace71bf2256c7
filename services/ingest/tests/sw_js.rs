//! ingest's `sw.js` in Debian's headless Chromium, against the real ingest
//! on the real broker (no other runtime stands in: without
//! `/usr/bin/chromium` these tests fail and say to install it).
//!
//! A merchant's site is played by a small server on 127.0.0.1 (a secure
//! context) that serves a page and, like the reverse proxy a merchant puts
//! in front of ingest, forwards `/sw.js` and `/v1/pings` to ingest, so the
//! worker is registered and pings on the page's own origin. The proxy
//! answers 503 to the first attempt(s) of chosen pings before forwarding
//! (fault injection) and records every attempt it saw.
//!
//! - `the_ping_function_retries_5xx_but_not_4xx`: `pushflowSendPing` in a
//!   page: two 503s then ingest's 202; a forged token's 401 is not retried.
//! - `the_registered_worker_pings_delivered_and_clicked`: registers `/sw.js`,
//!   delivers a push through CDP's `ServiceWorker.deliverPushMessage` with a
//!   token minted by ingest's keys; the shown notification's `delivered`
//!   ping survives two 503s and lands once on `notification.delivered`, its
//!   `occurred_at` the `at` the worker sent; a forged token's push is
//!   pinged exactly once (401). Clicking: CDP cannot click a notification
//!   (headless Chromium has no notification UI and no protocol method for
//!   it), so the test dispatches a `notificationclick` NotificationEvent
//!   for the real shown notification inside the worker (`Runtime.evaluate`
//!   in its target). The worker's own listener runs — closes the
//!   notification, pings `clicked` with `at`, retries a 503 — but the event
//!   is untrusted: its `waitUntil` throws and `clients.openWindow` is
//!   refused ("Not allowed to open a window"), so opening the campaign url
//!   is not tested.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use common::*;
use pushflow_runtime::codec::Codec;
use pushflow_runtime::token::{PingClaims, PingKeys};
use pushflow_schemas::{now_millis, NotificationClicked, NotificationDelivered};
use pushflow_testkit::browser::{until, Cdp, Chromium};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Each test, whole, must finish within this.
const TEST_LIMIT: Duration = Duration::from_secs(180);

/// One POST /v1/pings the site's proxy saw.
#[derive(Debug, Clone)]
struct Attempt {
    kind: String,
    token: String,
    at: Value,
    content_type: String,
    /// What the worker got: the injected 503 or ingest's answer.
    status: u16,
}

#[derive(Default)]
struct SiteState {
    ingest: String,
    /// 503s still to answer per (type, token) before forwarding.
    fail_first: HashMap<(String, String), usize>,
    attempts: Vec<Attempt>,
}

/// The merchant's site: a page, and ingest's `/sw.js` and `/v1/pings`
/// behind a fault-injecting proxy, on one origin.
struct Site {
    origin: String,
    state: Arc<Mutex<SiteState>>,
}

impl Site {
    async fn start(ingest: &str) -> Site {
        let state = Arc::new(Mutex::new(SiteState {
            ingest: ingest.to_string(),
            ..SiteState::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/", get(|| async { Html(PAGE) }))
            .route("/plain", get(|| async { Html(PLAIN) }))
            .route("/sw.js", get(sw_js))
            .route("/v1/pings", post(forward_ping))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Site { origin, state }
    }

    fn fail_first(&self, kind: &str, token: &str, n: usize) {
        self.state
            .lock()
            .unwrap()
            .fail_first
            .insert((kind.to_string(), token.to_string()), n);
    }

    fn attempts(&self, kind: &str, token: &str) -> Vec<Attempt> {
        self.state
            .lock()
            .unwrap()
            .attempts
            .iter()
            .filter(|a| a.kind == kind && a.token == token)
            .cloned()
            .collect()
    }
}

/// The site's page: registers the worker; `window.pushflowReady` says
/// how that went.
const PAGE: &str = r#"<!doctype html><html><head><title>shop</title></head><body>
<script>
window.pushflowReady = navigator.serviceWorker.register('/sw.js')
  .then(() => navigator.serviceWorker.ready)
  .then(() => 'ready', (e) => 'error: ' + e);
</script></body></html>"#;

/// A page of the site that does nothing by itself.
const PLAIN: &str = "<!doctype html><html><head><title>plain</title></head><body></body></html>";

/// ingest's `/sw.js`, asked for with the site's `Host` as a reverse proxy
/// passes it: ingest writes the site's origin in as the ping origin.
async fn sw_js(State(s): State<Arc<Mutex<SiteState>>>, headers: HeaderMap) -> Response {
    let ingest = s.lock().unwrap().ingest.clone();
    let host = headers[header::HOST].clone();
    let r = client()
        .get(format!("{ingest}/sw.js"))
        .header(header::HOST, host)
        .send()
        .await
        .unwrap();
    let ct = r.headers()[header::CONTENT_TYPE].clone();
    (
        StatusCode::from_u16(r.status().as_u16()).unwrap(),
        [(header::CONTENT_TYPE, ct)],
        r.bytes().await.unwrap(),
    )
        .into_response()
}

async fn forward_ping(
    State(s): State<Arc<Mutex<SiteState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let kind = v["type"].as_str().unwrap_or("").to_string();
    let token = v["token"].as_str().unwrap_or("").to_string();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (inject, ingest) = {
        let mut s = s.lock().unwrap();
        let left = s.fail_first.get_mut(&(kind.clone(), token.clone()));
        let inject = match left {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        (inject, s.ingest.clone())
    };
    let (status, answer) = if inject {
        (
            503,
            Bytes::from(json!({"error": "injected by the test's proxy"}).to_string()),
        )
    } else {
        let r = client()
            .post(format!("{ingest}/v1/pings"))
            .header(header::CONTENT_TYPE, content_type.clone())
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap())
    };
    s.lock().unwrap().attempts.push(Attempt {
        kind,
        token,
        at: v["at"].clone(),
        content_type,
        status,
    });
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        answer,
    )
        .into_response()
}

fn claims(notification_id: &str) -> PingClaims {
    let now = now_millis() / 1000;
    PingClaims {
        notification_id: notification_id.to_string(),
        campaign_id: "camp-browser".into(),
        store_id: "store-browser".into(),
        subscriber_id: "sub-browser".into(),
        exp: now + 3600,
        iat: Some(now),
    }
}

/// A token signed with a key ingest does not have: refused with 401.
fn forged(notification_id: &str) -> String {
    PingKeys::parse("k1:another-secret-of-16b")
        .unwrap()
        .mint(&claims(notification_id))
}

/// Every record of `topic`, read off the runtime's threads.
async fn records(topic: String) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    tokio::task::spawn_blocking(move || consume_all(&topic, Duration::from_secs(30)))
        .await
        .unwrap()
}

/// The one `at` all attempts carried (retries repeat it), an integer.
fn one_at(attempts: &[Attempt]) -> i64 {
    let at = attempts[0]
        .at
        .as_i64()
        .unwrap_or_else(|| panic!("the worker sent `at` as an integer of ms: {attempts:?}"));
    assert!(
        attempts.iter().all(|a| a.at == json!(at)),
        "every retry sends the same `at`: {attempts:?}"
    );
    at
}

fn statuses(attempts: &[Attempt]) -> Vec<u16> {
    attempts.iter().map(|a| a.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ping_function_retries_5xx_but_not_4xx() {
    tokio::time::timeout(TEST_LIMIT, ping_function())
        .await
        .expect("the test finished within its limit");
}

async fn ping_function() {
    let s = start("", &["notification.delivered", "notification.clicked"]).await;
    let site = Site::start(&s.url).await;
    let good_id = pushflow_testkit::unique("n-fn");
    let good = s.keys.mint(&claims(&good_id));
    let bad = forged("n-fn-forged");
    site.fail_first("delivered", &good, 2);

    let chromium = Chromium::launch();
    let cdp = chromium.connect().await;
    let page = cdp.new_page().await;
    // A page of the site that loads the worker's script as a plain script.
    cdp.navigate(&page, &format!("{}/plain", site.origin)).await;
    cdp.evaluate(
        &page,
        "new Promise((ok, err) => { const s = document.createElement('script'); \
         s.src = '/sw.js'; s.onload = ok; s.onerror = err; document.head.appendChild(s); })",
    )
    .await;
    let before = now_millis();
    let results = cdp
        .evaluate(
            &page,
            &format!(
                "(async () => [await pushflowSendPing('delivered', {good:?}, {{ baseDelayMs: 20 }}), \
                 await pushflowSendPing('clicked', {bad:?}, {{ baseDelayMs: 20, at: 1234 }})])()"
            ),
        )
        .await;
    let after = now_millis();
    assert_eq!(results[0]["ok"], true, "{results}");
    assert_eq!(results[0]["attempts"], 3, "two 503s, then 202: {results}");
    assert_eq!(results[0]["status"], 202, "{results}");
    assert_eq!(results[1]["ok"], false, "{results}");
    assert_eq!(results[1]["attempts"], 1, "a 401 is not retried: {results}");
    assert_eq!(results[1]["status"], 401, "{results}");

    let tries = site.attempts("delivered", &good);
    assert_eq!(statuses(&tries), [503, 503, 202], "{tries:?}");
    assert!(tries
        .iter()
        .all(|a| a.content_type.starts_with("application/json")));
    let at = one_at(&tries);
    assert_eq!(results[0]["at"], json!(at));
    assert!(
        (before - 1000..=after + 1000).contains(&at),
        "`at` defaults to now: {before} ≤ {at} ≤ {after}"
    );
    let refused = site.attempts("clicked", &bad);
    assert_eq!(statuses(&refused), [401], "{refused:?}");
    assert_eq!(
        refused[0].at,
        json!(1234),
        "an explicit `at` is sent as given"
    );

    let got = records(s.topic("notification.delivered")).await;
    assert_eq!(got.len(), 1, "the good ping, once");
    let e: NotificationDelivered = Codec::for_registry(&s.registry)
        .unwrap()
        .decode(&got[0].3)
        .await
        .unwrap();
    assert_eq!(
        (e.notification_id.as_str(), e.occurred_at),
        (good_id.as_str(), at)
    );
    assert!(records(s.topic("notification.clicked")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registered_worker_pings_delivered_and_clicked() {
    tokio::time::timeout(TEST_LIMIT, registered_worker())
        .await
        .expect("the test finished within its limit");
}

/// The registration id and target of the site's active, running worker.
async fn active_worker(cdp: &Cdp, page: &str) -> (String, String) {
    cdp.wait_event("the service worker is activated and running", |_, e| {
        if e["method"] != "ServiceWorker.workerVersionUpdated" || e["sessionId"] != page {
            return None;
        }
        e["params"]["versions"].as_array()?.iter().find_map(|v| {
            if v["status"] != "activated" || v["runningStatus"] != "running" {
                return None;
            }
            Some((
                v["registrationId"].as_str()?.to_string(),
                v["targetId"].as_str()?.to_string(),
            ))
        })
    })
    .await
}

async fn push(cdp: &Cdp, page: &str, origin: &str, registration: &str, payload: Value) {
    cdp.call(
        "ServiceWorker.deliverPushMessage",
        json!({"origin": origin, "registrationId": registration, "data": payload.to_string()}),
        Some(page),
    )
    .await;
}

fn payload(origin: &str, notification_id: &str, token: &str) -> Value {
    json!({
        "notification_id": notification_id,
        "campaign_id": "camp-browser",
        "title": "Winter sale",
        "body": "Everything -30 % until Sunday",
        "url": format!("{origin}/landing"),
        "ping_token": token,
    })
}

async fn registered_worker() {
    let s = start("", &["notification.delivered", "notification.clicked"]).await;
    let site = Site::start(&s.url).await;
    let origin = site.origin.as_str();
    let good_id = pushflow_testkit::unique("n-sw");
    let good = s.keys.mint(&claims(&good_id));
    let bad_id = pushflow_testkit::unique("n-sw-forged");
    let bad = forged(&bad_id);
    site.fail_first("delivered", &good, 2);
    site.fail_first("clicked", &good, 1);

    let chromium = Chromium::launch();
    let cdp = chromium.connect().await;
    cdp.call(
        "Browser.grantPermissions",
        json!({"origin": origin, "permissions": ["notifications"]}),
        None,
    )
    .await;
    let page = cdp.new_page().await;
    cdp.call("ServiceWorker.enable", json!({}), Some(&page))
        .await;
    cdp.navigate(&page, &format!("{origin}/")).await;
    let ready = cdp.evaluate(&page, "window.pushflowReady").await;
    assert_eq!(ready, "ready", "registering /sw.js: {}", chromium.log());
    let (registration, worker_target) = active_worker(&cdp, &page).await;
    // Attached DevTools also keep the worker from idling out mid-test.
    let worker = cdp.attach(&worker_target).await;

    // delivered: shown, pinged, two 503s retried, accepted once.
    let before = now_millis();
    push(
        &cdp,
        &page,
        origin,
        &registration,
        payload(origin, &good_id, &good),
    )
    .await;
    let tries = until(
        "the delivered ping is accepted",
        Duration::from_secs(60),
        || {
            let t = site.attempts("delivered", &good);
            (t.last().map(|a| a.status) == Some(202)).then_some(t)
        },
    )
    .await;
    let shown_at = one_at(&tries);
    assert_eq!(statuses(&tries), [503, 503, 202], "{tries:?}");
    assert!(
        (before - 1000..=now_millis() + 1000).contains(&shown_at),
        "`at` is when the notification was shown: {before} ≤ {shown_at}"
    );

    // A forged token: pinged once, refused (401), not retried.
    push(
        &cdp,
        &page,
        origin,
        &registration,
        payload(origin, &bad_id, &bad),
    )
    .await;
    until(
        "the forged ping is attempted",
        Duration::from_secs(30),
        || (!site.attempts("delivered", &bad).is_empty()).then_some(()),
    )
    .await;
    // Longer than the worker's first backoffs (0.5 s, 1 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused = site.attempts("delivered", &bad);
    assert_eq!(statuses(&refused), [401], "{refused:?}");

    // Both notifications were shown by the worker.
    let shown = cdp
        .evaluate(
            &worker,
            "self.registration.getNotifications().then(ns => ns.map(n => n.tag).sort())",
        )
        .await;
    let mut tags = vec![good_id.clone(), bad_id.clone()];
    tags.sort();
    assert_eq!(shown, json!(tags));

    // clicked: the worker's own listener, for the real notification.
    let dispatched = cdp
        .evaluate(
            &worker,
            &format!(
                "self.registration.getNotifications({{ tag: {good_id:?} }}).then(ns => {{ \
                 self.dispatchEvent(new NotificationEvent('notificationclick', {{ notification: ns[0] }})); \
                 return ns.length; }})"
            ),
        )
        .await;
    assert_eq!(dispatched, 1);
    let clicks = until(
        "the clicked ping is accepted",
        Duration::from_secs(60),
        || {
            let t = site.attempts("clicked", &good);
            (t.last().map(|a| a.status) == Some(202)).then_some(t)
        },
    )
    .await;
    assert_eq!(statuses(&clicks), [503, 202], "{clicks:?}");
    let clicked_at = one_at(&clicks);
    assert!(clicked_at >= shown_at, "clicked after shown");
    let left = cdp
        .evaluate(
            &worker,
            &format!(
                "self.registration.getNotifications({{ tag: {good_id:?} }}).then(ns => ns.length)"
            ),
        )
        .await;
    assert_eq!(left, 0, "the click closed the notification");

    // The real topics: each ping once, dated by the worker's `at`.
    let codec = Codec::for_registry(&s.registry).unwrap();
    let delivered = records(s.topic("notification.delivered")).await;
    assert_eq!(delivered.len(), 1, "the good delivered ping, once");
    assert_eq!(delivered[0].2, good_id.as_bytes());
    let e: NotificationDelivered = codec.decode(&delivered[0].3).await.unwrap();
    assert_eq!(
        (e.notification_id.as_str(), e.occurred_at),
        (good_id.as_str(), shown_at)
    );
    let clicked = records(s.topic("notification.clicked")).await;
    assert_eq!(clicked.len(), 1, "the clicked ping, once");
    let e: NotificationClicked = codec.decode(&clicked[0].3).await.unwrap();
    assert_eq!(
        (e.notification_id.as_str(), e.occurred_at),
        (good_id.as_str(), clicked_at)
    );
}

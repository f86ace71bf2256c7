//! The simulator's HTTP service: `POST /push/{subscriber}` as a push
//! service answers it, and `/sim/*` to steer and inspect it.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::behaviour::Behaviour;
use crate::crypto::{parse_vapid_header, verify_vapid, SubscriberKeys};
use crate::subscribers::Publisher;

/// One accepted push, as the simulator saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    /// Subscriber the push was for.
    pub subscriber_id: String,
    /// The decrypted JSON payload (absent when not sampled).
    pub payload: Option<serde_json::Value>,
    /// `TTL` header.
    pub ttl: Option<String>,
    /// `Urgency` header.
    pub urgency: Option<String>,
    /// `Topic` header.
    pub topic: Option<String>,
    /// The JWT's `sub` claim.
    pub vapid_sub: Option<String>,
    /// Raw body, base64url (when `keep_raw`).
    pub body: Option<String>,
    /// Raw `Authorization` header (when `keep_raw`).
    pub authorization: Option<String>,
}

/// Counters the simulator keeps.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    accepted: AtomicU64,
    vapid_rejected: AtomicU64,
    decrypted: AtomicU64,
    decrypt_failed: AtomicU64,
}

/// Shared state of a running simulator.
pub struct SimState {
    pub(crate) origin: String,
    pub(crate) subscribers: RwLock<HashMap<String, Arc<SubscriberKeys>>>,
    received: Mutex<HashMap<String, Vec<Received>>>,
    behaviour: RwLock<Behaviour>,
    hits: Mutex<HashMap<String, u32>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
    counters: Counters,
    /// Verified (jwt, key) pairs and their expiry: a push service checks a
    /// reused JWT's signature once.
    verified: Mutex<HashMap<String, i64>>,
    pub(crate) publisher: Option<Publisher>,
}

impl SimState {
    /// New state for a simulator reachable at `origin` (`http://host:port`).
    pub fn new(origin: String, behaviour: Behaviour, publisher: Option<Publisher>) -> SimState {
        SimState {
            origin,
            subscribers: RwLock::new(HashMap::new()),
            received: Mutex::new(HashMap::new()),
            behaviour: RwLock::new(behaviour),
            hits: Mutex::new(HashMap::new()),
            statuses: Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
            verified: Mutex::new(HashMap::new()),
            publisher,
        }
    }

    /// The origin push endpoints live under.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Replaces the behaviour (and resets per-subscriber rule counts).
    pub fn set_behaviour(&self, b: Behaviour) {
        *self.behaviour.write().unwrap() = b;
        self.hits.lock().unwrap().clear();
    }

    /// Everything accepted for `subscriber`.
    pub fn received(&self, subscriber: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .get(subscriber)
            .cloned()
            .unwrap_or_default()
    }

    /// How many pushes were accepted per subscriber.
    pub fn received_counts(&self) -> HashMap<String, usize> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    /// Counters as JSON (`GET /sim/stats`).
    pub fn stats(&self) -> serde_json::Value {
        let c = &self.counters;
        let statuses: BTreeMap<String, u64> = self
            .statuses
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        serde_json::json!({
            "requests": c.requests.load(Ordering::Relaxed),
            "accepted": c.accepted.load(Ordering::Relaxed),
            "vapid_rejected": c.vapid_rejected.load(Ordering::Relaxed),
            "decrypted": c.decrypted.load(Ordering::Relaxed),
            "decrypt_failed": c.decrypt_failed.load(Ordering::Relaxed),
            "statuses": statuses,
            "subscribers": self.subscribers.read().unwrap().len(),
        })
    }

    fn answer(&self, status: StatusCode, msg: String) -> Response {
        *self
            .statuses
            .lock()
            .unwrap()
            .entry(status.as_u16())
            .or_default() += 1;
        (status, msg).into_response()
    }

    fn check_vapid(&self, auth: Option<&str>) -> Result<Option<String>, String> {
        let auth = auth.ok_or("missing Authorization: vapid t=…, k=…")?;
        let (t, k) = parse_vapid_header(auth).map_err(|e| e.to_string())?;
        let now = now_secs();
        let cache_key = format!("{t}|{k}");
        if let Some(exp) = self.verified.lock().unwrap().get(&cache_key) {
            if *exp > now {
                return Ok(None);
            }
        }
        let claims = verify_vapid(t, k, &self.origin, now).map_err(|e| e.to_string())?;
        self.verified.lock().unwrap().insert(cache_key, claims.exp);
        Ok(claims.sub)
    }

    /// Handles one push request.
    pub async fn push(&self, subscriber: &str, headers: &HeaderMap, body: &[u8]) -> Response {
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pushflow_push_sim_requests_total").increment(1);
        let h = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let auth = h("authorization");
        let vapid_sub = match self.check_vapid(auth.as_deref()) {
            Ok(sub) => sub,
            Err(e) => {
                c.vapid_rejected.fetch_add(1, Ordering::Relaxed);
                return self.answer(StatusCode::UNAUTHORIZED, format!("VAPID: {e}"));
            }
        };
        let rule = {
            let b = self.behaviour.read().unwrap();
            let hits = *self.hits.lock().unwrap().get(subscriber).unwrap_or(&0);
            b.pick(subscriber, hits, rand::random::<f64>()).cloned()
        };
        if let Some(rule) = rule {
            *self
                .hits
                .lock()
                .unwrap()
                .entry(subscriber.to_string())
                .or_default() += 1;
            if let Some(ms) = rule.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if !(200..300).contains(&rule.status) {
                let status =
                    StatusCode::from_u16(rule.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut resp = self.answer(status, format!("simulated {}", rule.status));
                if let Some(s) = rule.retry_after {
                    resp.headers_mut().insert("retry-after", s.into());
                }
                return resp;
            }
        }
        let Some(keys) = self.subscribers.read().unwrap().get(subscriber).cloned() else {
            return self.answer(
                StatusCode::NOT_FOUND,
                format!("no subscription {subscriber:?}"),
            );
        };
        let Some(ttl) = h("ttl") else {
            return self.answer(
                StatusCode::BAD_REQUEST,
                "missing TTL header (RFC 8030)".into(),
            );
        };
        if h("content-encoding").as_deref() != Some("aes128gcm") {
            return self.answer(
                StatusCode::BAD_REQUEST,
                "Content-Encoding must be aes128gcm".into(),
            );
        }
        let (sample, keep_raw) = {
            let b = self.behaviour.read().unwrap();
            (b.verify_sample, b.keep_raw)
        };
        let mut payload = None;
        if sample >= 1.0 || rand::random::<f64>() < sample {
            match keys
                .decrypt(body)
                .map(|p| serde_json::from_slice::<serde_json::Value>(&p))
            {
                Ok(Ok(v)) => {
                    c.decrypted.fetch_add(1, Ordering::Relaxed);
                    payload = Some(v);
                }
                Ok(Err(e)) => {
                    c.decrypt_failed.fetch_add(1, Ordering::Relaxed);
                    return self
                        .answer(StatusCode::BAD_REQUEST, format!("payload is not JSON: {e}"));
                }
                Err(e) => {
                    c.decrypt_failed.fetch_add(1, Ordering::Relaxed);
                    return self.answer(StatusCode::BAD_REQUEST, e.to_string());
                }
            }
        }
        let rec = Received {
            subscriber_id: subscriber.to_string(),
            payload,
            ttl: Some(ttl),
            urgency: h("urgency"),
            topic: h("topic"),
            vapid_sub,
            body: keep_raw.then(|| B64.encode(body)),
            authorization: if keep_raw { auth } else { None },
        };
        self.received
            .lock()
            .unwrap()
            .entry(subscriber.to_string())
            .or_default()
            .push(rec);
        c.accepted.fetch_add(1, Ordering::Relaxed);
        let mut resp = self.answer(StatusCode::CREATED, String::new());
        if let Ok(v) = format!("{}/message/{}", self.origin, rand::random::<u64>()).parse() {
            resp.headers_mut().insert("location", v);
        }
        resp
    }
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct ReceivedQuery {
    subscriber: String,
}

#[derive(Deserialize)]
struct NewSubscribers {
    store: String,
    count: usize,
}

/// The router of a simulator over `state`.
pub fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(
            "/push/{subscriber}",
            post(
                |State(s): State<Arc<SimState>>,
                 Path(id): Path<String>,
                 headers: HeaderMap,
                 body: Bytes| async move { s.push(&id, &headers, &body).await },
            ),
        )
        .route(
            "/sim/received",
            get(
                |State(s): State<Arc<SimState>>, Query(q): Query<ReceivedQuery>| async move {
                    Json(s.received(&q.subscriber))
                },
            ),
        )
        .route(
            "/sim/stats",
            get(|State(s): State<Arc<SimState>>| async move { Json(s.stats()) }),
        )
        .route(
            "/sim/behaviour",
            post(
                |State(s): State<Arc<SimState>>, Json(b): Json<Behaviour>| async move {
                    s.set_behaviour(b);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/sim/keys/{subscriber}",
            get(
                |State(s): State<Arc<SimState>>, Path(id): Path<String>| async move {
                    match s.subscribers.read().unwrap().get(&id) {
                        Some(k) => Json(serde_json::json!({
                            "private_key": B64.encode(k.private_raw()),
                            "public_key": k.p256dh(),
                            "auth": k.auth_b64(),
                        }))
                        .into_response(),
                        None => (StatusCode::NOT_FOUND, "unknown subscriber").into_response(),
                    }
                },
            ),
        )
        .route(
            "/sim/subscribers",
            post(
                |State(s): State<Arc<SimState>>, Json(n): Json<NewSubscribers>| async move {
                    let subs = s.add_subscribers(&n.store, n.count);
                    let list: Vec<serde_json::Value> = subs
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "subscriber_id": e.subscriber_id, "store_id": e.store_id,
                                "endpoint": e.endpoint, "p256dh": e.p256dh, "auth": e.auth,
                            })
                        })
                        .collect();
                    match s.publish(&subs).await {
                        Ok(published) => {
                            Json(serde_json::json!({"subscribers": list, "published": published}))
                                .into_response()
                        }
                        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
                    }
                },
            ),
        )
        .with_state(state)
}

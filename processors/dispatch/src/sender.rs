//! Sends one encrypted push to its push service, with the retry policy:
//! 2xx delivered; 404/410 gone; 400/401/403/413 refused for good; 429,
//! 5xx, timeouts and connection errors retried with exponential backoff
//! and jitter, a `Retry-After` pausing that origin only. Requests share one
//! HTTP client (connections reused), each has a timeout, and each origin
//! has its own concurrency limit.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use bytes::Bytes;
use pushflow_schemas::FailureKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::vapid::{origin_of, VapidCache};
use crate::{rfc8291, DispatchError};

/// One push to send.
#[derive(Debug, Clone)]
pub struct Push {
    /// Push endpoint URL.
    pub endpoint: String,
    /// Subscription public key, base64url.
    pub p256dh: String,
    /// Subscription auth secret, base64url.
    pub auth: String,
    /// Plaintext (the JSON payload).
    pub plaintext: Vec<u8>,
    /// `TTL` seconds.
    pub ttl: i32,
    /// `Urgency` header value.
    pub urgency: &'static str,
    /// `Topic` header (≤ 32 base64url characters).
    pub topic: Option<String>,
}

/// How a push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The push service accepted it (2xx).
    Accepted {
        /// Its status.
        status: u16,
    },
    /// It failed for good or after the retry budget.
    Failed {
        /// Classification.
        kind: FailureKind,
        /// Whether a later attempt could succeed.
        retryable: bool,
        /// Last HTTP status, if any.
        status: Option<u16>,
        /// Human-readable reason.
        error: String,
    },
}

/// How the sender behaves.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Requests in flight per origin.
    pub concurrency_per_origin: usize,
    /// Timeout of each request.
    pub request_timeout: Duration,
    /// Attempts per push.
    pub max_attempts: u32,
    /// First backoff.
    pub retry_base: Duration,
    /// Longest backoff / honoured Retry-After.
    pub retry_max: Duration,
    /// Whether `http://` endpoints are allowed (`PUSHFLOW_ALLOW_INSECURE_PUSH=1`).
    pub allow_insecure: bool,
}

struct OriginState {
    permits: Semaphore,
    paused_until: Mutex<Option<Instant>>,
}

/// Sends pushes; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    vapid: VapidCache,
    config: Arc<SenderConfig>,
    origins: Arc<Mutex<HashMap<String, Arc<OriginState>>>>,
}

fn failed(kind: FailureKind, retryable: bool, status: Option<u16>, error: String) -> Outcome {
    Outcome::Failed {
        kind,
        retryable,
        status,
        error,
    }
}

/// Decodes base64url with or without padding.
pub fn b64(s: &str) -> Option<Vec<u8>> {
    B64.decode(s.trim_end_matches('='))
        .ok()
        .or_else(|| URL_SAFE.decode(s).ok())
}

impl Sender {
    /// A sender signing with `vapid`.
    pub fn new(vapid: VapidCache, config: SenderConfig) -> Result<Sender, DispatchError> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(config.concurrency_per_origin.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .connect_timeout(config.request_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| {
                DispatchError::Runtime(pushflow_runtime::RuntimeError::Component {
                    component: "dispatch".into(),
                    message: format!("building the HTTP client (TLS set-up): {e}"),
                    retryable: false,
                })
            })?;
        Ok(Sender {
            client,
            vapid,
            config: Arc::new(config),
            origins: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn origin(&self, origin: &str) -> Arc<OriginState> {
        let mut origins = self.origins.lock().unwrap();
        if let Some(state) = origins.get(origin) {
            return state.clone();
        }
        origins
            .entry(origin.to_string())
            .or_insert_with(|| {
                Arc::new(OriginState {
                    permits: Semaphore::new(self.config.concurrency_per_origin),
                    paused_until: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Encrypts and sends `push`, retrying as the policy says.
    pub async fn send(&self, push: &Push) -> Outcome {
        let invalid = |m: String| failed(FailureKind::InvalidSubscription, false, None, m);
        let url = match reqwest::Url::parse(&push.endpoint) {
            Ok(u) => u,
            Err(e) => return invalid(format!("endpoint {:?} is not a URL: {e}", push.endpoint)),
        };
        match url.scheme() {
            "https" => {}
            "http" if self.config.allow_insecure => {}
            "http" => {
                return invalid(format!(
                    "endpoint {} is plain http://; push endpoints must be https:// (set PUSHFLOW_ALLOW_INSECURE_PUSH=1 only for local simulators)",
                    push.endpoint
                ))
            }
            s => return invalid(format!("endpoint scheme {s:?} is not https")),
        }
        let (Some(p256dh), Some(auth)) = (b64(&push.p256dh), b64(&push.auth)) else {
            return invalid("p256dh or auth is not base64url".into());
        };
        let body = match rfc8291::encrypt(&p256dh, &auth, &push.plaintext) {
            Ok(b) => bytes_body(b),
            Err(DispatchError::InvalidSubscription(m)) => return invalid(m),
            Err(e) => return failed(FailureKind::Other, false, None, e.to_string()),
        };
        self.deliver(&url, body, push).await
    }

    /// Sends an already encrypted body (also used by the benchmark's
    /// baseline), retrying as the policy says.
    pub async fn deliver(&self, url: &reqwest::Url, body: Bytes, push: &Push) -> Outcome {
        let origin = origin_of(url);
        let state = self.origin(&origin);
        let cfg = &self.config;
        let mut last = String::new();
        let mut last_status = None;
        for attempt in 1..=cfg.max_attempts {
            let pause = *state.paused_until.lock().unwrap();
            if let Some(until) = pause {
                tokio::time::sleep_until(until.into()).await;
            }
            let auth = match self.vapid.header(&origin, now_secs()) {
                Ok(h) => h,
                Err(e) => return failed(FailureKind::Other, false, None, e.to_string()),
            };
            let result = {
                let _permit = state
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                let mut req = self
                    .client
                    .post(url.clone())
                    .header("authorization", &*auth)
                    .header("ttl", push.ttl.max(0))
                    .header("urgency", push.urgency)
                    .header("content-encoding", "aes128gcm")
                    .header("content-type", "application/octet-stream");
                if let Some(t) = &push.topic {
                    req = req.header("topic", t);
                }
                req.body(body.clone()).send().await
            };
            let retry_after = match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let ra = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    if (200..300).contains(&status) {
                        return Outcome::Accepted { status };
                    }
                    let text = resp.text().await.unwrap_or_default();
                    let text: String = text.chars().take(300).collect();
                    let msg = format!("push service answered {status}: {text}");
                    match status {
                        404 | 410 => return failed(FailureKind::Gone, false, Some(status), msg),
                        401 | 403 => {
                            return failed(FailureKind::Unauthorized, false, Some(status), msg)
                        }
                        413 => {
                            return failed(FailureKind::PayloadTooLarge, false, Some(status), msg)
                        }
                        429 | 500..=599 => {}
                        _ => return failed(FailureKind::Rejected, false, Some(status), msg),
                    }
                    last = msg;
                    last_status = Some(status);
                    ra
                }
                Err(e) => {
                    last = if e.is_timeout() {
                        format!("request timed out after {:?}", cfg.request_timeout)
                    } else {
                        format!("request failed: {e}")
                    };
                    last_status = None;
                    None
                }
            };
            metrics::counter!("pushflow_dispatch_retries_total").increment(1);
            if attempt == cfg.max_attempts {
                break;
            }
            let backoff = backoff(cfg.retry_base, cfg.retry_max, attempt);
            let wait = match retry_after {
                Some(ra) => {
                    let ra = ra.min(cfg.retry_max);
                    let until = Instant::now() + ra;
                    let mut p = state.paused_until.lock().unwrap();
                    if p.is_none_or(|old| old < until) {
                        *p = Some(until);
                    }
                    tracing::info!(origin = %origin, retry_after_s = ra.as_secs(), "push service asked to slow down; pausing this origin");
                    ra.max(backoff)
                }
                None => backoff,
            };
            tokio::time::sleep(wait).await;
        }
        failed(
            FailureKind::RetriesExhausted,
            true,
            last_status,
            format!("gave up after {} attempts; last: {last}", cfg.max_attempts),
        )
    }
}

fn bytes_body(b: Vec<u8>) -> Bytes {
    b.into()
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, capped, times
/// a random factor in [0.5, 1).
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    exp.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vapid::VapidKey;

    #[tokio::test]
    async fn refuses_plain_http_unless_allowed() {
        let cache = VapidCache::new(
            Arc::new(VapidKey::generate()),
            "mailto:a@b.c",
            Duration::from_secs(12 * 3600),
        );
        let cfg = SenderConfig {
            concurrency_per_origin: 1,
            request_timeout: Duration::from_secs(1),
            max_attempts: 1,
            retry_base: Duration::from_millis(1),
            retry_max: Duration::from_millis(1),
            allow_insecure: false,
        };
        let sender = Sender::new(cache, cfg).unwrap();
        let ua = VapidKey::generate();
        let push = Push {
            endpoint: "http://127.0.0.1:9/push/x".into(),
            p256dh: ua.public_b64.clone(),
            auth: B64.encode([7u8; 16]),
            plaintext: b"{}".to_vec(),
            ttl: 60,
            urgency: "normal",
            topic: None,
        };
        match sender.send(&push).await {
            Outcome::Failed {
                kind: FailureKind::InvalidSubscription,
                retryable: false,
                error,
                ..
            } => {
                assert!(error.contains("PUSHFLOW_ALLOW_INSECURE_PUSH=1"), "{error}")
            }
            o => panic!("{o:?}"),
        }
        let bad = Push {
            endpoint: "https://push.example/x".into(),
            p256dh: "!!".into(),
            ..push
        };
        assert!(matches!(
            sender.send(&bad).await,
            Outcome::Failed {
                kind: FailureKind::InvalidSubscription,
                ..
            }
        ));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for a in 1..10 {
            let d = backoff(base, max, a);
            let cap = (base * (1 << (a - 1))).min(max);
            assert!(d >= cap / 2 && d <= cap, "attempt {a}: {d:?}");
        }
    }
}

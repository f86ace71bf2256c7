//! The public, unauthenticated endpoints browsers call: service-worker
//! pings (signed at dispatch, verified here) and new push subscriptions.
//!
//! Guarantee: a ping is answered 202 only after the broker acknowledged its
//! `notification.*` event; anything else (4xx, 5xx, a lost answer) may be
//! retried by the worker, and repeats are harmless (the aggregate counts
//! each (notification, kind) once).
//!
//! **Event time of a ping.** The worker reports `at`, milliseconds since the
//! epoch when the notification was shown or clicked; the event's
//! `occurred_at`, which billing months and the aggregate's windows use, is
//! that `at` when it lies within
//! `[token iat × 1000 − PING_TIME_SKEW_MS, now + PING_TIME_SKEW_MS]`
//! (`iat`: when dispatch minted the token, so a signed lower bound no
//! browser can move; the skew allows for clocks that disagree by up to
//! [`PING_TIME_SKEW_MS`]). Otherwise — `at` absent, outside that range, or
//! the token minted before tokens carried `iat` (no trustworthy lower
//! bound, so `at` is not used at all) — `occurred_at` is ingest's clock and
//! the correction is counted in
//! `pushflow_ingest_ping_time_corrected_total{reason}` (`absent`,
//! `no_issue_time`, `before_issue`, `future`) and logged at DEBUG. So a
//! client can date a ping back at most to the token's issue time (minus the
//! skew): never into a billing month before the notification was sent.
//! An `at` that is not an integer is a 400 naming the field.

use apache_avro::types::Value;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::{body::Bytes, Json};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::app::{ApiError, AppState};

#[derive(Deserialize)]
struct Ping {
    #[serde(rename = "type")]
    kind: String,
    token: String,
    /// Milliseconds since the epoch when shown or clicked; kept as JSON so a
    /// wrong type gets a message naming the field.
    #[serde(default)]
    at: Option<serde_json::Value>,
}

/// How far a ping's `at` may lie before its token's issue time or after
/// ingest's clock and still be taken as its event time: 2 minutes, for
/// browser, dispatch and ingest clocks that disagree.
pub const PING_TIME_SKEW_MS: i64 = 2 * 60 * 1000;

/// The event time given to a ping, and why ingest's clock replaced `at`
/// when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingTime {
    /// `occurred_at` of the event, milliseconds since the epoch.
    pub occurred_at: i64,
    /// `None` when `at` was taken; else the `reason` label of
    /// `pushflow_ingest_ping_time_corrected_total`.
    pub corrected: Option<&'static str>,
}

/// The rule of the module doc: `at` (ms) when
/// `issued_at × 1000 − skew ≤ at ≤ now + skew`, else `now` (ms) with the
/// reason. `issued_at` is the token's `iat` (seconds).
pub fn ping_time(at: Option<i64>, issued_at: Option<i64>, now: i64) -> PingTime {
    let corrected = |reason| PingTime {
        occurred_at: now,
        corrected: Some(reason),
    };
    let Some(at) = at else {
        return corrected("absent");
    };
    let Some(issued_at) = issued_at else {
        return corrected("no_issue_time");
    };
    if at
        < issued_at
            .saturating_mul(1000)
            .saturating_sub(PING_TIME_SKEW_MS)
    {
        return corrected("before_issue");
    }
    if at > now.saturating_add(PING_TIME_SKEW_MS) {
        return corrected("future");
    }
    PingTime {
        occurred_at: at,
        corrected: None,
    }
}

/// `at` as integer milliseconds: absent and `null` are `None`; an integer
/// beyond `i64` is far in the future (so corrected, not refused).
fn parse_at(at: Option<&serde_json::Value>) -> Result<Option<i64>, ApiError> {
    match at {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(Some(n.as_i64().unwrap_or(i64::MAX)))
        }
        Some(other) => Err(bad(
            "at",
            &format!(
                "{other} is not an integer: send milliseconds since the Unix epoch, e.g. Date.now()"
            ),
        )),
    }
}

/// JSON bodies may come as `application/json`, or as `text/plain` from
/// `navigator.sendBeacon`, or untyped.
fn check_json_like(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if matches!(mime.as_str(), "" | "application/json" | "text/plain") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {ct:?} is not supported: send application/json or text/plain"),
        ))
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

fn now_secs() -> i64 {
    pushflow_schemas::now_millis() / 1000
}

fn event_id_value(id: &str) -> Value {
    Value::Uuid(uuid::Uuid::parse_str(id).expect("new_event_id is a UUID"))
}

/// `POST /v1/pings`: `{"type": "delivered"|"clicked", "token": …, "at": ms?}`
/// → 202 after the broker acknowledged the `notification.*` event, dated
/// as [`ping_time`] says.
pub(crate) async fn ping(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    check_json_like(&headers)?;
    let body = body.map_err(|e| ApiError::from_body(e, s.cfg.max_body))?;
    let ping: Ping = parse(&body)?;
    let Some(kind) = pushflow_schemas::PingKind::from_name(&ping.kind) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "field `type`: {:?} is not one of delivered, clicked",
                ping.kind
            ),
        ));
    };
    let topic_name = kind.topic().name;
    let at = parse_at(ping.at.as_ref())?;
    let claims = s
        .deps
        .ping_keys
        .verify(&ping.token, now_secs())
        .map_err(|e| {
            metrics::counter!("pushflow_ingest_pings_rejected_total", "reason" => e.reason())
                .increment(1);
            tracing::info!(reason = e.reason(), "ping refused");
            ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
        })?;
    let time = ping_time(at, claims.iat, pushflow_schemas::now_millis());
    if let Some(reason) = time.corrected {
        metrics::counter!("pushflow_ingest_ping_time_corrected_total", "reason" => reason)
            .increment(1);
        tracing::debug!(
            reason,
            at,
            iat = claims.iat,
            occurred_at = time.occurred_at,
            notification_id = %claims.notification_id,
            "ping event time taken from ingest's clock"
        );
    }
    let topic = kind.topic();
    let event_id = pushflow_schemas::new_event_id();
    let value = Value::Record(vec![
        ("event_id".into(), event_id_value(&event_id)),
        (
            "occurred_at".into(),
            Value::TimestampMillis(time.occurred_at),
        ),
        ("store_id".into(), Value::String(claims.store_id)),
        (
            "notification_id".into(),
            Value::String(claims.notification_id.clone()),
        ),
        ("campaign_id".into(), Value::String(claims.campaign_id)),
    ]);
    let bytes = s.encode(topic, value).await?;
    let d = s.send(topic, &claims.notification_id, &bytes).await?;
    metrics::counter!("pushflow_ingest_pings_accepted_total", "type" => topic_name).increment(1);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"partition": d.partition, "offset": d.offset, "event_id": event_id})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSubscription {
    store_id: String,
    subscription: PushSubscription,
}

/// The browser's `PushSubscription.toJSON()`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushSubscription {
    endpoint: String,
    keys: SubscriptionKeys,
    #[serde(default)]
    #[expect(dead_code, reason = "accepted as browsers send it, not used")]
    expiration_time: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct SubscriptionKeys {
    p256dh: String,
    auth: String,
}

/// The subscriber id of an endpoint: hex SHA-256 of the endpoint URL, so
/// the same browser subscribing twice keeps its id.
pub fn subscriber_id(endpoint: &str) -> String {
    Sha256::digest(endpoint.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn bad(field: &str, msg: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, format!("field `{field}`: {msg}"))
}

fn is_b64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
}

/// `POST /v1/subscriptions`: `{store_id, subscription}` → 201 after the
/// broker acknowledged the `subscription.created` event.
pub(crate) async fn subscribe(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    check_json_like(&headers)?;
    let body = body.map_err(|e| ApiError::from_body(e, s.cfg.max_body))?;
    let sub: NewSubscription = parse(&body)?;
    if sub.store_id.trim().is_empty() {
        return Err(bad("store_id", "must not be empty"));
    }
    let ep = &sub.subscription.endpoint;
    if !(ep.starts_with("https://") || ep.starts_with("http://")) || ep.len() > 2048 {
        return Err(bad(
            "subscription.endpoint",
            "must be an http(s) URL of at most 2048 bytes",
        ));
    }
    if !is_b64url(&sub.subscription.keys.p256dh) {
        return Err(bad("subscription.keys.p256dh", "must be base64url"));
    }
    if !is_b64url(&sub.subscription.keys.auth) {
        return Err(bad("subscription.keys.auth", "must be base64url"));
    }
    let topic = &pushflow_schemas::catalogue::SUBSCRIPTION_CREATED;
    let id = subscriber_id(ep);
    let event_id = pushflow_schemas::new_event_id();
    let value = Value::Record(vec![
        ("event_id".into(), event_id_value(&event_id)),
        (
            "occurred_at".into(),
            Value::TimestampMillis(pushflow_schemas::now_millis()),
        ),
        ("store_id".into(), Value::String(sub.store_id)),
        ("subscriber_id".into(), Value::String(id.clone())),
        ("endpoint".into(), Value::String(ep.clone())),
        ("p256dh".into(), Value::String(sub.subscription.keys.p256dh)),
        ("auth".into(), Value::String(sub.subscription.keys.auth)),
    ]);
    let bytes = s.encode(topic, value).await?;
    let d = s.send(topic, &id, &bytes).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"subscriber_id": id, "partition": d.partition, "offset": d.offset, "event_id": event_id}),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const IAT: i64 = 1_799_999_000; // seconds: 1000 s before NOW

    fn taken(t: PingTime) -> Option<i64> {
        t.corrected.is_none().then_some(t.occurred_at)
    }

    #[test]
    fn at_within_issue_time_and_now_is_the_event_time() {
        for at in [
            IAT * 1000,
            IAT * 1000 - PING_TIME_SKEW_MS,
            NOW - 1,
            NOW,
            NOW + PING_TIME_SKEW_MS,
        ] {
            assert_eq!(taken(ping_time(Some(at), Some(IAT), NOW)), Some(at), "{at}");
        }
    }

    #[test]
    fn otherwise_ingest_s_clock_with_the_reason() {
        let cases = [
            (None, Some(IAT), "absent"),
            (Some(NOW - 5), None, "no_issue_time"),
            (
                Some(IAT * 1000 - PING_TIME_SKEW_MS - 1),
                Some(IAT),
                "before_issue",
            ),
            (Some(0), Some(IAT), "before_issue"),
            (Some(i64::MIN), Some(IAT), "before_issue"),
            (Some(NOW + PING_TIME_SKEW_MS + 1), Some(IAT), "future"),
            (Some(i64::MAX), Some(i64::MAX), "future"),
        ];
        for (at, iat, reason) in cases {
            assert_eq!(
                ping_time(at, iat, NOW),
                PingTime {
                    occurred_at: NOW,
                    corrected: Some(reason)
                },
                "at {at:?}, iat {iat:?}"
            );
        }
    }

    #[test]
    fn at_must_be_an_integer() {
        use serde_json::json;
        assert_eq!(parse_at(None).unwrap(), None);
        assert_eq!(parse_at(Some(&json!(null))).unwrap(), None);
        assert_eq!(parse_at(Some(&json!(NOW))).unwrap(), Some(NOW));
        assert_eq!(parse_at(Some(&json!(-3))).unwrap(), Some(-3));
        assert_eq!(parse_at(Some(&json!(u64::MAX))).unwrap(), Some(i64::MAX));
        for v in [json!(1.5), json!("1800000000000"), json!(true), json!([1])] {
            let e = parse_at(Some(&v)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{v}");
            assert!(e.message.starts_with("field `at`: "), "{v}: {}", e.message);
        }
    }
}

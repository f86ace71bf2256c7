//! The public, unauthenticated endpoints browsers call: service-worker
//! pings (signed at dispatch, verified here) and new push subscriptions.

use apache_avro::types::Value;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::{body::Bytes, Json};
use pushflow_schemas::Topic;
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

/// `POST /v1/pings`: `{"type": "delivered"|"clicked", "token": …}` → 202
/// after the broker acknowledged the `notification.*` event.
pub(crate) async fn ping(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    check_json_like(&headers)?;
    let body = body.map_err(|e| ApiError::from_body(e, s.cfg.max_body))?;
    let ping: Ping = parse(&body)?;
    let topic_name = match ping.kind.as_str() {
        "delivered" => "notification.delivered",
        "clicked" => "notification.clicked",
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("field `type`: {other:?} is not one of delivered, clicked"),
            ))
        }
    };
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
    let topic = Topic::by_name(topic_name).expect("catalogue topic");
    let event_id = pushflow_schemas::new_event_id();
    let value = Value::Record(vec![
        ("event_id".into(), event_id_value(&event_id)),
        (
            "occurred_at".into(),
            Value::TimestampMillis(pushflow_schemas::now_millis()),
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
    #[allow(dead_code)]
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
    let topic = Topic::by_name("subscription.created").expect("catalogue topic");
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

//! The HTTP routes, their shared state and the produce path every route
//! that writes goes through (encode, send, wait for the broker's ack within
//! `produce_timeout`, else 503 with `Retry-After`).

use apache_avro::types::Value;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{body::Bytes, Json, Router};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::kafka::{Delivery, Producer};
use pushflow_runtime::token::PingKeys;
use pushflow_schemas::Topic;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::AuthError;
use crate::batches::{Batches, Outcome};
use crate::config::{CorsOrigins, IngestConfig};
use crate::ratelimit::RateLimiter;
use crate::records::{parse_body, prepare, BodyKind};

/// What the routes need besides the settings.
#[derive(Clone)]
pub struct Deps {
    /// The idempotent producer (its delivery timeout should be the
    /// settings' `produce_timeout`).
    pub producer: Producer,
    /// Avro in the Confluent wire format.
    pub codec: Arc<Codec>,
    /// Keys that verify ping tokens.
    pub ping_keys: PingKeys,
    /// Prepended to every Kafka topic name written (tests and benchmarks
    /// write to their own topics); empty in production.
    pub topic_prefix: String,
    /// Multi-record `/v1/events` batches, one transaction each.
    pub batches: Arc<Batches>,
}

pub(crate) struct AppState {
    pub(crate) cfg: IngestConfig,
    pub(crate) deps: Deps,
    limiter: Option<RateLimiter>,
}

/// A refusal: status, message, and `Retry-After` seconds for 429/503.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            retry_after: Some(1),
        }
    }

    /// Maps a body that could not be read (413 over the limit).
    pub(crate) fn from_body(e: BytesRejection, limit: usize) -> ApiError {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!("body larger than the limit of {limit} bytes (setting `max_body`)"),
            )
        } else {
            ApiError::new(status, e.body_text())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({"error": self.message}))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl AppState {
    /// Encodes `value` for `topic` (id from the registry, cached).
    pub(crate) async fn encode(
        &self,
        topic: &'static Topic,
        value: Value,
    ) -> Result<Vec<u8>, ApiError> {
        self.deps.codec.encode_value(topic, value).await.map_err(|e| {
            if e.is_retryable() {
                tracing::warn!(error = %e, topic = topic.name, "schema registry unavailable");
                ApiError::unavailable(format!("schema registry unavailable: {e}"))
            } else {
                tracing::error!(error = %e, topic = topic.name, "record passed validation but does not encode");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        })
    }

    /// Sends one encoded record; returns only after the broker's ack, or
    /// 503 once `produce_timeout` (plus a little slack) has passed.
    pub(crate) async fn send(
        &self,
        topic: &'static Topic,
        key: &str,
        payload: &[u8],
    ) -> Result<Delivery, ApiError> {
        let name = if self.deps.topic_prefix.is_empty() {
            std::borrow::Cow::Borrowed(topic.name)
        } else {
            std::borrow::Cow::Owned(format!("{}{}", self.deps.topic_prefix, topic.name))
        };
        let bound = self.cfg.produce_timeout + Duration::from_millis(500);
        let sent = tokio::time::timeout(
            bound,
            self.deps
                .producer
                .send(&name, Some(key.as_bytes()), payload, &[]),
        );
        match sent.await {
            Ok(Ok(d)) => {
                metrics::counter!("pushflow_records_out_total", "component" => "ingest", "topic" => topic.name)
                    .increment(1);
                Ok(d)
            }
            Ok(Err(e)) => {
                metrics::counter!("pushflow_records_failed_total", "component" => "ingest", "topic" => topic.name)
                    .increment(1);
                tracing::warn!(error = %e, topic = %name, "broker did not acknowledge");
                Err(ApiError::unavailable(format!(
                    "broker did not acknowledge: {e}; nothing was accepted, retry later"
                )))
            }
            Err(_) => {
                metrics::counter!("pushflow_records_failed_total", "component" => "ingest", "topic" => topic.name)
                    .increment(1);
                tracing::warn!(topic = %name, timeout_ms = bound.as_millis() as u64, "broker ack timed out");
                Err(ApiError::unavailable(format!(
                    "broker did not acknowledge within {:?}; retry later",
                    self.cfg.produce_timeout
                )))
            }
        }
    }
}

impl AppState {
    /// Writes a batch of records of `topic` in one Kafka transaction
    /// ([`crate::batches`]): all of them, or a 503 that says none was
    /// written (or, when the commit got no answer, that it is unknown).
    async fn send_batch(
        &self,
        topic: &'static Topic,
        encoded: &[(Vec<u8>, String, String)],
    ) -> Result<Vec<Delivery>, ApiError> {
        let name = format!("{}{}", self.deps.topic_prefix, topic.name);
        let records: Vec<(String, String, Vec<u8>)> = encoded
            .iter()
            .map(|(bytes, key, _)| (name.clone(), key.clone(), bytes.clone()))
            .collect();
        let n = records.len() as u64;
        let failed = |why: &str| {
            metrics::counter!("pushflow_records_failed_total", "component" => "ingest", "topic" => topic.name)
                .increment(n);
            tracing::warn!(topic = %name, records = n, why, "batch not acknowledged");
        };
        match self.deps.batches.write(&records).await {
            Outcome::Written(d) => {
                metrics::counter!("pushflow_records_out_total", "component" => "ingest", "topic" => topic.name)
                    .increment(n);
                Ok(d)
            }
            Outcome::NotWritten(why) => {
                failed(&why);
                Err(ApiError::unavailable(format!(
                    "{why}; the batch's transaction was aborted: none of its {n} records was \
                     written; retry the whole batch"
                )))
            }
            Outcome::Unknown(why) => {
                failed(&why);
                Err(ApiError::unavailable(format!(
                    "{why}; whether the batch's {n} records were written is unknown: retry the \
                     whole batch with the same event_ids (the lake keeps each event_id once)"
                )))
            }
        }
    }
}

/// The whole ingest router (without `/healthz` and `/metrics`, which the
/// component merges in).
pub fn router(cfg: IngestConfig, deps: Deps) -> Router {
    // Make sure the recorder exists before the first metric is emitted.
    let _ = pushflow_runtime::telemetry::prometheus();
    let max_body = cfg.max_body;
    let events_cors = match &cfg.cors_origins {
        CorsOrigins::None => None,
        CorsOrigins::Any => Some(AllowOrigin::any()),
        CorsOrigins::List(l) => Some(AllowOrigin::list(l.clone())),
    };
    let state = Arc::new(AppState {
        limiter: cfg.rate_limit.map(RateLimiter::new),
        cfg,
        deps,
    });
    let mut events = Router::new().route("/v1/events/{topic}", post(events));
    if let Some(origins) = events_cors {
        events = events.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::POST])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
        );
    }
    let public = Router::new()
        .route("/v1/pings", post(crate::pings::ping))
        .route("/v1/subscriptions", post(crate::pings::subscribe))
        .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::any())
                .allow_methods([Method::POST, Method::GET])
                .allow_headers([header::CONTENT_TYPE]),
        );
    Router::new()
        .route("/sw.js", get(crate::assets::sw_js))
        .route("/subscribe.js", get(crate::assets::subscribe_js))
        .route("/v1/vapid-public-key", get(vapid_key))
        .merge(events)
        .merge(public)
        .route_layer(middleware::from_fn_with_state(
            pushflow_runtime::http::RequestMetrics::of("ingest"),
            pushflow_runtime::http::track_requests,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn rate_limit(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let (Some(l), Some(ConnectInfo(addr))) = (
        &s.limiter,
        req.extensions().get::<ConnectInfo<SocketAddr>>(),
    ) {
        // Behind a trusted load balancer, the address it forwarded for.
        let ip = s.cfg.trusted_proxies.client_ip(addr.ip(), req.headers());
        if let Err(wait) = l.check(ip, Instant::now()) {
            metrics::counter!("pushflow_ingest_rate_limited_total").increment(1);
            return ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: format!("too many requests from {ip}; retry in {wait}s"),
                retry_after: Some(wait),
            }
            .into_response();
        }
    }
    next.run(req).await
}

async fn vapid_key(State(s): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    match &s.cfg.vapid_public_key {
        Some(k) => Ok(Json(json!({"public_key": k}))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no VAPID public key configured: give ingest dispatch's private key \
             (PUSHFLOW_VAPID_PRIVATE_KEY or PUSHFLOW_VAPID_PRIVATE_KEY_FILE) or the public \
             key (PUSHFLOW_VAPID_PUBLIC_KEY or `vapid_public_key`)",
        )),
    }
}

/// `POST /v1/events/{topic}`: validate every record, then produce all and
/// answer 201 with where the broker stored each.
async fn events(
    State(s): State<Arc<AppState>>,
    Path(topic_name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // `None`: anonymous (no token configured, `allow_anonymous`).
    let scope = if s.cfg.tokens.is_empty() && s.cfg.allow_anonymous {
        Ok(None)
    } else {
        s.cfg.tokens.check(auth, &topic_name).map(Some)
    };
    if let Err(e @ (AuthError::Missing | AuthError::Invalid)) = &scope {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()));
    }
    let topic = Topic::by_name(&topic_name).ok_or_else(|| {
        let known: Vec<&str> = pushflow_schemas::CATALOGUE.iter().map(|t| t.name).collect();
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown topic {topic_name:?}; known topics: {}",
                known.join(", ")
            ),
        )
    })?;
    if topic.is_billable() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} is billable and enters only as signed pings: the service worker posts \
                 POST /v1/pings {{\"type\": \"delivered\"|\"clicked\", \"token\": <ping_token>}}; \
                 /v1/events refuses it for every token",
                topic.name
            ),
        ));
    }
    let token = scope.map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.to_string()))?;
    let client = token.map_or("anonymous", |t| t.name());
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = BodyKind::from_content_type(ct).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type {ct:?} is not supported: send application/json or application/x-ndjson"),
        )
    })?;
    let body = body.map_err(|e| ApiError::from_body(e, s.cfg.max_body))?;
    let records = parse_body(kind, &body).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let now = pushflow_schemas::now_millis();
    let mut prepared = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        let p = prepare(topic, r, now)
            .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, format!("record {i}: {m}")))?;
        if let Some(t) = token {
            if let Some(why) = crate::auth::store_refusal(t, &p.store_id) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("record {i}: {why}"),
                ));
            }
        }
        prepared.push(p);
    }
    let mut encoded = Vec::with_capacity(prepared.len());
    for p in prepared {
        encoded.push((s.encode(topic, p.value).await?, p.key, p.event_id));
    }
    let deliveries = match encoded.as_slice() {
        [(bytes, key, _)] => vec![s.send(topic, key, bytes).await?],
        _ => s.send_batch(topic, &encoded).await?,
    };
    let out: Vec<serde_json::Value> = deliveries
        .iter()
        .zip(&encoded)
        .map(|(d, (_, _, event_id))| {
            json!({"partition": d.partition, "offset": d.offset, "event_id": event_id})
        })
        .collect();
    tracing::debug!(
        topic = topic.name,
        client,
        records = out.len(),
        "records produced"
    );
    Ok((StatusCode::CREATED, Json(json!({ "records": out }))))
}

//! `/healthz` and `/metrics` for every long-running component, and a small
//! helper to serve an axum router until shutdown.
//!
//! `/healthz` answers 200 while every registered check is healthy and 503
//! with the failing checks otherwise; `/metrics` is Prometheus text.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::{http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::RuntimeError;

/// Health of the components of a process, shared by all of them.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<String, Result<(), String>>>>,
}

impl Health {
    /// Marks `name` healthy.
    pub fn ok(&self, name: &str) {
        self.checks.lock().unwrap().insert(name.to_string(), Ok(()));
    }

    /// Marks `name` unhealthy, saying why.
    pub fn failing(&self, name: &str, why: impl Into<String>) {
        self.checks
            .lock()
            .unwrap()
            .insert(name.to_string(), Err(why.into()));
    }

    /// Whether every check is healthy, and the per-check status.
    pub fn report(&self) -> (bool, serde_json::Value) {
        let checks = self.checks.lock().unwrap();
        let healthy = checks.values().all(|c| c.is_ok());
        let detail: serde_json::Map<String, serde_json::Value> = checks
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Ok(()) => json!("ok"),
                    Err(e) => json!(e),
                };
                (k.clone(), v)
            })
            .collect();
        (
            healthy,
            json!({"status": if healthy {"ok"} else {"failing"}, "checks": detail}),
        )
    }
}

/// The metric names of one HTTP service, made once when its router is
/// built (not per request).
#[derive(Debug, Clone, Copy)]
pub struct RequestMetrics {
    service: &'static str,
    duration: &'static str,
    total: &'static str,
}

impl RequestMetrics {
    /// The names of `service` (`ingest`, `dashboard`):
    /// `pushflow_<service>_requests_total` and
    /// `pushflow_<service>_request_duration_seconds`.
    pub fn of(service: &'static str) -> RequestMetrics {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        RequestMetrics {
            service,
            duration: leak(format!("pushflow_{service}_request_duration_seconds")),
            total: leak(format!("pushflow_{service}_requests_total")),
        }
    }
}

/// The `status` label: a static string for the statuses the services
/// answer with, so the hot path does not format one per request.
fn status_label(status: u16) -> metrics::SharedString {
    const KNOWN: [(u16, &str); 14] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (413, "413"),
        (415, "415"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    match KNOWN.iter().find(|(code, _)| *code == status) {
        Some((_, label)) => metrics::SharedString::const_str(label),
        None => metrics::SharedString::from(status.to_string()),
    }
}

/// Request metrics of one HTTP service: as a
/// `middleware::from_fn_with_state(RequestMetrics::of(service), …)` route
/// layer, counts requests by route and status
/// (`pushflow_<service>_requests_total`) and times them
/// (`pushflow_<service>_request_duration_seconds`, by route).
pub async fn track_requests(
    State(names): State<RequestMetrics>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    tracing::debug!(service = names.service, route = %route, status, elapsed_us = elapsed.as_micros() as u64, "request");
    metrics::histogram!(names.duration, "route" => route.clone()).record(elapsed.as_secs_f64());
    metrics::counter!(names.total, "route" => route, "status" => status_label(status)).increment(1);
    res
}

/// A router with `GET /healthz` and `GET /metrics`, to merge into a
/// service's own router or to serve alone.
pub fn admin_router(health: Health) -> Router {
    let handle = crate::telemetry::prometheus();
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let health = health.clone();
                async move {
                    let (ok, body) = health.report();
                    let code = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (code, Json(body))
                }
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    handle.render(),
                )
                    .into_response()
            }),
        )
}

/// Binds `addr` (fails fast, naming it) and serves `router` until
/// `shutdown` is cancelled, then finishes in-flight requests.
pub async fn bind(addr: &str) -> Result<TcpListener, RuntimeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Http {
            addr: addr.to_string(),
            source,
        })
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .map_err(|source| RuntimeError::Http { addr, source })
}

//! The HTTP routes: the merchant API (`/api/v1`, JSON, bearer tokens
//! scoped to stores), its SVG charts, and the page ([`crate::page`]).
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /api/v1/stores/{store}/campaigns[?window=1h]` | `{"campaigns": [<campaign>…]}`, newest first |
//! | `GET /api/v1/stores/{store}/campaigns/{campaign}[?window=1m]` | `<campaign>` with its `series` |
//! | `GET /api/v1/stores/{store}/campaigns/{campaign}/chart.svg[?window=&width=]` | the series as SVG |
//! | `GET /api/v1/stores/{store}/subscribers?from=YYYY-MM-DD&to=YYYY-MM-DD` | `{"days": [{"day", "subscribed", "expired", "active"}]}` |
//! | `GET /api/v1/stores/{store}/subscribers/chart.svg[?from=&to=&width=]` | the days as SVG |
//! | `GET /api/v1/stores/{store}/billing?month=YYYY-MM` | `{"month", "impressions", "clicks"}` |
//!
//! `<campaign>` is `campaign_id, title, status, created_at, scheduled_at,
//! launched_at, cancelled_at, throttle_per_minute, audience, dispatched,
//! failed, expired, delivered, clicked, ctr, window, series` (see
//! [`crate::store::Campaign`]); times are RFC 3339 in UTC. `series` holds
//! one point per window of the aggregate (`start`, `delivered`,
//! `clicked`), late pings left out; `delivered` and `clicked` include them,
//! so the series sums to the totals unless pings came beyond the window's
//! grace. Omitted parameters: the default window (settings' first), the
//! last 30 UTC days ending today, this UTC month.
//!
//! Every `/api/v1` answer needs `Authorization: Bearer <token>`: 401
//! without one (or with an unknown one), 403 when the token does not cover
//! the store. Bad parameters get 400, an unknown campaign 404, each with
//! `{"error": "<what to fix>"}`; tables not there yet (their component has
//! not started) or Postgres down: 503.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Datelike, NaiveDate, Utc};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{DashboardConfig, Window};
use crate::store::{Campaign, Store};
use crate::{chart, page, DashboardError};

/// Days `/subscribers` covers when `from` is omitted.
const DEFAULT_DAYS: i64 = 30;
/// Chart width when the page does not say.
const DEFAULT_WIDTH: u32 = 720;

/// What every route shares.
pub struct App {
    /// Checked settings.
    pub cfg: DashboardConfig,
    /// The read-only SQL.
    pub store: Store,
    /// The page with its settings filled in.
    page: String,
}

impl App {
    /// The routes' state.
    pub fn new(cfg: DashboardConfig, store: Store) -> Arc<App> {
        let page = page::index(&cfg);
        Arc::new(App { cfg, store, page })
    }
}

/// A refusal: status and what to fix, answered as `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<DashboardError> for ApiError {
    fn from(e: DashboardError) -> ApiError {
        let status = match &e {
            DashboardError::NotReady { .. } | DashboardError::Pool(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match status {
            StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %e, "dashboard query failed")
            }
            _ => tracing::warn!(error = %e, "dashboard cannot answer yet"),
        }
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({"error": self.message}))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pushflow\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        res
    }
}

/// The routes, `/healthz` and `/metrics` not included (the component
/// merges the runtime's).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page::serve_index))
        .route("/assets/{file}", get(page::serve_asset))
        .route("/api/v1/stores/{store}/campaigns", get(campaigns))
        .route("/api/v1/stores/{store}/campaigns/{campaign}", get(campaign))
        .route(
            "/api/v1/stores/{store}/campaigns/{campaign}/chart.svg",
            get(campaign_chart),
        )
        .route("/api/v1/stores/{store}/subscribers", get(subscribers))
        .route(
            "/api/v1/stores/{store}/subscribers/chart.svg",
            get(subscribers_chart),
        )
        .route("/api/v1/stores/{store}/billing", get(billing))
        .fallback(not_found)
        .route_layer(middleware::from_fn_with_state(
            pushflow_runtime::http::RequestMetrics::of("dashboard"),
            pushflow_runtime::http::track_requests,
        ))
        .with_state(app)
}

impl App {
    /// The page, as served at `/`.
    pub(crate) fn page(&self) -> &str {
        &self.page
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route: the API is GET /api/v1/stores/{store}/campaigns[/{campaign}], \
         /api/v1/stores/{store}/subscribers?from=YYYY-MM-DD&to=YYYY-MM-DD, \
         /api/v1/stores/{store}/billing?month=YYYY-MM; the page is GET /",
    )
}

/// 401 without a known token, 403 when it does not cover `store`.
fn authorize(app: &App, headers: &HeaderMap, store: &str) -> Result<(), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = app
        .cfg
        .tokens
        .authenticate(auth)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    token
        .check_store(store)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.to_string()))
}

type Params = Query<HashMap<String, String>>;

fn window<'a>(app: &'a App, q: &HashMap<String, String>) -> Result<&'a Window, ApiError> {
    app.cfg
        .window(q.get("window").map(String::as_str))
        .map_err(ApiError::bad)
}

fn width(q: &HashMap<String, String>) -> Result<u32, ApiError> {
    match q.get("width") {
        None => Ok(DEFAULT_WIDTH),
        Some(w) => w.parse::<u32>().map_err(|_| {
            ApiError::bad(format!(
                "width {w:?}: write the chart's width in CSS pixels, e.g. 720"
            ))
        }),
    }
}

async fn one_campaign(
    app: &App,
    store: &str,
    id: &str,
    window: &Window,
) -> Result<Campaign, ApiError> {
    app.store
        .campaigns(store, Some(id), window, app.cfg.totals_window())
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "store {store:?} has no campaign {id:?} (GET /api/v1/stores/{{store}}/campaigns lists them)"
                ),
            )
        })
}

async fn campaigns(
    State(app): State<Arc<App>>,
    Path(store): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&app, &headers, &store)?;
    let window = window(&app, &q)?;
    let list = app
        .store
        .campaigns(&store, None, window, app.cfg.totals_window())
        .await?;
    Ok(Json(json!({ "campaigns": list })))
}

async fn campaign(
    State(app): State<Arc<App>>,
    Path((store, id)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Json<Campaign>, ApiError> {
    authorize(&app, &headers, &store)?;
    let window = window(&app, &q)?;
    Ok(Json(one_campaign(&app, &store, &id, window).await?))
}

fn svg(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn campaign_chart(
    State(app): State<Arc<App>>,
    Path((store, id)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, &store)?;
    let window = window(&app, &q)?;
    let width = width(&q)?;
    let c = one_campaign(&app, &store, &id, window).await?;
    Ok(svg(chart::campaign(&c, width)))
}

/// `YYYY-MM-DD`, strictly.
fn day(name: &str, value: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|_| value.len() == 10)
        .ok_or_else(|| {
            ApiError::bad(format!(
                "{name} {value:?}: write a UTC day as YYYY-MM-DD, e.g. 2026-05-01"
            ))
        })
}

/// `from` and `to` of `/subscribers`, checked: both days, `from` ≤ `to`,
/// at most `max_days` apart.
fn range(app: &App, q: &HashMap<String, String>) -> Result<(String, String), ApiError> {
    let to = match q.get("to") {
        Some(t) => day("to", t)?,
        None => Utc::now().date_naive(),
    };
    let from = match q.get("from") {
        Some(f) => day("from", f)?,
        None => to - chrono::Duration::days(DEFAULT_DAYS - 1),
    };
    if from > to {
        return Err(ApiError::bad(format!(
            "from {from} is after to {to}: give from ≤ to"
        )));
    }
    let days = (to - from).num_days() + 1;
    if days > i64::from(app.cfg.max_days) {
        return Err(ApiError::bad(format!(
            "from {from} to {to} is {days} days; ask for at most {} at once",
            app.cfg.max_days
        )));
    }
    Ok((from.to_string(), to.to_string()))
}

async fn subscribers(
    State(app): State<Arc<App>>,
    Path(store): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&app, &headers, &store)?;
    let (from, to) = range(&app, &q)?;
    let days = app.store.subscribers(&store, &from, &to).await?;
    Ok(Json(json!({ "from": from, "to": to, "days": days })))
}

async fn subscribers_chart(
    State(app): State<Arc<App>>,
    Path(store): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&app, &headers, &store)?;
    let (from, to) = range(&app, &q)?;
    let width = width(&q)?;
    let days = app.store.subscribers(&store, &from, &to).await?;
    Ok(svg(chart::subscribers(&store, &days, width)))
}

/// `YYYY-MM`, strictly; this UTC month when omitted.
fn month(q: &HashMap<String, String>) -> Result<String, ApiError> {
    let Some(m) = q.get("month") else {
        let now = Utc::now();
        return Ok(format!("{:04}-{:02}", now.year(), now.month()));
    };
    NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
        .ok()
        .filter(|_| m.len() == 7)
        .map(|_| m.clone())
        .ok_or_else(|| {
            ApiError::bad(format!(
                "month {m:?}: write the month as YYYY-MM, e.g. 2026-05"
            ))
        })
}

async fn billing(
    State(app): State<Arc<App>>,
    Path(store): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> Result<Json<crate::store::Billing>, ApiError> {
    authorize(&app, &headers, &store)?;
    let month = month(&q)?;
    Ok(Json(app.store.billing(&store, &month).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn months_and_days_are_strict() {
        assert_eq!(month(&q(&[("month", "2026-05")])).unwrap(), "2026-05");
        for bad in ["2026-13", "2026-5", "26-05", "2026-05-01", "may"] {
            let e = month(&q(&[("month", bad)])).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains("YYYY-MM"), "{bad}: {}", e.message);
        }
        assert_eq!(month(&q(&[])).unwrap().len(), 7);
        assert!(day("from", "2026-02-28").is_ok());
        for bad in ["2026-02-30", "2026-2-1", "20260201", "yesterday"] {
            assert!(day("from", bad).is_err(), "{bad}");
        }
        assert_eq!(width(&q(&[("width", "390")])).unwrap(), 390);
        assert!(width(&q(&[("width", "wide")])).is_err());
    }
}

//! The dashboard page: `assets/` (HTML, CSS, JavaScript written for this
//! page, no third-party code) compiled into the binary. The page calls the
//! same `/api/v1` routes a merchant's own tools do, with the token typed in
//! once (kept in the browser's localStorage) or given as `?token=` for
//! local use, and draws the server's SVG charts; it reloads its numbers
//! every `refresh_interval` while it is visible.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::api::App;
use crate::config::DashboardConfig;

/// The page's HTML; `__REFRESH_MS__` and `__WINDOWS__` are filled in.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// Its script.
pub const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");
/// Its styles.
pub const DASHBOARD_CSS: &str = include_str!("../assets/dashboard.css");

/// Only the page's own files: no inline script, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The page with `cfg`'s refresh interval and windows filled in.
pub fn index(cfg: &DashboardConfig) -> String {
    let windows: Vec<&str> = cfg.windows.iter().map(|w| w.name.as_str()).collect();
    INDEX_HTML
        .replace("__REFRESH_MS__", &cfg.refresh.as_millis().to_string())
        .replace("__WINDOWS__", &windows.join(","))
}

fn with_headers(content_type: &'static str, body: String) -> Response {
    let mut res = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The URL may carry ?token=: never send it on as a referrer.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// `GET /`.
pub(crate) async fn serve_index(State(app): State<Arc<App>>) -> Response {
    with_headers("text/html; charset=utf-8", app.page().to_string())
}

/// `GET /assets/{file}`.
pub(crate) async fn serve_asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "dashboard.js" => with_headers("text/javascript; charset=utf-8", DASHBOARD_JS.to_string()),
        "dashboard.css" => with_headers("text/css; charset=utf-8", DASHBOARD_CSS.to_string()),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

//! `GET /sw.js` and `GET /subscribe.js`: the service worker and the
//! subscribe snippet, with this ingest's origin filled in (from `Host` and
//! `X-Forwarded-Proto`) so a merchant's page and worker can load them
//! cross-origin (`importScripts("https://ingest…/sw.js")`).

use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;

/// The service worker's source (`__PUSHFLOW_INGEST_ORIGIN__` is replaced
/// when served).
pub const SW_JS: &str = include_str!("assets/sw.js");
/// The subscribe snippet's source.
pub const SUBSCRIBE_JS: &str = include_str!("assets/subscribe.js");

fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{proto}://{host}")
}

fn js(source: &str, headers: &HeaderMap) -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        source.replace("__PUSHFLOW_INGEST_ORIGIN__", &origin(headers)),
    )
}

pub(crate) async fn sw_js(headers: HeaderMap) -> impl IntoResponse {
    js(SW_JS, &headers)
}

pub(crate) async fn subscribe_js(headers: HeaderMap) -> impl IntoResponse {
    js(SUBSCRIBE_JS, &headers)
}

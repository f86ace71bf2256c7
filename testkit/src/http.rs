//! Small HTTP client helpers for tests of the services that answer HTTP
//! (ingest, the dashboard, the registry).

use serde_json::Value;

/// GETs `url` and parses the body as JSON, whatever the status.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    get(http, url)
        .await
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: the body is not JSON: {e}"))
}

/// GETs `url` and returns the body as text, whatever the status.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    get(http, url)
        .await
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: the body is not text: {e}"))
}

async fn get(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Sends `request`, asserts the answer is 200 with a `Content-Type` that
/// starts with `content_type`, and returns its body as text.
pub async fn ok_body(request: reqwest::RequestBuilder, content_type: &str) -> String {
    let r = request.send().await.expect("HTTP request");
    let url = r.url().to_string();
    assert_eq!(r.status(), 200, "{url}");
    let got = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    assert!(
        got.starts_with(content_type),
        "{url}: content type {got:?}, expected {content_type}"
    );
    r.text().await.unwrap()
}

/// The series of a dashboard API chart (`{"series": [{"start", "delivered",
/// "clicked"}, …]}`) in order: (start, delivered, clicked).
pub fn chart_series(chart: &Value) -> Vec<(String, i64, i64)> {
    let int = |p: &Value, field: &str| {
        p[field]
            .as_i64()
            .unwrap_or_else(|| panic!("{field} of {p} is not an integer"))
    };
    chart["series"]
        .as_array()
        .unwrap_or_else(|| panic!("no series in {chart}"))
        .iter()
        .map(|p| {
            (
                p["start"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no start in {p}"))
                    .to_string(),
                int(p, "delivered"),
                int(p, "clicked"),
            )
        })
        .collect()
}

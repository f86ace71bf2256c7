//! The page side of `sw.js`: its ping function posts `{type, token}` to
//! ingest's `/v1/pings` and retries failures with backoff, but not refusals.
//! Run in headless Chromium (Debian's `chromium` package) when it is
//! installed, else in `node` (the test says which).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Html;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Seen {
    pings: Vec<(String, Value)>,
}

type Shared = Arc<Mutex<Seen>>;

async fn pings(State(seen): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut s = seen.lock().unwrap();
    s.pings.push((ct, v.clone()));
    let tries = s
        .pings
        .iter()
        .filter(|(_, p)| p["token"] == v["token"])
        .count();
    match v["token"].as_str() {
        Some("tok-bad") => StatusCode::UNAUTHORIZED,
        // The first two attempts of a good ping fail: the worker must retry.
        Some(_) if tries <= 2 => StatusCode::SERVICE_UNAVAILABLE,
        Some(_) => StatusCode::ACCEPTED,
        None => StatusCode::BAD_REQUEST,
    }
}

const PAGE: &str = r#"<!doctype html><html><body><pre id="out">pending</pre>
<script src="/sw.js"></script>
<script>
(async () => {
  const a = await pushflowSendPing('delivered', 'tok-good', { baseDelayMs: 20 });
  const b = await pushflowSendPing('clicked', 'tok-bad', { baseDelayMs: 20 });
  document.getElementById('out').textContent = 'RESULT' + JSON.stringify([a, b]) + 'END';
})();
</script></body></html>"#;

async fn serve() -> (String, Shared) {
    let seen: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let sw = pushflow_ingest::SW_JS.replace("__PUSHFLOW_INGEST_ORIGIN__", &origin);
    let app = Router::new()
        .route("/test.html", get(|| async { Html(PAGE) }))
        .route(
            "/sw.js",
            get(move || async move { ([("content-type", "application/javascript")], sw) }),
        )
        .route("/v1/pings", post(pings))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (origin, seen)
}

async fn run_chromium(origin: &str) -> String {
    let dir = std::env::temp_dir().join(pushflow_testkit::unique("ingest-chromium"));
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("/usr/bin/chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=20000",
                &format!("--user-data-dir={}", dir.display()),
                "--dump-dom",
                &format!("{origin}/test.html"),
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished within 90 s")
    .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn run_node(origin: &str) -> String {
    let sw = pushflow_ingest::SW_JS.replace("__PUSHFLOW_INGEST_ORIGIN__", origin);
    let script = format!(
        "globalThis.self = globalThis;\n{sw}\n(async () => {{\n  const a = await pushflowSendPing('delivered', 'tok-good', {{ baseDelayMs: 20 }});\n  const b = await pushflowSendPing('clicked', 'tok-bad', {{ baseDelayMs: 20 }});\n  console.log('RESULT' + JSON.stringify([a, b]) + 'END');\n}})();\n"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("node")
            .args(["-e", &script])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node finished within 60 s")
    .expect("node (v18+) is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn sw_js_posts_pings_and_retries_failures_but_not_refusals() {
    let (origin, seen) = serve().await;
    let (engine, out) = if std::path::Path::new("/usr/bin/chromium").exists() {
        ("headless chromium", run_chromium(&origin).await)
    } else {
        ("node (chromium not installed)", run_node(&origin).await)
    };
    check(engine, &out, &seen);
}

#[tokio::test]
async fn sw_js_ping_logic_also_runs_in_node() {
    let (origin, seen) = serve().await;
    let out = run_node(&origin).await;
    check("node", &out, &seen);
}

fn check(engine: &str, out: &str, seen: &Shared) {
    println!("sw.js ran in {engine}");
    let json = out
        .split("RESULT")
        .nth(1)
        .and_then(|r| r.split("END").next())
        .unwrap_or_else(|| panic!("{engine} printed no result: {out}"));
    let json = json.replace("&quot;", "\"");
    let results: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(results[0]["ok"], true, "{results}");
    assert_eq!(results[0]["attempts"], 3, "two 503s, then 202: {results}");
    assert_eq!(results[0]["status"], 202);
    assert_eq!(results[1]["ok"], false);
    assert_eq!(results[1]["attempts"], 1, "a 401 is not retried: {results}");
    assert_eq!(results[1]["status"], 401);
    let s = seen.lock().unwrap();
    assert_eq!(s.pings.len(), 4, "{:?}", s.pings);
    for (ct, body) in &s.pings[..3] {
        assert!(ct.starts_with("application/json"), "{ct}");
        assert_eq!(
            body,
            &serde_json::json!({"type": "delivered", "token": "tok-good"})
        );
    }
    assert_eq!(
        s.pings[3].1,
        serde_json::json!({"type": "clicked", "token": "tok-bad"})
    );
}

//! Debian's Chromium (`/usr/bin/chromium`), headless, driven over the
//! DevTools protocol (CDP) on a WebSocket: no other browser or runtime
//! stands in for it. Without it the test fails, saying to install it.
//!
//! Bounded and self-cleaning: every wait has a limit, every CDP call
//! times out, and dropping [`Chromium`] kills the browser, waits for it and
//! removes its fresh profile directory.
//!
//! Used by ingest's service-worker tests and the dashboard's page tests.

use base64::Engine;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Debian's `chromium` package puts it here; CI installs it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one CDP call may take.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// A headless Chromium with its own fresh profile; killed on drop.
pub struct Chromium {
    child: Child,
    dir: PathBuf,
    /// The browser's DevTools WebSocket URL.
    pub ws_url: String,
}

impl Chromium {
    /// Starts `/usr/bin/chromium --headless=new` on a fresh profile with
    /// `--remote-debugging-port=0` and reads the port it chose from the
    /// profile's `DevToolsActivePort` file. Panics (failing the test) when
    /// Chromium is not installed or does not come up within 30 s.
    pub fn launch() -> Chromium {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: these tests drive the real service worker in Debian's \
             Chromium and have no fallback; install it with `apt-get install chromium` \
             (CI's .ci/run does)"
        );
        let dir = std::env::temp_dir().join(crate::unique("chromium"));
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        let log = std::fs::File::create(dir.join("chromium.log")).unwrap();
        let child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                &format!("--user-data-dir={}", profile.display()),
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMIUM} does not start: {e}"));
        let mut chromium = Chromium {
            child,
            dir,
            ws_url: String::new(),
        };
        let port_file = profile.join("DevToolsActivePort");
        let started = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    chromium.ws_url = format!("ws://127.0.0.1:{port}{path}");
                    return chromium;
                }
            }
            if let Ok(Some(status)) = chromium.child.try_wait() {
                panic!(
                    "chromium exited with {status} before opening DevTools: {}",
                    chromium.log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromium wrote no DevToolsActivePort within 30 s: {}",
                chromium.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of Chromium's stderr, for failure messages.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("chromium.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A CDP connection to the browser target.
    pub async fn connect(&self) -> Cdp {
        Cdp::connect(&self.ws_url).await
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its helper processes (zygote, renderers, crash handler) notice
        // the browser is gone and exit a moment later, still writing to the
        // profile meanwhile: retry until the directory is gone (≤ 10 s).
        let started = Instant::now();
        while self.dir.exists() && started.elapsed() < Duration::from_secs(10) {
            if std::fs::remove_dir_all(&self.dir).is_err() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// A DevTools protocol client: calls with ids, events kept in arrival
/// order. Sessions (from `Target.attachToTarget` with `flatten`) are
/// addressed by `sessionId` on the same socket.
pub struct Cdp {
    sink: tokio::sync::Mutex<Sink>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    events: Arc<Mutex<Vec<Value>>>,
    next: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Cdp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let (ws, _) = tokio::time::timeout(CALL_LIMIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("DevTools WebSocket connects within 30 s")
            .unwrap_or_else(|e| panic!("DevTools WebSocket {url}: {e}"));
        let (sink, mut stream) = ws.split();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let reader = {
            let (pending, events) = (pending.clone(), events.clone());
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    match v["id"].as_u64() {
                        Some(id) => {
                            if let Some(tx) = pending.lock().unwrap().remove(&id) {
                                let _ = tx.send(v);
                            }
                        }
                        None => events.lock().unwrap().push(v),
                    }
                }
            })
        };
        Cdp {
            sink: tokio::sync::Mutex::new(sink),
            pending,
            events,
            next: AtomicU64::new(1),
            reader,
        }
    }

    /// Calls `method` (in `session`, or on the browser) and returns its
    /// `result`; panics on a protocol error or after 30 s.
    pub async fn call(&self, method: &str, params: Value, session: Option<&str>) -> Value {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.sink
            .lock()
            .await
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap_or_else(|e| panic!("CDP {method}: send failed: {e}"));
        let answer = tokio::time::timeout(CALL_LIMIT, rx)
            .await
            .unwrap_or_else(|_| panic!("CDP {method}: no answer within {CALL_LIMIT:?}"))
            .unwrap_or_else(|_| panic!("CDP {method}: the connection closed"));
        if let Some(e) = answer.get("error") {
            panic!("CDP {method} {params}: {e}", params = msg["params"]);
        }
        answer["result"].clone()
    }

    /// Evaluates `expression` in `session` (awaiting a promise) and returns
    /// its value; panics when it threw.
    pub async fn evaluate(&self, session: &str, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
                Some(session),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Attaches to `target_id` and returns the session id.
    pub async fn attach(&self, target_id: &str) -> String {
        let r = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
                None,
            )
            .await;
        r["sessionId"].as_str().unwrap().to_string()
    }

    /// Opens a new page on `about:blank` and returns its session id.
    pub async fn new_page(&self) -> String {
        let r = self
            .call("Target.createTarget", json!({"url": "about:blank"}), None)
            .await;
        self.attach(r["targetId"].as_str().unwrap()).await
    }

    /// Navigates the page of `session` to `url` and waits for its load
    /// event.
    pub async fn navigate(&self, session: &str, url: &str) {
        self.call("Page.enable", json!({}), Some(session)).await;
        let seen = self.events.lock().unwrap().len();
        let r = self
            .call("Page.navigate", json!({"url": url}), Some(session))
            .await;
        assert!(r.get("errorText").is_none(), "navigating to {url}: {r}");
        self.wait_event(&format!("the load event of {url}"), |i, e| {
            (i >= seen && e["method"] == "Page.loadEventFired" && e["sessionId"] == session)
                .then_some(())
        })
        .await;
    }

    /// Emulates a viewport of `width` × `height` CSS pixels (device scale
    /// 1) for the page of `session`, e.g. 390 wide for a phone.
    pub async fn set_viewport(&self, session: &str, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            Some(session),
        )
        .await;
    }

    /// A PNG of the page of `session`; `full_page` captures beyond the
    /// viewport (the whole document's height).
    pub async fn screenshot(&self, session: &str, full_page: bool) -> Vec<u8> {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": full_page}),
                Some(session),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64")
    }

    /// Evaluates `expression` in `session` every 100 ms until it gives a
    /// value other than `null` / `false`, and returns it; panics naming
    /// `what` (with the last value) after `limit`.
    pub async fn wait_for(
        &self,
        session: &str,
        what: &str,
        limit: Duration,
        expression: &str,
    ) -> Value {
        let started = Instant::now();
        loop {
            let v = self.evaluate(session, expression).await;
            if !(v.is_null() || v == Value::Bool(false)) {
                return v;
            }
            assert!(
                started.elapsed() < limit,
                "{what}: not within {limit:?} ({expression} gave {v})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most 30 s) for the first event, in arrival order, for
    /// which `f(index, event)` is `Some`.
    pub async fn wait_event<T>(&self, what: &str, f: impl Fn(usize, &Value) -> Option<T>) -> T {
        until(what, CALL_LIMIT, || {
            self.events
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .find_map(|(i, e)| f(i, e))
        })
        .await
    }
}

/// Polls `f` every 50 ms until it gives `Some`; panics naming `what` after
/// `limit`.
pub async fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

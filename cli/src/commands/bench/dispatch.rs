//! `pushflow bench dispatch`: notifications per second sent and confirmed
//! against push-sim on loopback, the CPU per message and its breakdown,
//! and the web-push crate used the plain way (a fresh VAPID signature per
//! message, OpenSSL `ece` encryption) as the baseline, in the same run.
//!
//! CPU is read from `/proc/self/task/*/schedstat` (nanoseconds on CPU);
//! push-sim runs as a separate process, so its CPU is not counted.

use futures::StreamExt;
use pushflow_dispatch::send::{topic_of, Payload};
use pushflow_dispatch::sender::{Outcome, Push, Sender, SenderConfig};
use pushflow_dispatch::vapid::{VapidCache, VapidKey};
use pushflow_dispatch::{rfc8291, DispatchError};
use pushflow_runtime::token::{PingClaims, PingKeys};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `pushflow bench dispatch` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Notifications sent the pushflow way.
    #[arg(long, default_value_t = 20_000)]
    pub notifications: usize,
    /// Notifications sent the plain web-push way (baseline).
    #[arg(long, default_value_t = 4_000)]
    pub baseline_notifications: usize,
    /// Distinct simulated subscribers (reused round-robin).
    #[arg(long, default_value_t = 1_000)]
    pub subscribers: usize,
    /// Requests in flight to the push service.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// A running push-sim to use (default: start `pushflow push-sim` as a
    /// child process on a free loopback port).
    #[arg(long)]
    pub sim: Option<String>,
}

/// CPU time of the whole process so far, ns (sum over its threads).
pub fn process_cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// CPU time of the calling thread so far, ns.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// One subscription of the simulator.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SimSubscription {
    /// Id.
    pub subscriber_id: String,
    /// Endpoint.
    pub endpoint: String,
    /// Key.
    pub p256dh: String,
    /// Secret.
    pub auth: String,
}

fn err(m: impl std::fmt::Display) -> DispatchError {
    DispatchError::Config(format!("bench: {m}"))
}

/// push-sim started as a child process (killed on drop), or `None` for
/// one that was already running.
pub struct SimChild(Option<std::process::Child>);

impl SimChild {
    /// The child's process id.
    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(std::process::Child::id)
    }
}

impl Drop for SimChild {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A push-sim (`sim`, or a child process on a free loopback port) and its
/// origin.
pub async fn start_sim(
    sim: Option<&str>,
    http: &reqwest::Client,
) -> Result<(String, SimChild), DispatchError> {
    if let Some(s) = sim {
        return Ok((s.trim_end_matches('/').to_string(), SimChild(None)));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(err)?
        .port();
    let exe = std::env::current_exe().map_err(err)?;
    let child = std::process::Command::new(exe)
        .args([
            "push-sim",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--verify-sample",
            "0.01",
            "--no-keep-raw",
            "--no-publish",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| err(format!("cannot start push-sim: {e}")))?;
    let origin = format!("http://127.0.0.1:{port}");
    let guard = SimChild(Some(child));
    for _ in 0..100 {
        if http.get(format!("{origin}/sim/stats")).send().await.is_ok() {
            return Ok((origin, guard));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(err("push-sim did not start"))
}

/// The payload of notification `i` to `sub`, its ping token minted.
fn payload(keys: &PingKeys, sub: &SimSubscription, i: usize) -> Vec<u8> {
    let nid = pushflow_dispatch::notification_id(
        "bench-store",
        "bench-campaign",
        &format!("{}-{i}", sub.subscriber_id),
    );
    let token = keys.mint(&PingClaims {
        notification_id: nid.clone(),
        campaign_id: "bench-campaign".into(),
        store_id: "bench".into(),
        subscriber_id: sub.subscriber_id.clone(),
        exp: 2_000_000_000,
        iat: Some(1_700_000_000),
    });
    serde_json::to_vec(&Payload {
        notification_id: &nid,
        campaign_id: "bench-campaign",
        title: "Winter sale",
        body: "Everything -30 % until Sunday, in every store and online",
        icon: Some("https://shop.example/icon.png"),
        url: "https://shop.example/sale?utm_source=push",
        ping_token: token,
    })
    .unwrap_or_default()
}

/// A sender as the benches use it: one attempt per push, `concurrency`
/// in flight, plain HTTP to push-sim allowed.
pub fn bench_sender(
    vapid: Arc<VapidKey>,
    subject: &str,
    concurrency: usize,
) -> Result<Sender, DispatchError> {
    Sender::new(
        VapidCache::new(vapid, subject, Duration::from_secs(12 * 3600)),
        SenderConfig {
            concurrency_per_origin: concurrency,
            request_timeout: Duration::from_secs(10),
            max_attempts: 1,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            allow_insecure: true,
        },
    )
}

/// Per-message CPU of one step, measured on this thread over `n` runs, µs.
pub fn micro(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let (c0, t0) = (thread_cpu_ns(), Instant::now());
    for i in 0..n {
        f(i);
    }
    let cpu = thread_cpu_ns().saturating_sub(c0);
    let ns = if cpu > 0 {
        cpu
    } else {
        t0.elapsed().as_nanos() as u64
    };
    ns as f64 / n as f64 / 1000.0
}

/// Throughput and CPU of one end-to-end run.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Notifications sent.
    pub sent: usize,
    /// Of which the push service confirmed (2xx).
    pub confirmed: usize,
    /// Wall time.
    pub wall: Duration,
    /// CPU of this process per message, µs.
    pub cpu_us: f64,
}

impl Run {
    /// Confirmed notifications per second.
    pub fn rate(&self) -> f64 {
        self.confirmed as f64 / self.wall.as_secs_f64()
    }
}

/// Sends `n` notifications with `f`, `concurrency` at once.
async fn measure<F, Fut>(n: usize, concurrency: usize, label: &str, f: F) -> Run
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let bar = indicatif::ProgressBar::new(n as u64).with_message(label.to_string());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>10} {bar:40} {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (c0, t0) = (process_cpu_ns(), Instant::now());
    // Each send is a task of its own, as in dispatch: polled inside one
    // stream, every encryption would run on the one thread polling it.
    let confirmed = futures::stream::iter(0..n)
        .map(|i| tokio::spawn(f(i)))
        .buffer_unordered(concurrency)
        .fold(0usize, |acc, ok| {
            bar.inc(1);
            async move { acc + usize::from(ok.unwrap_or(false)) }
        })
        .await;
    let wall = t0.elapsed();
    let cpu = process_cpu_ns().saturating_sub(c0);
    bar.finish_and_clear();
    Run {
        sent: n,
        confirmed,
        wall,
        cpu_us: cpu as f64 / n as f64 / 1000.0,
    }
}

/// `count` fresh subscribers of `store` from push-sim at `origin`.
pub async fn sim_subscribers(
    http: &reqwest::Client,
    origin: &str,
    store: &str,
    count: usize,
) -> Result<Arc<Vec<SimSubscription>>, DispatchError> {
    let resp = http
        .post(format!("{origin}/sim/subscribers"))
        .json(&serde_json::json!({"store": store, "count": count}))
        .send()
        .await
        .map_err(err)?;
    let status = resp.status();
    let text = resp.text().await.map_err(err)?;
    if !status.is_success() {
        return Err(err(format!(
            "push-sim answered {status} to /sim/subscribers: {text}"
        )));
    }
    let resp: serde_json::Value = serde_json::from_str(&text).map_err(err)?;
    Ok(Arc::new(
        serde_json::from_value(resp["subscribers"].clone()).map_err(err)?,
    ))
}

/// push-sim's counters (`/sim/stats`).
pub async fn sim_stats(
    http: &reqwest::Client,
    origin: &str,
) -> Result<serde_json::Value, DispatchError> {
    http.get(format!("{origin}/sim/stats"))
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)
}

/// Sends `n` pushes with `sender` round-robin over `subs`, `concurrency`
/// at once (`(n, concurrency)`), each with its own payload and ping token.
pub async fn send_pushes(
    sender: &Sender,
    subs: &Arc<Vec<SimSubscription>>,
    keys: &PingKeys,
    (n, concurrency): (usize, usize),
    label: &str,
    topic: Option<String>,
) -> Run {
    measure(n, concurrency, label, |i| {
        let (sender, subs, keys, topic) =
            (sender.clone(), subs.clone(), keys.clone(), topic.clone());
        async move {
            let sub = &subs[i % subs.len()];
            let push = Push {
                endpoint: sub.endpoint.clone(),
                p256dh: sub.p256dh.clone(),
                auth: sub.auth.clone(),
                plaintext: payload(&keys, sub, i),
                ttl: 3600,
                urgency: "normal",
                topic,
            };
            matches!(sender.send(&push).await, Outcome::Accepted { .. })
        }
    })
    .await
}

/// Runs the benchmark and prints the report.
pub async fn run(args: &BenchArgs) -> Result<(), DispatchError> {
    let http = reqwest::Client::builder().build().map_err(err)?;
    let (origin, _child) = start_sim(args.sim.as_deref(), &http).await?;
    let subs = sim_subscribers(&http, &origin, "bench", args.subscribers).await?;
    let keys = PingKeys::from_env().map_err(err)?;
    let vapid = Arc::new(VapidKey::generate());
    let subject = "mailto:bench@pushflow.invalid";

    // Steps, one thread, per message.
    let m = 2000.min(args.notifications.max(1));
    let sub0 = &subs[0];
    let (p256dh, auth) = (
        pushflow_dispatch::sender::b64(&sub0.p256dh).unwrap_or_default(),
        pushflow_dispatch::sender::b64(&sub0.auth).unwrap_or_default(),
    );
    let body = payload(&keys, sub0, 0);
    let payload_us = micro(m, |i| drop(payload(&keys, sub0, i)));
    let encrypt_us = micro(m, |_| drop(rfc8291::encrypt(&p256dh, &auth, &body)));
    let sign_us = micro(m.min(500), |_| {
        drop(vapid.sign_jwt(&origin, subject, 2_000_000_000))
    });
    let info = web_push::SubscriptionInfo::new(
        sub0.endpoint.clone(),
        sub0.p256dh.clone(),
        sub0.auth.clone(),
    );
    let private = vapid.private_b64();
    let plain_build_us = micro(m.min(500), |_| {
        drop(plain_message(&info, &private, &origin, subject, &body))
    });
    let ece_crate_us = micro(m.min(500), |_| drop(ece::encrypt(&p256dh, &auth, &body)));

    // End to end, the pushflow way.
    let sender = bench_sender(vapid.clone(), subject, args.concurrency)?;
    let topic = topic_of("bench-campaign");
    let ours = send_pushes(
        &sender,
        &subs,
        &keys,
        (args.notifications, args.concurrency),
        "pushflow",
        Some(topic),
    )
    .await;

    // End to end, the plain way: the crate builds each message (fresh JWT).
    let plain = measure(
        args.baseline_notifications,
        args.concurrency,
        "plain",
        |i| {
            let (http, subs, keys, private, origin) = (
                http.clone(),
                subs.clone(),
                keys.clone(),
                private.clone(),
                origin.clone(),
            );
            async move {
                let sub = &subs[i % subs.len()];
                let info = web_push::SubscriptionInfo::new(
                    sub.endpoint.clone(),
                    sub.p256dh.clone(),
                    sub.auth.clone(),
                );
                let body = payload(&keys, sub, i);
                let Ok(msg) = plain_message(&info, &private, &origin, subject, &body) else {
                    return false;
                };
                let Some(p) = msg.payload else { return false };
                let mut req = http
                    .post(&sub.endpoint)
                    .header("ttl", msg.ttl.to_string())
                    .header("content-type", "application/octet-stream");
                for (k, v) in &p.crypto_headers {
                    req = req.header(*k, v);
                }
                req = req.header("content-encoding", p.content_encoding.to_str());
                matches!(req.body(p.content).send().await, Ok(r) if r.status().is_success())
            }
        },
    )
    .await;

    let stats = sim_stats(&http, &origin).await?;
    report(
        args,
        &ours,
        &plain,
        payload_us,
        encrypt_us,
        sign_us,
        plain_build_us,
        ece_crate_us,
        &stats,
    );
    Ok(())
}

fn plain_message(
    info: &web_push::SubscriptionInfo,
    private: &str,
    origin: &str,
    subject: &str,
    body: &[u8],
) -> Result<web_push::WebPushMessage, web_push::WebPushError> {
    let mut sig = web_push::VapidSignatureBuilder::from_base64(private, info)?;
    // The crate's default aud drops a non-default port; set it as RFC 8292 wants.
    sig.add_claim("aud", origin);
    sig.add_claim("sub", subject);
    let mut b = web_push::WebPushMessageBuilder::new(info);
    b.set_ttl(3600);
    b.set_payload(web_push::ContentEncoding::Aes128Gcm, body);
    b.set_vapid_signature(sig.build()?);
    b.build()
}

#[expect(
    clippy::too_many_arguments,
    reason = "a flat report of one run's figures"
)]
fn report(
    args: &BenchArgs,
    ours: &Run,
    plain: &Run,
    payload_us: f64,
    encrypt_us: f64,
    sign_us: f64,
    plain_build_us: f64,
    ece_crate_us: f64,
    stats: &serde_json::Value,
) {
    let http_us = (ours.cpu_us - payload_us - encrypt_us).max(0.0);
    let plain_http_us = (plain.cpu_us - payload_us - plain_build_us).max(0.0);
    println!("\n## pushflow bench dispatch ({} + {} notifications, {} subscribers, {} in flight, push-sim on loopback)\n", ours.sent, plain.sent, args.subscribers, args.concurrency);
    println!(
        "| way | confirmed/sent | notifications/s | CPU per message (this process) | vs plain |"
    );
    println!("| --- | --- | --- | --- | --- |");
    println!("| plain web-push (fresh VAPID JWT + ece/OpenSSL per message) | {}/{} | {:.0} | {:.0} µs | 1.00× |", plain.confirmed, plain.sent, plain.rate(), plain.cpu_us);
    println!(
        "| pushflow (JWT per origin, RFC 8291 on aws-lc-rs) | {}/{} | {:.0} | {:.0} µs | {:.2}× throughput, {:.2}× less CPU |",
        ours.confirmed, ours.sent, ours.rate(), ours.cpu_us, ours.rate() / plain.rate(), plain.cpu_us / ours.cpu_us
    );
    println!("\nCPU per message, one thread:\n");
    println!("| step | pushflow | plain web-push |");
    println!("| --- | --- | --- |");
    println!("| payload JSON + ping token | {payload_us:.1} µs | {payload_us:.1} µs |");
    println!("| encryption (P-256 keygen + ECDH + HKDF + AES-128-GCM) | {encrypt_us:.1} µs | {ece_crate_us:.1} µs (ece/OpenSSL) |");
    println!("| VAPID ES256 signature | {sign_us:.1} µs once per origin per ~11 h (≈ 0 per message) | {:.1} µs incl. key parse (build minus encryption) |", (plain_build_us - ece_crate_us).max(0.0));
    println!("| HTTP request + runtime (remainder of the end-to-end CPU) | {http_us:.1} µs | {plain_http_us:.1} µs |");
    println!("\npush-sim: {}", stats);
}

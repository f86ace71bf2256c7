//! `pushflow ingest bench`: valid pings/s and p50/p99 latency of ingest,
//! in-process against the real broker, next to a do-nothing axum endpoint
//! measured in the same run with the same client.
//!
//! The pings go to a bench-only topic (`pushflow-bench-….notification.delivered`,
//! created here) so billing never sees them; schema ids come from an
//! in-memory resolver (the registry is off the hot path: ids are cached).
//! The rate limit is off; every 202 is a broker-acknowledged record.

use axum::http::StatusCode;
use axum::routing::post;
use axum::{body::Bytes, Router};
use indicatif::{ProgressBar, ProgressStyle};
use pushflow_ingest::app::{router, Deps};
use pushflow_ingest::batches::Batches;
use pushflow_ingest::config::{IngestSettings, RateLimitSettings};
use pushflow_ingest::IngestError;
use pushflow_runtime::codec::{Codec, InMemoryResolver};
use pushflow_runtime::http::serve;
use pushflow_runtime::kafka::Producer;
use pushflow_runtime::token::{PingClaims, PingKeys};
use pushflow_runtime::CancellationToken;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `pushflow ingest bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds to drive each server (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Partitions of the bench topic.
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// librdkafka producer properties for ingest, `key=value` (repeatable),
    /// applied over the topology's `kafka:` map.
    #[arg(long = "kafka", value_parser = parse_kv)]
    pub kafka: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// 2xx answers.
    pub ok: u64,
    /// Other answers and transport errors.
    pub errors: u64,
    /// Measured seconds.
    pub secs: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// CPU µs per 2xx answer over the measured seconds, per process group
    /// (`pushflow`: this process — the HTTP client, the server and
    /// librdkafka; `kafka`: the broker; `postgres` is idle here).
    pub cpu_us: BTreeMap<&'static str, f64>,
}

impl Stats {
    /// 2xx per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

/// Both measurements.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The do-nothing endpoint.
    pub baseline: Stats,
    /// Ingest's `/v1/pings`.
    pub ingest: Stats,
}

fn fail(e: impl std::fmt::Display) -> IngestError {
    IngestError::Bench(e.to_string())
}

async fn drive(
    label: &str,
    url: String,
    bodies: Arc<Vec<Bytes>>,
    args: &BenchArgs,
) -> Result<Stats, IngestError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .http1_only()
        .build()
        .map_err(fail)?;
    let warmup = Duration::from_secs(1);
    let total = warmup + Duration::from_secs(args.seconds);
    let bar = ProgressBar::new(total.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} s").map_err(fail)?,
    );
    bar.set_message(label.to_string());
    let started = Instant::now();
    let measure_from = started + warmup;
    let until = started + total;
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut ok, mut errors) = (Vec::with_capacity(1 << 16), 0u64, 0u64);
            let mut i = c;
            loop {
                let t0 = Instant::now();
                if t0 >= until {
                    break;
                }
                let body = bodies[i % bodies.len()].clone();
                i += bodies.len() / 64 + 1;
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let good = match r {
                    Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if t0 >= measure_from {
                    if good {
                        ok += 1;
                        lat.push(t0.elapsed().as_micros() as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, ok, errors)
        }));
    }
    let mut cpu_from = None;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if cpu_from.is_none() && Instant::now() >= measure_from {
            cpu_from = Some(crate::procs::snapshot());
        }
        bar.set_position(started.elapsed().as_secs().min(total.as_secs()));
    }
    let cpu_to = crate::procs::snapshot();
    let (mut lat, mut ok, mut errors) = (Vec::new(), 0, 0);
    for t in tasks {
        let (l, o, e) = t.await.map_err(fail)?;
        lat.extend(l);
        ok += o;
        errors += e;
    }
    let secs = (Instant::now() - measure_from).as_secs_f64();
    bar.finish_and_clear();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |v| f64::from(*v) / 1000.0)
    };
    let cpu_from = cpu_from.unwrap_or_default();
    let cpu_us = cpu_to
        .iter()
        .map(|(g, u)| {
            let before = cpu_from.get(g).map_or(0.0, |b| b.cpu_seconds);
            (*g, 1e6 * (u.cpu_seconds - before) / ok.max(1) as f64)
        })
        .collect();
    Ok(Stats {
        ok,
        errors,
        secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        cpu_us,
    })
}

/// Runs the benchmark against the broker at `brokers` and prints a table.
pub async fn run(
    brokers: &str,
    kafka: &BTreeMap<String, String>,
    args: &BenchArgs,
) -> Result<BenchReport, IngestError> {
    let mut kafka = kafka.clone();
    kafka.extend(args.kafka.iter().cloned());
    let prefix = format!("pushflow-bench-{}-{:x}.", std::process::id(), rand_u32());
    let topic = format!("{prefix}notification.delivered");
    super::create_topics(
        brokers,
        &BTreeMap::new(),
        &[(topic.clone(), args.partitions)],
    )
    .await
    .map_err(fail)?;
    let keys =
        PingKeys::parse(&format!("bench:{}", pushflow_schemas::new_event_id())).map_err(fail)?;
    let settings = IngestSettings {
        allow_anonymous: true,
        rate_limit: RateLimitSettings {
            per_second: 0.0,
            burst: 1,
        },
        ..Default::default()
    };
    let cfg = settings.validate(|_| None)?;
    let producer = Producer::new(brokers, &kafka, cfg.produce_timeout)?;
    let deps = Deps {
        producer: producer.clone(),
        codec: Arc::new(Codec::new(Arc::new(InMemoryResolver::new()))),
        ping_keys: keys.clone(),
        topic_prefix: prefix.clone(),
        batches: Arc::new(Batches::new(brokers, &kafka, cfg.produce_timeout, &prefix)),
    };
    let shutdown = CancellationToken::new();
    let ingest = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(fail)?;
    let ingest_addr = ingest.local_addr().map_err(fail)?;
    tokio::spawn(serve(ingest, router(cfg, deps), shutdown.clone()));
    let base = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(fail)?;
    let base_addr = base.local_addr().map_err(fail)?;
    let nothing = Router::new().route(
        "/v1/pings",
        post(|_b: Bytes| async { StatusCode::ACCEPTED }),
    );
    tokio::spawn(serve(base, nothing, shutdown.clone()));

    let iat = pushflow_schemas::now_millis() / 1000;
    let exp = iat + 3600;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..20_000)
            .map(|i| {
                let token = keys.mint(&PingClaims {
                    notification_id: format!("bench-n-{i}"),
                    campaign_id: format!("bench-c-{}", i % 50),
                    store_id: format!("bench-s-{}", i % 7),
                    subscriber_id: format!("bench-u-{i}"),
                    exp,
                    iat: Some(iat),
                });
                Bytes::from(serde_json::json!({"type": "delivered", "token": token}).to_string())
            })
            .collect(),
    );
    println!(
        "pushflow ingest bench: {} s per server (+1 s warm-up), {} connections, topic {topic} ({} partitions), broker {brokers}, producer overrides {kafka:?}",
        args.seconds, args.connections, args.partitions
    );
    let baseline = drive(
        "baseline",
        format!("http://{base_addr}/v1/pings"),
        bodies.clone(),
        args,
    )
    .await?;
    let ingest = drive(
        "ingest",
        format!("http://{ingest_addr}/v1/pings"),
        bodies,
        args,
    )
    .await?;
    shutdown.cancel();
    let _ = producer.flush(Duration::from_secs(5));
    super::delete_topics(brokers, &[&topic]).await;
    let report = BenchReport { baseline, ingest };
    report.print();
    Ok(report)
}

impl BenchReport {
    /// Prints the table of both measurements and the verdict.
    fn print(&self) {
        let (baseline, ingest) = (&self.baseline, &self.ingest);
        println!(
            "{:<28} {:>12} {:>9} {:>9} {:>8}  CPU µs per answer",
            "server", "requests/s", "p50 ms", "p99 ms", "errors"
        );
        for (name, s) in [
            ("do-nothing axum (baseline)", baseline),
            ("ingest /v1/pings (acked)", ingest),
        ] {
            let cpu: Vec<String> = s
                .cpu_us
                .iter()
                .map(|(g, us)| format!("{g} {us:.1}"))
                .collect();
            println!(
                "{name:<28} {:>12.0} {:>9.2} {:>9.2} {:>8}  {}",
                s.rate(),
                s.p50_ms,
                s.p99_ms,
                s.errors,
                cpu.join(", ")
            );
        }
        println!(
            "ingest / baseline: {:.2} of the throughput; target >= 20000 valid pings/s with p99 < 20 ms: {}",
            ingest.rate() / baseline.rate().max(1e-9),
            if ingest.rate() >= 20_000.0 && ingest.p99_ms < 20.0 { "met" } else { "NOT met" }
        );
    }
}

fn rand_u32() -> u32 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    n ^ std::process::id().rotate_left(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bench_runs_end_to_end_against_the_broker() {
        let args = BenchArgs {
            seconds: 1,
            connections: 4,
            partitions: 3,
            kafka: vec![],
        };
        let report = run(&pushflow_testkit::brokers(), &Default::default(), &args)
            .await
            .unwrap();
        assert!(report.ingest.ok > 0 && report.baseline.ok > 0, "{report:?}");
        assert_eq!(report.ingest.errors, 0, "{report:?}");
        assert!(report.ingest.p50_ms > 0.0 && report.ingest.p99_ms >= report.ingest.p50_ms);
    }
}

//! `pushflow bench dispatch-e2e`: a launched campaign through the real
//! pipeline — `campaign.launched` on Apache Kafka, dispatch's view and plan
//! in Postgres, `dispatch.batches`, encrypted pushes to push-sim, outcome
//! rows and `notification.dispatched` / `notification.failed` in the same
//! Kafka transaction — timed from the launch record to the last outcome
//! event a `read_committed` reader sees, with the CPU of every process per
//! notification. The same pushes sent straight from the sender (no Kafka,
//! no Postgres) in the same run are the ceiling it is compared with, and
//! the encryption alone is the floor of CPU per message.
//!
//! Everything is fresh per run (topics `bench-dsp-<stamp>.*`, database
//! `<db>_bench_dispatch_<stamp>`, its own schema registry in-process) and
//! dropped at the end. push-sim runs as a child process (verifying 1 % of
//! the pushes), so its CPU is reported apart from pushflow's.

use futures::StreamExt;
use pushflow_dispatch::config::DispatchSettings;
use pushflow_dispatch::store::Store;
use pushflow_dispatch::vapid::VapidKey;
use pushflow_dispatch::{rfc8291, Dispatch, DispatchError, Topics};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::kafka::Producer;
use pushflow_runtime::token::PingKeys;
use pushflow_runtime::CancellationToken;
use pushflow_schemas::{
    new_event_id, now_millis, CampaignCreated, CampaignLaunched, Event, SubscriptionCreated,
    Urgency,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dispatch::{micro, sim_stats, sim_subscribers, start_sim, SimSubscription};
use super::Services;
use crate::procs;

/// `pushflow bench dispatch-e2e` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Subscribers of the launched campaign (one notification each).
    #[arg(long, default_value_t = 100_000)]
    pub notifications: usize,
    /// Subscribers per batch record (dispatch's `batch_size`).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Batch records sent at once (dispatch's `parallel_batches`).
    #[arg(long, default_value_t = 8)]
    pub parallel_batches: usize,
    /// Batch records per Kafka transaction (dispatch's
    /// `batches_per_transaction`).
    #[arg(long, default_value_t = 16)]
    pub batches_per_transaction: usize,
    /// Requests in flight to push-sim (dispatch's `concurrency_per_origin`).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Partitions of `dispatch.batches` and of the outcome topics.
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// Pushes sent straight from the sender (no Kafka, no Postgres): the
    /// ceiling measured in the same run.
    #[arg(long, default_value_t = 20_000)]
    pub direct: usize,
}

fn err(m: impl std::fmt::Display) -> DispatchError {
    DispatchError::Config(format!("bench dispatch-e2e: {m}"))
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> Result<String, DispatchError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let Some((server, _)) = base.rsplit_once('/').filter(|(s, _)| s.contains("//")) else {
        return Err(err(format!(
            "{url}: a postgres:// URL with a database name is needed"
        )));
    };
    Ok(match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    })
}

/// The run's fresh database (dropped on [`Fresh::drop_all`]) and topics.
struct Fresh {
    admin_url: String,
    database: String,
    url: String,
    topics: Topics,
    /// Every topic created, dead-letter topics included.
    names: Vec<String>,
    brokers: String,
}

impl Fresh {
    async fn create(s: &Services, partitions: i32) -> Result<Fresh, DispatchError> {
        let stamp = format!("{}_{}", chrono::Utc::now().timestamp(), std::process::id());
        let database = format!("pushflow_bench_dispatch_{stamp}");
        let url = with_database(&s.database_url, &database)?;
        let topics = Topics::prefixed(&format!("bench-dsp-{stamp}."));
        let mut list: Vec<(String, i32)> =
            topics.view_inputs().into_iter().map(|t| (t, 3)).collect();
        for t in [&topics.batches, &topics.dispatched, &topics.failed] {
            list.push((t.clone(), partitions));
        }
        let dlqs: Vec<(String, i32)> = list.iter().map(|(t, _)| (format!("{t}.dlq"), 1)).collect();
        list.extend(dlqs);
        super::create_topics(&s.brokers, &s.kafka, &list)
            .await
            .map_err(err)?;
        Ok(Fresh {
            admin_url: s.database_url.clone(),
            database,
            url,
            topics,
            names: list.into_iter().map(|(t, _)| t).collect(),
            brokers: s.brokers.clone(),
        })
    }

    async fn drop_all(&self) {
        let refs: Vec<&str> = self.names.iter().map(String::as_str).collect();
        super::delete_topics(&self.brokers, &refs).await;
        let dropped = async {
            let c = pushflow_runtime::postgres::connect(&self.admin_url).await?;
            c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.database
            ))
            .await
            .map_err(|e| pushflow_runtime::postgres::PgError::new("drop the bench database", e))
        };
        if let Err(e) = dropped.await {
            tracing::warn!(error = %e, database = %self.database, "could not drop the bench database");
        }
    }
}

/// A schema registry served in-process over the bench database, and its
/// server task (aborted before the database is dropped, so its pooled
/// connections close instead of being terminated under it).
async fn start_registry(
    url: &str,
) -> Result<(String, tokio::task::JoinHandle<std::io::Result<()>>), DispatchError> {
    let registry = pushflow_registry::connect(url).await.map_err(err)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let app = registry.router();
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), task))
}

/// Counts the distinct notifications of the outcome topics
/// (`read_committed`) in the background.
struct Outcomes {
    seen: Arc<AtomicUsize>,
    records: Arc<AtomicUsize>,
}

fn count_outcomes(s: &Services, topics: &Topics) -> Result<Outcomes, DispatchError> {
    let mut cfg = pushflow_runtime::kafka::consumer_config(
        &s.brokers,
        &format!("bench-dsp-outcomes-{}", new_event_id()),
    );
    cfg.set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    for (k, v) in &s.kafka {
        cfg.set(k, v);
    }
    let consumer: StreamConsumer = cfg.create().map_err(err)?;
    consumer
        .subscribe(&[&topics.dispatched, &topics.failed])
        .map_err(err)?;
    let out = Outcomes {
        seen: Arc::new(AtomicUsize::new(0)),
        records: Arc::new(AtomicUsize::new(0)),
    };
    let (seen, records) = (out.seen.clone(), out.records.clone());
    tokio::spawn(async move {
        let mut ids: HashSet<Vec<u8>> = HashSet::new();
        let mut stream = consumer.stream();
        while let Some(m) = stream.next().await {
            let Ok(m) = m else { continue };
            records.fetch_add(1, Ordering::Relaxed);
            let key = rdkafka::Message::key(&m).unwrap_or_default().to_vec();
            if ids.insert(key) {
                seen.store(ids.len(), Ordering::Relaxed);
            }
        }
    });
    Ok(out)
}

async fn subscribe(
    producer: &Producer,
    codec: &Codec,
    topic: &str,
    store: &str,
    subs: &[SimSubscription],
) -> Result<(), DispatchError> {
    let bar = super::progress_bar(subs.len() as u64, "subscribe");
    let mut sends = futures::stream::iter(subs)
        .map(|s| async move {
            let e = SubscriptionCreated {
                event_id: new_event_id(),
                occurred_at: now_millis(),
                store_id: store.into(),
                subscriber_id: s.subscriber_id.clone(),
                endpoint: s.endpoint.clone(),
                p256dh: s.p256dh.clone(),
                auth: s.auth.clone(),
            };
            let bytes = codec.encode(&e).await?;
            producer
                .send(topic, Some(e.key().as_bytes()), &bytes, &[])
                .await?;
            Ok::<(), DispatchError>(())
        })
        .buffer_unordered(1024);
    while let Some(r) = sends.next().await {
        r?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

async fn wait_active(
    store: &Store,
    store_id: &str,
    n: usize,
    within: Duration,
) -> Result<(), DispatchError> {
    let deadline = Instant::now() + within;
    loop {
        let c = store.active_count(store_id).await?;
        if c as usize >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(err(format!(
                "dispatch's view holds {c} of {n} subscribers after {within:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn launch(
    producer: &Producer,
    codec: &Codec,
    topics: &Topics,
    store_id: &str,
) -> Result<(), DispatchError> {
    let c = CampaignCreated {
        event_id: new_event_id(),
        occurred_at: now_millis(),
        store_id: store_id.into(),
        campaign_id: "bench-campaign".into(),
        title: "Winter sale".into(),
        body: "Everything -30 % until Sunday, in every store and online".into(),
        url: "https://shop.example/sale?utm_source=push".into(),
        icon: Some("https://shop.example/icon.png".into()),
        ttl_seconds: 3600,
        urgency: Urgency::Normal,
    };
    let bytes = codec.encode(&c).await?;
    producer
        .send(
            &topics.campaign_created,
            Some(c.key().as_bytes()),
            &bytes,
            &[],
        )
        .await?;
    let l = CampaignLaunched {
        event_id: new_event_id(),
        occurred_at: now_millis(),
        store_id: store_id.into(),
        campaign_id: c.campaign_id.clone(),
        throttle_per_minute: None,
    };
    let bytes = codec.encode(&l).await?;
    producer
        .send(
            &topics.campaign_launched,
            Some(l.key().as_bytes()),
            &bytes,
            &[],
        )
        .await?;
    Ok(())
}

/// CPU seconds of each process group now, push-sim's child included.
fn cpu_now(sim_pid: Option<u32>) -> BTreeMap<&'static str, f64> {
    let mut m: BTreeMap<&'static str, f64> = procs::snapshot()
        .into_iter()
        .map(|(k, u)| (k, u.cpu_seconds))
        .collect();
    if let Some(pid) = sim_pid {
        m.insert("push-sim", procs::cpu_seconds_of(pid));
    }
    m
}

/// Pushes sent straight from a sender like dispatch's (the ceiling).
async fn direct(
    subs: &Arc<Vec<SimSubscription>>,
    args: &BenchArgs,
) -> Result<(f64, f64), DispatchError> {
    let sender = super::dispatch::bench_sender(
        Arc::new(VapidKey::generate()),
        "mailto:bench@pushflow.invalid",
        args.concurrency,
    )?;
    let keys = PingKeys::from_env().map_err(err)?;
    let run = super::dispatch::send_pushes(
        &sender,
        subs,
        &keys,
        (args.direct, args.concurrency),
        "direct",
        None,
    )
    .await;
    Ok((run.rate(), run.cpu_us))
}

/// Runs the benchmark and prints the report.
pub async fn run(s: &Services, args: &BenchArgs) -> Result<(), DispatchError> {
    let fresh = Fresh::create(s, args.partitions).await?;
    let result = bench(s, &fresh, args).await;
    fresh.drop_all().await;
    let report = result?;
    print!("{report}");
    Ok(())
}

async fn bench(s: &Services, fresh: &Fresh, args: &BenchArgs) -> Result<String, DispatchError> {
    let http = reqwest::Client::new();
    let (origin, sim) = start_sim(None, &http).await?;
    let store_id = format!("bench-store-{}", std::process::id());
    let subs = sim_subscribers(&http, &origin, &store_id, args.notifications).await?;

    let (registry, server) = start_registry(&fresh.url).await?;
    let result = with_registry(
        s,
        fresh,
        args,
        &http,
        &origin,
        &store_id,
        &subs,
        sim.pid(),
        &registry,
    )
    .await;
    server.abort();
    let _ = server.await;
    // Let the dropped pools' connections say goodbye before the database goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    result
}

#[expect(
    clippy::too_many_arguments,
    reason = "the run's fixtures, set up once by bench()"
)]
async fn with_registry(
    s: &Services,
    fresh: &Fresh,
    args: &BenchArgs,
    http: &reqwest::Client,
    origin: &str,
    store_id: &str,
    subs: &Arc<Vec<SimSubscription>>,
    sim_pid: Option<u32>,
    registry: &str,
) -> Result<String, DispatchError> {
    let codec = Codec::for_registry(registry)?;
    let mut settings = DispatchSettings::with_subject("mailto:bench@pushflow.invalid");
    settings.batch_size = args.batch_size;
    settings.parallel_batches = args.parallel_batches;
    settings.batches_per_transaction = args.batches_per_transaction;
    settings.concurrency_per_origin = args.concurrency;
    let settings = settings.check().map_err(|e| err(e.to_string()))?;
    let dispatch = Dispatch {
        name: "dispatch".into(),
        settings,
        topics: fresh.topics.clone(),
        vapid: Arc::new(VapidKey::generate()),
        ping: PingKeys::from_env().map_err(err)?,
        allow_insecure: true,
        brokers: s.brokers.clone(),
        kafka: s.kafka.clone(),
        database_url: fresh.url.clone(),
        registry_url: registry.to_string(),
        group: format!("bench-dsp-{}", new_event_id()),
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatch.run_until(shutdown.clone(), None));
    let store = Store::connect(&fresh.url).await?;
    let producer = Producer::new(&s.brokers, &s.kafka, Duration::from_secs(60))?;

    let t = Instant::now();
    subscribe(
        &producer,
        &codec,
        &fresh.topics.subscription_created,
        store_id,
        subs,
    )
    .await?;
    let n = subs.len();
    wait_active(&store, store_id, n, Duration::from_secs(600)).await?;
    let subscribe_secs = t.elapsed().as_secs_f64();

    let outcomes = count_outcomes(s, &fresh.topics)?;
    let bar = super::progress_bar(n as u64, "dispatch");
    let (cpu0, jit0, t0) = (
        cpu_now(sim_pid),
        procs::broker_jit_cpu_seconds(),
        Instant::now(),
    );
    launch(&producer, &codec, &fresh.topics, store_id).await?;
    let deadline = t0 + Duration::from_secs(600) + Duration::from_millis(2 * n as u64);
    let mut first: Option<f64> = None;
    while outcomes.seen.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline || running.is_finished() {
            break;
        }
        let seen = outcomes.seen.load(Ordering::Relaxed);
        if seen > 0 && first.is_none() {
            first = Some(t0.elapsed().as_secs_f64());
        }
        bar.set_position(seen as u64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu1, jit, wall) = (
        cpu_now(sim_pid),
        procs::broker_jit_cpu_seconds() - jit0,
        t0.elapsed().as_secs_f64(),
    );
    bar.finish_and_clear();
    shutdown.cancel();
    let stopped = running.await.map_err(err)?;
    let seen = outcomes.seen.load(Ordering::Relaxed);
    let records = outcomes.records.load(Ordering::Relaxed);
    if seen < n {
        stopped.map_err(|e| err(format!("dispatch stopped: {e}")))?;
        return Err(err(format!(
            "{seen} of {n} notifications have an outcome event after {wall:.0} s"
        )));
    }
    stopped.map_err(|e| err(format!("dispatch stopped: {e}")))?;
    if records != seen {
        return Err(err(format!(
            "{records} outcome events for {seen} notifications: some were published twice"
        )));
    }

    let stats = sim_stats(http, origin).await?;
    if stats["requests"].as_u64() != Some(n as u64) {
        return Err(err(format!(
            "push-sim received {} push requests for {n} notifications",
            stats["requests"]
        )));
    }
    let (direct_rate, direct_cpu_us) = direct(subs, args).await?;
    let (p256dh, auth) = (
        pushflow_dispatch::sender::b64(&subs[0].p256dh).unwrap_or_default(),
        pushflow_dispatch::sender::b64(&subs[0].auth).unwrap_or_default(),
    );
    let body = vec![b'x'; 420];
    let encrypt_us = micro(2000, |_| drop(rfc8291::encrypt(&p256dh, &auth, &body)));

    let rate = n as f64 / wall;
    let mut out = format!(
        "\n## pushflow bench dispatch-e2e ({n} notifications, batch_size {}, parallel_batches {}, batches_per_transaction {}, {} in flight, {} partitions)\n\n\
         subscribe (produce + dispatch's view):   {subscribe_secs:.1} s = {:.0} subscribers/s\n\
         launch → last outcome event (read_committed): {wall:.2} s = {rate:.0} notifications/s \
         (first outcome after {:.2} s; {records} outcome records for {seen} notifications)\n\
         same pushes straight from the sender:   {direct_rate:.0} notifications/s, {direct_cpu_us:.0} µs CPU each (end to end = {:.2}x that)\n\
         encryption alone (the floor):           {encrypt_us:.1} µs per message\n\
         push-sim: {}\n\n\
         | process | CPU s | cores | µs per notification |\n| --- | ---: | ---: | ---: |\n",
        args.batch_size,
        args.parallel_batches,
        args.batches_per_transaction,
        args.concurrency,
        args.partitions,
        n as f64 / subscribe_secs,
        first.unwrap_or(0.0),
        rate / direct_rate.max(1e-9),
        stats
    );
    let mut total = 0.0;
    for (name, c1) in &cpu1 {
        let d = c1 - cpu0.get(name).copied().unwrap_or(0.0);
        total += d;
        out.push_str(&format!(
            "| {name} | {d:.1} | {:.2} | {:.0} |\n",
            d / wall,
            d * 1e6 / n as f64
        ));
    }
    out.push_str(&format!(
        "| all | {total:.1} | {:.2} | {:.0} ({:.1}x the encryption floor) |\n",
        total / wall,
        total * 1e6 / n as f64,
        total * 1e6 / n as f64 / encrypt_us.max(1e-9)
    ));
    out.push_str(&format!(
        "\nof the broker's CPU, {jit:.1} s ({:.0} µs per notification) was its JVM compiling code paths it had not run before \
         (C1/C2 compiler threads): a broker that has run such a load before does not pay it again\n",
        jit * 1e6 / n as f64
    ));
    Ok(out)
}

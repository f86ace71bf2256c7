//! `pushflow bench aggregate`: throughput of the aggregate, measured in one
//! run against its ceiling and its baseline.
//!
//! - ceiling: the broker's raw consume rate for the same records
//!   ([`pushflow_runtime::kafka::rate::raw_consume`]);
//! - end to end: records from the real broker into Postgres through the
//!   live code path: one commit connection committing each batch as soon
//!   as it is free (commit interval `0s`), then with `--commit-interval`
//!   (the default settings), then `--commit-connections` lanes (without
//!   group commit, with it, with larger batches);
//! - in-process core: decode + dedup + window, one thread, no I/O;
//! - baseline: one autocommitted upsert per event, as a naive sink does it;
//! - CPU per event of Postgres, the broker and pushflow for every end-to-end
//!   run (group commit on and off, a larger batch), from `/proc/<pid>/stat`;
//! - memory of the dedup state per pair at 1 M and 10 M notifications, and
//!   the time to load 10 M from `dedup_log` ([`super::aggregate_state`]).

use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use pushflow_aggregate::config::AggregateSettings;
use pushflow_aggregate::processor::{run, RunOptions, StartAt};
use pushflow_aggregate::tally::{decode, Core, PingKind, Staged};
use pushflow_aggregate::{store, AggregateError};
use pushflow_runtime::codec::{Codec, InMemoryResolver};
use pushflow_runtime::kafka::{rate::raw_consume, PartitionKey, Producer};
use pushflow_runtime::postgres::{PgError, PgFailure};
use pushflow_runtime::CancellationToken;
use pushflow_schemas::{NotificationClicked, NotificationDelivered};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::aggregate_state::{load_line, memory_line, CpuSample};

/// `pushflow bench aggregate`: end-to-end and in-process throughput
/// against the broker's raw rate and a one-upsert-per-event baseline.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Events to produce and aggregate.
    #[arg(long, default_value_t = 300_000)]
    pub events: u64,
    /// Records per batch (one Postgres transaction each).
    #[arg(long, default_value_t = 10_000)]
    pub max_batch: usize,
    /// Events written by the one-upsert-per-event baseline.
    #[arg(long, default_value_t = 5_000)]
    pub baseline_events: u64,
    /// Commit lanes of the later end-to-end runs (the first two use one).
    #[arg(long, default_value_t = 2)]
    pub commit_connections: usize,
    /// Commit interval of the runs that gather parts (the setting's
    /// default); one more run commits every batch at once (`0s`).
    #[arg(long, default_value_t = AggregateSettings::default().commit_interval)]
    pub commit_interval: String,
    /// Notifications whose state is written to and loaded from
    /// `dedup_log` (0: skip).
    #[arg(long, default_value_t = 10_000_000)]
    pub load_notifications: usize,
}

const PARTITIONS: i32 = 6;

/// The synthetic workload: (topic index 0 = delivered / 1 = clicked, key, value).
async fn workload(codec: &Codec, n: u64) -> Result<Vec<(usize, String, Vec<u8>)>, AggregateError> {
    let base = pushflow_schemas::now_millis() - 3_600_000;
    let mut out = Vec::with_capacity(n as usize);
    let mut i = 0u64;
    while (out.len() as u64) < n {
        let nid = format!("{:08x}-bench-{i:012}", i.wrapping_mul(0x9e37_79b9) as u32);
        let (store, campaign) = (format!("store-{}", i % 50), format!("campaign-{}", i % 400));
        let at = base + (i as i64 * 3_600_000 / n as i64);
        let kind = if i % 20 == 19 { 1 } else { 0 };
        let bytes = if kind == 0 {
            codec
                .encode(&NotificationDelivered {
                    event_id: pushflow_schemas::new_event_id(),
                    occurred_at: at,
                    store_id: store,
                    notification_id: nid.clone(),
                    campaign_id: campaign,
                })
                .await
        } else {
            codec
                .encode(&NotificationClicked {
                    event_id: pushflow_schemas::new_event_id(),
                    occurred_at: at,
                    store_id: store,
                    notification_id: nid.clone(),
                    campaign_id: campaign,
                })
                .await
        }
        .map_err(pushflow_runtime::RuntimeError::from)?;
        // 2 % of pings are sent twice (a retrying service worker).
        if i % 50 == 7 {
            out.push((kind, nid.clone(), bytes.clone()));
        }
        out.push((kind, nid, bytes));
        i += 1;
    }
    out.truncate(n as usize);
    Ok(out)
}

/// Runs the benchmark and returns the printed report.
pub async fn bench(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
    database_url: &str,
    args: &BenchArgs,
) -> Result<String, AggregateError> {
    let stamp = format!("{}_{}", chrono::Utc::now().timestamp(), std::process::id());
    let topics = [
        format!("bench-{stamp}.notification.delivered"),
        format!("bench-{stamp}.notification.clicked"),
    ];
    let wanted: Vec<(String, i32)> = topics.iter().map(|t| (t.clone(), PARTITIONS)).collect();
    super::create_topics(brokers, passthrough, &wanted)
        .await
        .map_err(AggregateError::Invalid)?;
    let codec = Arc::new(Codec::new(Arc::new(InMemoryResolver::new())));
    let events = workload(&codec, args.events).await?;
    let bytes: u64 = events.iter().map(|e| e.2.len() as u64).sum();

    let producer = Producer::new(brokers, passthrough, Duration::from_secs(60))?;
    let pb = super::progress_bar(events.len() as u64, "produce");
    let started = Instant::now();
    let mut inflight = FuturesUnordered::new();
    // Log ends from the broker's acknowledgements (nothing else writes
    // these fresh topics, so they equal the high watermarks).
    let mut ends: HashMap<PartitionKey, i64> = HashMap::new();
    let mut note = |kind: usize, d: pushflow_runtime::kafka::Delivery| {
        let e = ends
            .entry(PartitionKey::new(topics[kind].clone(), d.partition))
            .or_default();
        *e = (*e).max(d.offset + 1);
        pb.inc(1);
    };
    for (kind, key, value) in &events {
        let send = producer.send(&topics[*kind], Some(key.as_bytes()), value, &[]);
        let kind = *kind;
        inflight.push(async move { send.await.map(|d| (kind, d)) });
        if inflight.len() >= 20_000 {
            if let Some(r) = inflight.next().await {
                let (k, d) = r?;
                note(k, d);
            }
        }
    }
    while let Some(r) = inflight.next().await {
        let (k, d) = r?;
        note(k, d);
    }
    pb.finish_and_clear();
    let produce_rate = events.len() as f64 / started.elapsed().as_secs_f64();
    let delivered = events.iter().filter(|e| e.0 == 0).count() as u64;

    // Ceiling: raw consume of the delivered topic (95 % of the records).
    let (b, t0) = (brokers.to_string(), topics[0].clone());
    let (raw_n, _, raw_secs) = tokio::task::spawn_blocking(move || {
        raw_consume(&b, &t0, delivered, Duration::from_secs(120))
    })
    .await
    .map_err(|e| AggregateError::Invalid(e.to_string()))??;
    let raw_rate = raw_n as f64 / raw_secs.max(1e-9);

    // In-process core: decode + dedup + window, one thread.
    let settings = AggregateSettings {
        max_batch: args.max_batch,
        schema: format!("aggregate_bench_{stamp}"),
        ..AggregateSettings::default()
    }
    .validate()
    .map_err(|e| AggregateError::Invalid(e.to_string()))?;
    let mut core = Core::new(settings.windows.clone(), settings.dedup_horizon_ms);
    let started = Instant::now();
    for (chunk_no, chunk) in events.chunks(args.max_batch).enumerate() {
        let mut staged = Staged::default();
        for (j, (kind, key, value)) in chunk.iter().enumerate() {
            let part = (key.len() as i32 + *kind as i32) % PARTITIONS;
            let offset = (chunk_no * args.max_batch + j) as i64;
            let k = if *kind == 0 {
                PingKind::Delivered
            } else {
                PingKind::Clicked
            };
            if let Some(slot) = core.admit(&mut staged, &topics[*kind], part, offset) {
                let ping = decode(&codec, k, value)
                    .await
                    .map_err(pushflow_runtime::RuntimeError::from)?;
                core.stage(&mut staged, slot, offset, None, ping);
            }
        }
        let d = core.deltas(&staged);
        std::hint::black_box(&d);
        core.apply(&mut staged);
    }
    let core_rate = events.len() as f64 / started.elapsed().as_secs_f64();

    // End to end, through the live code path, each run on fresh tables
    // and its own consumer group.
    let client = store::connect(database_url).await?;
    // (commit connections, group commit, batch size, commit interval):
    // the first commits each batch as soon as its lane is free.
    let n = args.commit_connections.max(1);
    let every = args.commit_interval.as_str();
    let mut variants = vec![
        (1, true, args.max_batch, "0s"),
        (1, true, args.max_batch, every),
    ];
    if n > 1 {
        variants.push((n, false, args.max_batch, "0s"));
    }
    variants.push((n, true, args.max_batch, every));
    variants.push((n, true, args.max_batch * 2, every));
    let mut e2e = Vec::new();
    for (i, (n, group, max_batch, interval)) in variants.iter().copied().enumerate() {
        let mut settings = AggregateSettings {
            max_batch,
            schema: format!("aggregate_bench_{stamp}_{i}"),
            commit_connections: n,
            commit_interval: interval.into(),
            ..AggregateSettings::default()
        }
        .validate()
        .map_err(|e| AggregateError::Invalid(e.to_string()))?;
        if !group {
            settings.group_commit = 1;
        }
        let pb = super::progress_bar(events.len() as u64, &format!("aggregate ({n} conn)"));
        let opts = RunOptions {
            name: "aggregate-bench".into(),
            brokers: brokers.into(),
            passthrough: passthrough.clone(),
            group: format!("pushflow-bench-aggregate-{stamp}-{i}"),
            inputs: topics.to_vec(),
            database_url: database_url.into(),
            settings: settings.clone(),
            codec: codec.clone(),
            start: StartAt::Beginning,
            stop_at: Some(ends.clone()),
            progress: Some(pb.clone()),
        };
        let started = Instant::now();
        let cpu_before = CpuSample::now();
        let summary = run(opts, CancellationToken::new()).await?;
        let cpu = CpuSample::now().since(&cpu_before);
        let wall = summary.records as f64 / started.elapsed().as_secs_f64();
        pb.finish_and_clear();
        let rate = summary.records as f64 / summary.busy_secs().max(1e-9);
        client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", settings.schema))
            .await
            .map_err(|e| PgError::new("drop the bench schema", e))?;
        e2e.push((rate, wall, summary, cpu, (n, group, max_batch, interval)));
    }
    let group_run = e2e
        .iter()
        .rposition(|r| r.4 == (n, true, args.max_batch, every))
        .unwrap_or(0);
    let (e2e_rate, e2e_wall, summary, e2e_cpu, _) = e2e[group_run];
    let single_rate = e2e[1].0;
    let mut variants_out = String::new();
    for (rate, _, s, cpu, (n, group, max_batch, interval)) in &e2e {
        variants_out += &format!(
            "    {n} conn, group commit {}, batches of {max_batch:>6}, commit interval {interval:>5}: {rate:>10.0} events/s ({:>3.0} % of raw); {}\n",
            if *group { "on " } else { "off" },
            100.0 * rate / raw_rate.max(1e-9),
            cpu.per_event(s.records)
        );
    }

    // Baseline: one autocommitted upsert per event, in the schema named
    // for the in-process run (which created no tables).
    let s = &settings.schema;
    let pg = |e| PgError::new("bench baseline", PgFailure::Driver(e));
    client.batch_execute(&format!("CREATE SCHEMA {s}; CREATE TABLE {s}.naive (store_id text, campaign_id text, window_start bigint, delivered bigint, clicked bigint, PRIMARY KEY (store_id, campaign_id, window_start))")).await.map_err(pg)?;
    let upsert = client.prepare(&format!("INSERT INTO {s}.naive VALUES ($1, $2, $3, $4, $5) ON CONFLICT (store_id, campaign_id, window_start) DO UPDATE SET delivered = naive.delivered + excluded.delivered, clicked = naive.clicked + excluded.clicked")).await.map_err(pg)?;
    let n_base = args.baseline_events.min(events.len() as u64) as usize;
    let started = Instant::now();
    for (kind, _, value) in &events[..n_base] {
        let k = if *kind == 0 {
            PingKind::Delivered
        } else {
            PingKind::Clicked
        };
        let p = decode(&codec, k, value)
            .await
            .map_err(pushflow_runtime::RuntimeError::from)?;
        let (d, c) = if *kind == 0 { (1i64, 0i64) } else { (0, 1) };
        client
            .execute(
                &upsert,
                &[
                    &p.store_id,
                    &p.campaign_id,
                    &(p.occurred_at / 60_000 * 60_000),
                    &d,
                    &c,
                ],
            )
            .await
            .map_err(pg)?;
    }
    let base_rate = n_base as f64 / started.elapsed().as_secs_f64();

    // Memory of the dedup state per distinct notification, and loading it.
    let mut mem = String::new();
    for k in [1_000_000usize, 10_000_000] {
        mem += &memory_line(k);
    }
    if args.load_notifications > 0 {
        mem += &load_line(
            database_url,
            &format!("aggregate_bench_{stamp}_load"),
            args.load_notifications,
            PARTITIONS,
        )
        .await?;
    }
    client
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .map_err(pg)?;

    let target = 200_000f64.min(0.8 * raw_rate);
    let met = |cpu: &super::aggregate_state::CpuUse, records: u64| {
        if cpu.postgres * 1e6 / records.max(1) as f64 <= 1.0 {
            "met"
        } else {
            "NOT met"
        }
    };
    Ok(format!(
        "pushflow bench aggregate: {} events ({} bytes), {PARTITIONS} partitions per topic, batches of {}\n\
         produce (idempotent, acks=all):        {produce_rate:>10.0} events/s\n\
         broker raw consume (ceiling):          {raw_rate:>10.0} events/s\n\
         end to end, 1 commit connection:       {single_rate:>10.0} events/s  ({:.0} % of raw)\n\
         end to end broker → Postgres, {} conn:   {e2e_rate:>10.0} events/s  ({:.0} % of raw, {:.2}x one connection; target {target:.0}: {})\n\
           (wall clock incl. connect, migrate and group join: {e2e_wall:.0} events/s)\n\
           counted {}, duplicates {}, late {}, dead letters {}\n\
         in-process core (decode+dedup+window): {core_rate:>10.0} events/s per core\n\
         baseline one upsert per event:         {base_rate:>10.0} events/s  (end to end = {:.1}x baseline)\n\
         CPU per event, defaults (1 conn, {every}): {}  (target Postgres ≤ 1 µs: {})\n\
         CPU per event of the {} conn run:      {}  (target Postgres ≤ 1 µs: {})\n\
         end-to-end runs:\n{variants_out}\
         dedup state:\n{mem}",
        events.len(),
        bytes,
        args.max_batch,
        100.0 * single_rate / raw_rate.max(1e-9),
        args.commit_connections,
        100.0 * e2e_rate / raw_rate.max(1e-9),
        e2e_rate / single_rate.max(1e-9),
        if e2e_rate >= target { "met" } else { "NOT met" },
        summary.counted,
        summary.duplicates,
        summary.late,
        summary.dead_letters,
        e2e_rate / base_rate.max(1e-9),
        e2e[1].3.per_event(e2e[1].2.records),
        met(&e2e[1].3, e2e[1].2.records),
        args.commit_connections,
        e2e_cpu.per_event(summary.records),
        met(&e2e_cpu, summary.records),
    ))
}

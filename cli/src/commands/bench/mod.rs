//! `pushflow bench …` and `pushflow ingest bench`: each measures a
//! component's throughput against a baseline (or ceiling) measured in the
//! same run, calling the component's library.

pub mod aggregate;
mod aggregate_state;
pub mod dispatch;
pub mod dispatch_e2e;
pub mod ingest;
pub mod peer;
pub mod sink;
mod sink_in_process;

use clap::Subcommand;
use pushflow_runtime::topology::Topology;
use std::collections::BTreeMap;
use std::path::Path;

use crate::{failure, Failure};

/// `pushflow bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Aggregate: broker → Postgres, in-process core, raw-consume ceiling,
    /// one-upsert-per-event baseline.
    Aggregate(aggregate::BenchArgs),
    /// Parquet sink: broker → Parquet on local disk, in-process encode
    /// rate, ArrowWriter ceiling and raw-consume rate.
    Sink(sink::BenchArgs),
    /// Dispatch: encrypted, VAPID-signed pushes to push-sim on loopback,
    /// against the web-push crate used the plain way.
    Dispatch(dispatch::BenchArgs),
    /// Dispatch end to end: a launched campaign through Apache Kafka and
    /// Postgres to every outcome event, CPU per process per notification,
    /// against the same pushes sent straight from the sender.
    DispatchE2e(dispatch_e2e::BenchArgs),
    /// pushflow's aggregate beside the seed's engine (Kafka Streams,
    /// peers/kafka-streams) on the same records: both rates, both checked
    /// against one independent ground truth.
    Peer(peer::PeerArgs),
}

/// Drops a bench's topics so their records do not pile up in the broker
/// (a failure is only logged).
pub async fn delete_topics(brokers: &str, names: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: Result<AdminClient<DefaultClientContext>, _> =
        pushflow_runtime::kafka::client_config(brokers, &BTreeMap::new()).create();
    let opts = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(10)));
    let deleted = match admin {
        Ok(a) => a.delete_topics(names, &opts).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = deleted {
        tracing::warn!(error = %e, topics = ?names, "could not delete the bench topics");
    }
}

/// Creates topics (name, partitions; replication 1) and waits until every
/// partition has a leader; one that exists already is left as it is.
pub async fn create_topics(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
    topics: &[(String, i32)],
) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> =
        pushflow_runtime::kafka::client_config(brokers, passthrough)
            .create()
            .map_err(|e| e.to_string())?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(30)));
    for r in admin
        .create_topics(&new, &opts)
        .await
        .map_err(|e| e.to_string())?
    {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("creating topic {name}: {code}")),
        }
    }
    let names: Vec<String> = topics.iter().map(|(n, _)| n.clone()).collect();
    let (b, p) = (brokers.to_string(), passthrough.clone());
    tokio::task::spawn_blocking(move || {
        pushflow_runtime::kafka::admin::wait_for_leaders(
            &b,
            &p,
            &names,
            std::time::Duration::from_secs(60),
        )
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// A progress bar for `len` items of `what` (elapsed, rate).
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} ({{per_sec}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// What a benchmark runs against: the services of the topology at the
/// given path, or, when there is no file there, `PUSHFLOW_BROKERS` /
/// `PUSHFLOW_DATABASE_URL` and the local defaults (no librdkafka
/// pass-through).
pub struct Services {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The topology's `kafka:` pass-through map.
    pub kafka: BTreeMap<String, String>,
    /// Postgres URL.
    pub database_url: String,
}

impl Services {
    /// The services for the topology at `path`. A file that is there but
    /// does not load is an error, not a silent fallback: a bench run with
    /// a tuned `kafka:` map must not measure the defaults instead.
    pub fn of(path: &Path) -> Result<Services, String> {
        if path.exists() {
            let t = Topology::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(Services {
                brokers: t.services.brokers,
                kafka: t.kafka,
                database_url: t.services.database_url,
            });
        }
        Ok(Services {
            brokers: std::env::var("PUSHFLOW_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            kafka: BTreeMap::new(),
            database_url: std::env::var("PUSHFLOW_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/pushflow".into()),
        })
    }
}

/// Runs `pushflow bench …` with the topology at `path`, printing the
/// figures.
pub async fn run(path: &Path, cmd: BenchCommand) -> Result<(), Failure> {
    let services = || Services::of(path).map_err(Failure::Config);
    match cmd {
        BenchCommand::Aggregate(args) => {
            let s = services()?;
            let report = aggregate::bench(&s.brokers, &s.kafka, &s.database_url, &args)
                .await
                .map_err(failure)?;
            print!("{report}");
            Ok(())
        }
        BenchCommand::Sink(args) => sink::run(&services()?.brokers, args.events)
            .await
            .map_err(failure),
        BenchCommand::Dispatch(args) => Ok(dispatch::run(&args).await?),
        BenchCommand::DispatchE2e(args) => Ok(dispatch_e2e::run(&services()?, &args).await?),
        BenchCommand::Peer(args) => {
            let s = services()?;
            let report = peer::bench(&s.brokers, &s.database_url, &args)
                .await
                .map_err(failure)?;
            print!("{}", report.text);
            match report.exact {
                true => Ok(()),
                false => {
                    Err(anyhow::anyhow!("pushflow's totals differ from the ground truth").into())
                }
            }
        }
    }
}

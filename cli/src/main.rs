//! `pushflow`: one binary, every component and tool as a subcommand.
//!
//! Configuration comes from `topology.yaml` (`--topology`, or
//! `PUSHFLOW_TOPOLOGY`) with `PUSHFLOW_*` environment variables overriding
//! its `services:`. A bad topology exits with code 2 and a message naming
//! the file, the entry and the field.

/// mimalloc instead of glibc's malloc for Rust's allocations: the ingest
/// hot path spent ~12 % of its CPU in glibc's malloc/free (perf, `pushflow
/// ingest bench`: hyper's, axum's and the codec's small per-request
/// allocations). Same run, alternating builds: 14.2–15.5 k pings/s and
/// 65–73 µs CPU per ping against 11.9–12.3 k/s and 81–83 µs with glibc.
/// librdkafka (C) keeps glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod commands;
mod components;
mod demo;
mod procs;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// pushflow: event-sourced web-push marketing on Kafka.
#[derive(Debug, Parser)]
#[command(name = "pushflow", version, about, long_about = None)]
struct Cli {
    /// The topology file.
    #[arg(
        long,
        global = true,
        env = "PUSHFLOW_TOPOLOGY",
        default_value = "topology.yaml"
    )]
    topology: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "PUSHFLOW_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every component of the topology in one process (the registry
    /// too), applying the topology first. Ctrl-C / SIGTERM drains and
    /// commits.
    Up {
        /// Components (by name) not to run, e.g. `registry` when a
        /// Confluent Schema Registry is used instead.
        #[arg(long, value_delimiter = ',')]
        skip: Vec<String>,
    },
    /// The whole story on the local defaults: subscribers, a campaign
    /// through the ingest API, pushes decrypted by push-sim, service-worker
    /// pings, billing and the lake, then a report checking them against
    /// what the demo sent.
    Demo(demo::DemoArgs),
    /// Check or apply topology.yaml.
    #[command(subcommand)]
    Topology(commands::topology::TopologyCommand),
    /// Run the Confluent-compatible schema registry alone, on
    /// PUSHFLOW_REGISTRY_ADDR.
    Registry,
    /// Run the HTTP front door (events, pings, sw.js) alone on
    /// PUSHFLOW_INGEST_ADDR: the topology's `ingest` component, or one with
    /// default settings; or hash a token, or benchmark pings.
    Ingest {
        #[command(subcommand)]
        command: Option<commands::ingest::IngestCommand>,
    },
    /// Run the push-service simulator alone (VAPID check, aes128gcm
    /// decryption, injected faults); or print a VAPID key pair, or ask a
    /// running simulator for test subscribers.
    PushSim(commands::push_sim::PushSimArgs),
    /// Run the merchant API and dashboard page alone on
    /// PUSHFLOW_DASHBOARD_ADDR (default 127.0.0.1:8082): the topology's
    /// `dashboard` component, or one with default settings (tokens then
    /// from PUSHFLOW_DASHBOARD_TOKENS).
    Dashboard,
    /// Run one component of the topology alone.
    Run {
        /// The component's name in topology.yaml.
        component: String,
    },
    /// Print a month's billed impressions and clicks per store (the view
    /// billing_monthly_impressions).
    Billing(commands::billing::BillingArgs),
    /// Rebuild derived state from the Kafka log and compare it with the
    /// live state.
    #[command(subcommand)]
    Replay(commands::replay::ReplayCommand),
    /// Measure throughput against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// The audit lake: DDL for Athena / Glue and Trino.
    #[command(subcommand)]
    Lake(commands::lake::LakeCommand),
    /// Run SQL over the Parquet lake (DataFusion); one table per topic,
    /// e.g. notification_delivered, with partition columns dt and hour.
    Query(commands::lake::QueryArgs),
}

/// What `main` reports: exit 2 for configuration errors, 1 otherwise.
pub enum Failure {
    /// Bad configuration (exit 2).
    Config(String),
    /// Anything else (exit 1).
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

/// A component's error that knows whether it is the caller's configuration
/// or arguments (each crate's `is_config`).
pub trait ConfigAware: std::fmt::Display + Into<anyhow::Error> {
    /// Whether the binary exits with code 2.
    fn is_config(&self) -> bool;
}

/// Implements [`ConfigAware`] by the error's own `is_config`.
macro_rules! config_aware {
    ($($error:ty),*) => {$(
        impl ConfigAware for $error {
            fn is_config(&self) -> bool {
                <$error>::is_config(self)
            }
        }
    )*};
}

config_aware!(
    pushflow_aggregate::AggregateError,
    pushflow_analytics::AnalyticsError,
    pushflow_ingest::IngestError,
    pushflow_dashboard::DashboardError,
    pushflow_s3_parquet::LakeError
);

/// Maps a component's error to the exit code: 2 for configuration, else 1.
pub fn failure<E: ConfigAware>(e: E) -> Failure {
    match e.is_config() {
        true => Failure::Config(e.to_string()),
        false => Failure::Other(e.into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_demo = matches!(cli.command, Command::Demo(_));
    if is_demo {
        // The demo's push service is push-sim on http://127.0.0.1 (dispatch
        // reads this when validating); set before any thread exists.
        std::env::set_var("PUSHFLOW_ALLOW_INSECURE_PUSH", "1");
    }
    // The demo draws progress bars: only warnings and errors in between.
    let level = if is_demo { "warn" } else { "info" };
    pushflow_runtime::telemetry::init_tracing_at(cli.log_json, level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let topology = &cli.topology;
        match cli.command {
            Command::Up { skip } => commands::up::up(topology, &skip).await,
            Command::Demo(args) => demo::run(topology, &args).await,
            Command::Topology(cmd) => commands::topology::run(topology, cmd).await,
            Command::Registry => commands::up::run_one(topology, None).await,
            Command::Ingest { command } => commands::ingest::run(topology, command)
                .await
                .map_err(failure),
            Command::PushSim(args) => Ok(commands::push_sim::run(topology, args).await?),
            Command::Dashboard => commands::serve_alone::dashboard(topology)
                .await
                .map_err(failure),
            Command::Run { component } => commands::up::run_one(topology, Some(&component)).await,
            Command::Billing(args) => commands::billing::run(topology, &args)
                .await
                .map_err(failure),
            Command::Replay(cmd) => commands::replay::run(topology, &cmd).await,
            Command::Bench(cmd) => commands::bench::run(topology, cmd).await,
            Command::Lake(cmd) => commands::lake::lake(topology, &cmd).await.map_err(failure),
            Command::Query(args) => commands::lake::query(topology, &args)
                .await
                .map_err(failure),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `pushflow`: one binary, every component and tool as a subcommand.
//!
//! Configuration comes from `topology.yaml` (`--topology`, or
//! `PUSHFLOW_TOPOLOGY`) with `PUSHFLOW_*` environment variables overriding
//! its `services:`. A bad topology exits with code 2 and a message naming
//! the file, the entry and the field.

mod commands;
mod components;
mod demo;

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
        command: Option<pushflow_ingest::cli::IngestCommand>,
    },
    /// Run the push-service simulator alone (VAPID check, aes128gcm
    /// decryption, injected faults); or print a VAPID key pair, or ask a
    /// running simulator for test subscribers.
    PushSim(pushflow_push_sim::cli::PushSimArgs),
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
    Billing(pushflow_aggregate::cli::BillingArgs),
    /// Rebuild derived state from the Kafka log and compare it with the
    /// live state.
    #[command(subcommand)]
    Replay(ReplayCommand),
    /// Measure throughput against a baseline measured in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The audit lake: DDL for Athena / Glue and Trino.
    #[command(subcommand)]
    Lake(pushflow_s3_parquet::cli::LakeCommand),
    /// Run SQL over the Parquet lake (DataFusion); one table per topic,
    /// e.g. notification_delivered, with partition columns dt and hour.
    Query(pushflow_s3_parquet::cli::QueryArgs),
}

/// `pushflow replay …`
#[derive(Debug, Subcommand)]
enum ReplayCommand {
    /// Rebuild the aggregates into fresh tables and report any difference
    /// from the live ones.
    Aggregate(pushflow_aggregate::cli::ReplayArgs),
    /// Rebuild the analytics tables into a fresh schema and report any
    /// difference from the live ones (exit 1 when a row differs).
    Analytics(pushflow_analytics::cli::ReplayArgs),
}

/// `pushflow bench …`
#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Aggregate: broker → Postgres, in-process core, raw-consume ceiling,
    /// one-upsert-per-event baseline.
    Aggregate(pushflow_aggregate::cli::BenchArgs),
    /// Parquet sink: broker → Parquet on local disk, in-process encode
    /// rate, ArrowWriter ceiling and raw-consume rate.
    Sink(pushflow_s3_parquet::cli::BenchArgs),
    /// Dispatch: encrypted, VAPID-signed pushes to push-sim on loopback,
    /// against the web-push crate used the plain way.
    Dispatch(pushflow_dispatch::cli::BenchArgs),
}

/// Maps a lake command's error to the exit code.
fn lake_failure(e: pushflow_s3_parquet::LakeError) -> Failure {
    match e.is_config() {
        true => Failure::Config(e.to_string()),
        false => Failure::Other(e.into()),
    }
}

/// Maps an aggregate command's error to the exit code.
fn aggregate_failure(e: pushflow_aggregate::AggregateError) -> Failure {
    match e.is_config() {
        true => Failure::Config(e.to_string()),
        false => Failure::Other(e.into()),
    }
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
        match cli.command {
            Command::Up { skip } => commands::up::up(&cli.topology, &skip).await,
            Command::Demo(args) => demo::run(&cli.topology, &args).await,
            Command::Topology(cmd) => commands::topology::run(&cli.topology, cmd).await,
            Command::Registry => commands::up::run_one(&cli.topology, None).await,
            Command::Ingest { command } => pushflow_ingest::cli::run(&cli.topology, command)
                .await
                .map_err(|e| match e.is_config() {
                    true => Failure::Config(e.to_string()),
                    false => Failure::Other(e.into()),
                }),
            Command::PushSim(args) => pushflow_push_sim::cli::run(&cli.topology, args)
                .await
                .map_err(|e| Failure::Other(e.into())),
            Command::Dashboard => pushflow_dashboard::cli::run(&cli.topology)
                .await
                .map_err(|e| match e.is_config() {
                    true => Failure::Config(e.to_string()),
                    false => Failure::Other(e.into()),
                }),
            Command::Bench(BenchCommand::Dispatch(args)) => pushflow_dispatch::cli::bench(&args)
                .await
                .map_err(|e| Failure::Other(e.into())),
            Command::Run { component } => {
                commands::up::run_one(&cli.topology, Some(&component)).await
            }
            Command::Billing(args) => pushflow_aggregate::cli::billing(&cli.topology, &args)
                .await
                .map_err(aggregate_failure),
            Command::Replay(ReplayCommand::Aggregate(args)) => {
                pushflow_aggregate::cli::replay(&cli.topology, &args)
                    .await
                    .map_err(aggregate_failure)
            }
            Command::Replay(ReplayCommand::Analytics(args)) => {
                pushflow_analytics::cli::replay(&cli.topology, &args)
                    .await
                    .map_err(|e| match e.is_config() {
                        true => Failure::Config(e.to_string()),
                        false => Failure::Other(e.into()),
                    })
            }
            Command::Bench(BenchCommand::Sink(args)) => {
                pushflow_s3_parquet::cli::bench(&cli.topology, &args)
                    .await
                    .map_err(lake_failure)
            }
            Command::Lake(cmd) => pushflow_s3_parquet::cli::lake(&cli.topology, &cmd)
                .await
                .map_err(lake_failure),
            Command::Query(args) => pushflow_s3_parquet::cli::query(&cli.topology, &args)
                .await
                .map_err(lake_failure),
            Command::Bench(BenchCommand::Aggregate(args)) => {
                pushflow_aggregate::cli::bench(&cli.topology, &args)
                    .await
                    .map_err(aggregate_failure)
            }
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

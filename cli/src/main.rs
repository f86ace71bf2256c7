//! `pushflow`: one binary, every component and tool as a subcommand.
//!
//! Configuration comes from `topology.yaml` (`--topology`, or
//! `PUSHFLOW_TOPOLOGY`) with `PUSHFLOW_*` environment variables overriding
//! its `services:`. A bad topology exits with code 2 and a message naming
//! the file, the entry and the field.

mod commands;
mod components;

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
    /// Check or apply topology.yaml.
    #[command(subcommand)]
    Topology(commands::topology::TopologyCommand),
    /// Run the Confluent-compatible schema registry alone, on
    /// PUSHFLOW_REGISTRY_ADDR.
    Registry,
    /// Run one component of the topology alone.
    Run {
        /// The component's name in topology.yaml.
        component: String,
    },
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
    pushflow_runtime::telemetry::init_tracing(cli.log_json);
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
            Command::Topology(cmd) => commands::topology::run(&cli.topology, cmd).await,
            Command::Registry => commands::up::run_one(&cli.topology, None).await,
            Command::Run { component } => {
                commands::up::run_one(&cli.topology, Some(&component)).await
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

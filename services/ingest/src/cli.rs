//! `pushflow ingest [hash-token TOKEN | bench …]`: runs the topology's
//! `ingest` component alone (or one with default settings when none is
//! declared), prints a token's hash, or benchmarks pings.

use pushflow_runtime::component::{cancel_on_signal, Component, Context};
use pushflow_runtime::http::Health;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::{CancellationToken, RuntimeError};
use std::path::Path;
use std::sync::Arc;

use crate::bench::BenchArgs;
use crate::IngestError;

/// What `pushflow ingest` can do besides serving.
#[derive(Debug, clap::Subcommand)]
pub enum IngestCommand {
    /// Print the SHA-256 of a bearer token, to put in the topology's
    /// `tokens: [{name, sha256, topics}]`.
    HashToken {
        /// The token (plain text).
        token: String,
    },
    /// Measure valid pings/s and p50/p99 latency of ingest (in-process,
    /// against the real broker) next to a do-nothing axum endpoint.
    Bench(BenchArgs),
}

/// Runs `pushflow ingest [command]` with the topology at `path`.
pub async fn run(path: &Path, command: Option<IngestCommand>) -> Result<(), IngestError> {
    match command {
        Some(IngestCommand::HashToken { token }) => {
            println!("{}", crate::hash_token(&token));
            Ok(())
        }
        Some(IngestCommand::Bench(args)) => {
            let (brokers, kafka) = match Topology::load(path) {
                Ok(t) => (t.services.brokers, t.kafka),
                Err(_) => (
                    std::env::var("PUSHFLOW_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
                    Default::default(),
                ),
            };
            crate::bench::run(&brokers, &kafka, &args).await.map(|_| ())
        }
        None => serve(path).await,
    }
}

async fn serve(path: &Path) -> Result<(), IngestError> {
    let topology = Topology::load(path).map_err(RuntimeError::from)?;
    let spec = match topology.components.iter().find(|c| c.kind == "ingest") {
        Some(s) => s.clone(),
        None => serde_yaml::from_str::<ComponentSpec>("name: ingest\ntype: ingest\n")
            .expect("static spec parses"),
    };
    let component = crate::component::build(&spec, &topology, |k| std::env::var(k).ok())?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let ctx = Context {
        topology: Arc::new(topology),
        spec,
        shutdown,
        health: Health::default(),
    };
    Box::new(component).run(ctx).await?;
    Ok(())
}

//! `pushflow ingest [hash-token TOKEN | bench …]`: runs the topology's
//! `ingest` component alone (or one with default settings when none is
//! declared), prints a token's hash, or benchmarks pings.

use pushflow_ingest::{IngestComponent, IngestError};
use std::path::Path;

use super::bench::{self, ingest::BenchArgs};
use super::serve_alone::serve_alone;

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
            println!("{}", pushflow_ingest::hash_token(&token));
            Ok(())
        }
        Some(IngestCommand::Bench(args)) => {
            let services = bench::Services::of(path).map_err(|message| IngestError::Config {
                field: "--topology".into(),
                message,
            })?;
            bench::ingest::run(&services.brokers, &services.kafka, &args)
                .await
                .map(|_| ())
        }
        None => {
            serve_alone(path, "ingest", |spec, t| {
                IngestComponent::with_env(spec, t, |k| std::env::var(k).ok())
            })
            .await
        }
    }
}

//! The batch commit, run in the background so that fetching and decoding
//! the next batch overlaps with the Postgres transaction of this one.
//!
//! Guarantee: transactions run one at a time, in batch order, on one
//! connection; batch N+1 is handed over only after batch N committed. A
//! failed transaction is retried with the SAME staged batch (its `seen`
//! check re-runs inside the new transaction) until it commits; only an
//! error retrying cannot fix (or a shutdown) gives up, and the processor
//! then stops with nothing after the last commit written — a restart
//! resumes from the offsets in Postgres.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::config::Window;
use crate::core::Staged;
use crate::store::{self, Committed};
use crate::AggregateError;

/// A staged batch and what was counted while staging it.
#[derive(Debug)]
pub struct Batch {
    /// The staged batch.
    pub staged: Staged,
    /// Records handled (not skipped as already committed).
    pub handled: u64,
    /// Records sent to a dead-letter topic.
    pub dead: u64,
    /// When processing of the batch started.
    pub started: Instant,
}

/// A committed batch, with the connection back.
pub struct Settled {
    /// The connection, for the next batch.
    pub client: Client,
    /// What the transaction did.
    pub committed: Committed,
    /// The batch.
    pub batch: Batch,
}

/// What a commit task needs besides the batch.
#[derive(Clone)]
pub struct Target {
    /// Postgres URL (to reconnect).
    pub database_url: String,
    /// Schema.
    pub schema: String,
    /// Windows.
    pub windows: Arc<Vec<Window>>,
    /// Component name (logs).
    pub component: String,
    /// Gives up retrying once cancelled.
    pub shutdown: pushflow_runtime::CancellationToken,
}

/// Commits `batch` in the background, retrying retryable failures.
pub fn spawn(
    target: Target,
    client: Option<Client>,
    batch: Batch,
) -> JoinHandle<Result<Settled, AggregateError>> {
    tokio::spawn(async move {
        let mut client = client;
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                if client.as_ref().is_none_or(Client::is_closed) {
                    client = Some(store::connect(&target.database_url).await?);
                }
                let c = client.as_mut().expect("connected above");
                store::commit(c, &target.schema, &target.windows, &batch.staged).await
            };
            match attempt.await {
                Ok(committed) => {
                    let client = client.expect("a commit succeeded on it");
                    return Ok(Settled {
                        client,
                        committed,
                        batch,
                    });
                }
                Err(e) if e.is_retryable() && !target.shutdown.is_cancelled() => {
                    metrics::counter!("pushflow_batch_retries_total", "component" => target.component.clone()).increment(1);
                    tracing::error!(component = %target.component, error = %e, backoff_ms = backoff.as_millis() as u64, "batch transaction failed; retrying the same batch");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        }
    })
}

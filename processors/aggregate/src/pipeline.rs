//! The batch commits, run in the background by one task per lane so that
//! fetching and decoding the next batches overlaps with the Postgres
//! transactions of earlier ones.
//!
//! Guarantee: partitions are split into lanes (`partition % lanes`, see
//! [`crate::tally::Staged::split`]); a lane's part of a batch is committed
//! in ONE transaction on the lane's own connection, holding everything of
//! its partitions: `seen` rows, deltas, late events and offsets. A lane
//! commits its parts one at a time, in the order they were queued, so per
//! partition transactions run in batch order; lanes do not wait for each
//! other, and a lane's queue holds at most [`QUEUE`] parts (the consumer
//! hands records one partition's run at a time, so a lane may get several
//! batches in a row while another has none). A failed transaction is
//! retried with the SAME staged part (its `seen` check re-runs inside the
//! new transaction) until it commits; only an error retrying cannot fix
//! (or a shutdown) gives up: the lane stops, the processor stops, and
//! nothing after the last commit of each partition is written — a restart
//! resumes from the offsets in Postgres. Two lanes may update the same
//! window and monthly rows; both lock them in key order (sorted deltas)
//! after the `seen` insert, so they cannot deadlock (a deadlock error would
//! be retried anyway).

use pushflow_runtime::postgres::Reconnecting;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::config::Window;
use crate::store::{self, Committed};
use crate::tally::Staged;
use crate::AggregateError;

/// Parts a lane holds queued beyond the one it is committing.
pub const QUEUE: usize = 8;

/// A staged part of a batch and what was counted while staging it.
#[derive(Debug)]
pub struct Batch {
    /// The staged part.
    pub staged: Staged,
    /// Records handled (not skipped as already committed).
    pub handled: u64,
    /// Records sent to a dead-letter topic.
    pub dead: u64,
    /// When processing of the batch started.
    pub started: Instant,
}

/// A committed part.
pub struct Settled {
    /// What the transaction did.
    pub committed: Committed,
    /// The part.
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

/// The commit lanes: one task and connection each.
pub(crate) struct Lanes {
    queues: Vec<mpsc::Sender<Batch>>,
    done: mpsc::UnboundedReceiver<Result<Settled, AggregateError>>,
    /// Parts queued and not yet reported.
    pending: usize,
}

impl Lanes {
    /// Starts `n` lanes (at least one); each connects on its first part.
    pub(crate) fn start(target: &Target, n: usize) -> Lanes {
        let (report, done) = mpsc::unbounded_channel();
        let queues = (0..n.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(lane(target.clone(), rx, report.clone()));
                tx
            })
            .collect();
        Lanes {
            queues,
            done,
            pending: 0,
        }
    }

    /// Number of lanes.
    pub(crate) fn len(&self) -> usize {
        self.queues.len()
    }

    /// Queues `part` on `lane`; waits only while that lane's queue is full.
    pub(crate) async fn submit(&mut self, lane: usize, part: Batch) -> Result<(), AggregateError> {
        if self.queues[lane].send(part).await.is_err() {
            // The lane stopped after a failure it reported: return that.
            self.drain().await?;
            return Err(AggregateError::Runtime(
                pushflow_runtime::RuntimeError::Component {
                    component: "aggregate".into(),
                    message: "a commit lane stopped without reporting why".into(),
                    retryable: true,
                },
            ));
        }
        self.pending += 1;
        Ok(())
    }

    /// The parts committed so far, without waiting.
    pub(crate) fn ready(&mut self) -> Result<Vec<Settled>, AggregateError> {
        let mut out = Vec::new();
        while let Ok(r) = self.done.try_recv() {
            self.pending -= 1;
            out.push(r?);
        }
        Ok(out)
    }

    /// Waits until every queued part is committed.
    pub(crate) async fn drain(&mut self) -> Result<Vec<Settled>, AggregateError> {
        let mut out = Vec::new();
        while self.pending > 0 {
            let Some(r) = self.done.recv().await else {
                break;
            };
            self.pending -= 1;
            out.push(r?);
        }
        Ok(out)
    }
}

/// One lane: commits its parts in order on its own connection; stops at
/// the first part that cannot be committed.
async fn lane(
    target: Target,
    mut parts: mpsc::Receiver<Batch>,
    report: mpsc::UnboundedSender<Result<Settled, AggregateError>>,
) {
    let mut client = Reconnecting::new(target.database_url.clone(), None);
    while let Some(batch) = parts.recv().await {
        let result = commit(&target, &mut client, &batch.staged).await;
        let failed = result.is_err();
        let _ = report.send(result.map(|committed| Settled { committed, batch }));
        if failed {
            return;
        }
    }
}

/// Commits `staged` on `client` (connecting if needed), retrying the same
/// part until it commits or cannot.
async fn commit(
    target: &Target,
    client: &mut Reconnecting,
    staged: &Staged,
) -> Result<Committed, AggregateError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let c = client.get().await?;
            store::commit(c, &target.schema, &target.windows, staged).await
        };
        match attempt.await {
            Ok(committed) => return Ok(committed),
            Err(e) if e.is_retryable() && !target.shutdown.is_cancelled() => {
                metrics::counter!("pushflow_batch_retries_total", "component" => target.component.clone()).increment(1);
                tracing::warn!(component = %target.component, error = %e, backoff_ms = backoff.as_millis() as u64, "batch transaction failed; retrying the same batch");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

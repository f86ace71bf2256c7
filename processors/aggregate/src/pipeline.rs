//! The batch commits, run in the background by one task per lane so that
//! fetching and decoding the next batches overlaps with the Postgres
//! transactions of earlier ones.
//!
//! Guarantee: partitions are split into lanes (`partition % lanes`, see
//! [`crate::tally::Staged::split`]); a lane commits its parts in the order
//! they were queued, each in ONE transaction on the lane's own connection
//! holding everything of its partitions: fenced offsets, changelog rows,
//! deltas and late events. When several parts are queued, the lane merges
//! them into one transaction (group commit: merged deltas, all positions,
//! one changelog row per partition — fewer upserted rows per event), and
//! waits for more until the commit interval since the first part's batch
//! started is over (at most [`MERGE`] parts; a bounded run's last part
//! ends the wait at once, see [`Batch::flush`]); per
//! partition, transactions still run in batch order. Lanes do not wait for
//! each other, and a lane's queue holds at most [`QUEUE`] parts. A failed
//! transaction is retried with the SAME staged parts until it commits; an
//! error retrying cannot fix (or a shutdown) stops the lane and the
//! processor, and nothing after the last commit of each partition is
//! written — a restart resumes from Postgres. A FENCED transaction (another
//! instance moved a partition's stored offset) is rolled back and its parts
//! are reported refused; the lane then refuses every part of the same epoch
//! still queued (they were staged on top of the refused one) until the
//! processor has reloaded the partitions and moved to a new epoch. Two
//! lanes may update the same window and monthly rows; both lock them in
//! key order (sorted deltas), so they cannot deadlock (a deadlock error
//! would be retried anyway).

use pushflow_runtime::postgres::Reconnecting;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use pushflow_runtime::kafka::PartitionKey;

use crate::config::Window;
use crate::store::{self, Committed};
use crate::tally::Staged;
use crate::AggregateError;

/// Parts a lane holds queued beyond the one it is committing.
pub const QUEUE: usize = 8;

/// Most parts merged into one transaction.
pub const MERGE: usize = QUEUE + 1;

/// A staged part of a batch.
#[derive(Debug)]
pub struct Batch {
    /// The staged part.
    pub staged: Staged,
    /// When processing of the batch started.
    pub started: Instant,
    /// The processor's epoch when staged (it moves on after a reload).
    pub epoch: u64,
    /// A bounded run has read everything it was to read with this part:
    /// its lane commits what it gathered without waiting out the interval.
    pub flush: bool,
}

/// What became of a part.
#[derive(Debug)]
pub enum Outcome {
    /// Committed; what its transaction did (a merged transaction reports
    /// its totals with its first part, zeros with the others).
    Committed(Committed),
    /// Not committed: its transaction was fenced (`fenced` names the
    /// partitions whose stored offset moved), or it was staged on top of
    /// such a part (`fenced` empty). Its partitions must be reloaded.
    Refused {
        /// Partitions whose stored offset another instance moved.
        fenced: Vec<PartitionKey>,
    },
}

/// A part the lane is done with.
pub struct Settled {
    /// What became of it.
    pub outcome: Outcome,
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
    /// Most parts merged into one transaction.
    pub merge: usize,
    /// How long a lane gathers parts behind the first (see
    /// [`crate::config::AggregateSettings::commit_interval`]).
    pub commit_interval: Duration,
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

/// One lane: commits its parts in order on its own connection (merging
/// what is queued); refuses parts of a fenced epoch; stops at the first
/// part that cannot be committed.
async fn lane(
    target: Target,
    mut parts: mpsc::Receiver<Batch>,
    report: mpsc::UnboundedSender<Result<Settled, AggregateError>>,
) {
    let mut client = Reconnecting::new(target.database_url.clone(), None);
    // Parts of this epoch or older are refused (a part of it was fenced).
    let mut refused_upto: Option<u64> = None;
    let mut carry: Option<Batch> = None;
    loop {
        let first = match carry.take() {
            Some(b) => b,
            None => match parts.recv().await {
                Some(b) => b,
                None => return,
            },
        };
        if refused_upto.is_some_and(|e| first.epoch <= e) {
            let refused = Outcome::Refused { fenced: Vec::new() };
            let _ = report.send(Ok(Settled {
                outcome: refused,
                batch: first,
            }));
            continue;
        }
        // Gather what is queued, and what comes until the commit
        // interval (counted from the first batch's start) is over.
        let deadline = tokio::time::Instant::from_std(first.started) + target.commit_interval;
        let mut group = vec![first];
        while group.len() < target.merge.max(1) && !group.iter().any(|b| b.flush) {
            match tokio::time::timeout_at(deadline, parts.recv()).await {
                Ok(Some(b)) if b.epoch == group[0].epoch => group.push(b),
                Ok(Some(b)) => {
                    carry = Some(b);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let merged = match group.len() {
            1 => None,
            _ => {
                let mut refs: Vec<&mut Staged> = group.iter_mut().map(|b| &mut b.staged).collect();
                Some(Staged::merge(&mut refs))
            }
        };
        let staged = merged.as_ref().unwrap_or(&group[0].staged);
        metrics::histogram!("pushflow_aggregate_parts_per_transaction", "component" => target.component.clone())
            .record(group.len() as f64);
        let result = commit(&target, &mut client, staged).await;
        match result {
            Ok(committed) => {
                for (i, batch) in group.into_iter().enumerate() {
                    let c = if i == 0 {
                        committed
                    } else {
                        Committed::default()
                    };
                    let _ = report.send(Ok(Settled {
                        outcome: Outcome::Committed(c),
                        batch,
                    }));
                }
            }
            Err(e) if e.fenced().is_some() => {
                let fenced = e.fenced().map(<[PartitionKey]>::to_vec).unwrap_or_default();
                tracing::warn!(component = %target.component, partitions = ?fenced, "commit fenced: another instance moved these partitions' stored offsets; rolled back, the partitions are reloaded from Postgres");
                metrics::counter!("pushflow_aggregate_fenced_total", "component" => target.component.clone()).increment(1);
                refused_upto = Some(group[0].epoch);
                for (i, batch) in group.into_iter().enumerate() {
                    let fenced = if i == 0 { fenced.clone() } else { Vec::new() };
                    let _ = report.send(Ok(Settled {
                        outcome: Outcome::Refused { fenced },
                        batch,
                    }));
                }
            }
            Err(e) => {
                let _ = report.send(Err(e));
                return;
            }
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

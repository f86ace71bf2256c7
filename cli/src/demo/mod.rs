//! `pushflow demo`: the whole story on the local defaults, in one process.
//!
//! Starts every component of the topology (as `pushflow up` does) except
//! the topology's push-sim, which the demo replaces with its own in-process
//! simulator so it can read what browsers received. Then, a phase at a
//! time, each with a progress bar: N simulated subscribers announced on
//! `subscription.created`; a campaign created and launched through the
//! ingest API; pushes sent by dispatch and decrypted by push-sim; simulated
//! service workers pinging `delivered` / `clicked` through `/v1/pings` with
//! the tokens found in the decrypted payloads (some pings repeated, some
//! held back and sent late); the aggregate's billing view; the Parquet lake;
//! the dashboard's API (when the topology has a `dashboard`), whose URL the
//! report prints. A second campaign is scheduled for the next day, so the
//! dashboard also lists a scheduled one. `--serve` keeps everything running
//! after the report until Ctrl-C / SIGTERM, for a person to look.
//!
//! Guarantee: the report compares pushflow's outputs with the demo's own
//! ground truth (what it sent) and says which checks failed; the command
//! exits non-zero when any did. Every run uses a fresh merchant
//! (`store_id`), so reruns on the same durable broker and database do not
//! disturb each other's figures.

mod browsers;
mod checks;
mod report;
mod setup;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::Failure;

/// `pushflow demo` arguments.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Simulated subscribers of the demo merchant (one notification each).
    #[arg(long, default_value_t = 10_000)]
    pub subscribers: usize,
    /// Fraction of delivered notifications whose service worker pings
    /// (the seed's peak hour: about 30 %).
    #[arg(long, default_value_t = 0.30)]
    pub delivered: f64,
    /// Fraction of the pinged notifications that are clicked (the seed's
    /// peak hour: 5 % of them, 1.5 % of all notifications).
    #[arg(long, default_value_t = 0.05)]
    pub clicked: f64,
    /// Fraction of pings a service worker sends twice (retries after a
    /// lost response).
    #[arg(long, default_value_t = 0.05)]
    pub repeated: f64,
    /// Fraction of pings held back and sent after the others were counted
    /// (a browser that was offline).
    #[arg(long, default_value_t = 0.03)]
    pub late: f64,
    /// Bearer token for `/v1/events` (the topology's local development
    /// token by default).
    #[arg(
        long,
        env = "PUSHFLOW_DEMO_TOKEN",
        default_value = "pushflow-dev-token"
    )]
    pub token: String,
    /// Give up on a phase after this long (default: 10 minutes plus 2 ms
    /// per subscriber, so 43 minutes for a million).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub phase_timeout: Option<Duration>,
    /// Print the report as JSON on stdout (for scripts and tests).
    #[arg(long)]
    pub json: bool,
    /// Keep everything running after the report (the pipeline, push-sim,
    /// the dashboard) so a person can look, until Ctrl-C / SIGTERM.
    #[arg(long)]
    pub serve: bool,
}

impl DemoArgs {
    /// How long one phase may take.
    pub fn phase_timeout(&self) -> Duration {
        self.phase_timeout.unwrap_or_else(|| {
            Duration::from_secs(600) + Duration::from_millis(2 * self.subscribers as u64)
        })
    }
}

/// A phase's progress bar.
struct Phases {
    multi: MultiProgress,
}

impl Phases {
    fn new(hidden: bool) -> Phases {
        let target = if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Phases {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    fn bar(&self, name: &str, len: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos:>9}/{len:9} {per_sec:>12} {elapsed:>4} {msg}",
        )
        .expect("static template")
        .progress_chars("=> ");
        self.multi
            .add(ProgressBar::new(len))
            .with_style(style)
            .with_prefix(name.to_string())
    }
}

/// `pushflow demo`.
pub async fn run(path: &Path, args: &DemoArgs) -> Result<(), Failure> {
    checks::require_query()?;
    check_args(args)?;
    let started = Instant::now();
    let (topology, components) = setup::prepare(path)?;
    let env = setup::start(topology, components).await?;
    let phases = Phases::new(args.json);
    let mut report = match setup::scenario(&env, args, &phases).await {
        Ok(r) => r,
        Err(e) => {
            env.stop().await;
            return Err(e);
        }
    };
    report.total_seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        print!("{}", report.render());
    }
    if args.serve {
        let url = report.dashboard.as_ref().map(|d| d.url.clone());
        eprintln!(
            "\nstill serving (ingest http://{}{}); Ctrl-C or SIGTERM stops everything",
            env.topology.services.ingest_addr,
            url.map(|u| format!(", dashboard {u}")).unwrap_or_default()
        );
        // Returns once a signal drained every component (or one failed).
        env.serve().await;
    } else {
        env.stop().await;
    }
    match report.failed_checks().is_empty() {
        true => Ok(()),
        false => Err(Failure::Other(anyhow::anyhow!(
            "demo checks failed: {}",
            report.failed_checks().join("; ")
        ))),
    }
}

fn check_args(a: &DemoArgs) -> Result<(), Failure> {
    if a.subscribers == 0 {
        return Err(Failure::Config("--subscribers must be at least 1".into()));
    }
    for (name, v) in [
        ("--delivered", a.delivered),
        ("--clicked", a.clicked),
        ("--repeated", a.repeated),
        ("--late", a.late),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(Failure::Config(format!(
                "{name} {v}: write a fraction between 0 and 1, e.g. 0.05"
            )));
        }
    }
    Ok(())
}

/// A name no earlier demo run used: `prefix` and 12 random hex digits.
fn fresh_id(prefix: &str) -> String {
    format!("{prefix}-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

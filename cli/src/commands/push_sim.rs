//! `pushflow push-sim`: run the simulator alone, print a VAPID key pair,
//! or ask a running simulator for test subscribers.

use pushflow_push_sim::crypto::vapid_keys;
use pushflow_push_sim::{server, Behaviour, Publisher, RandomRule, Rule, SimError, SimState};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::component::cancel_on_signal;
use pushflow_runtime::http::{admin_router, serve, Health};
use pushflow_runtime::kafka::Producer;
use pushflow_runtime::topology::Topology;
use pushflow_runtime::CancellationToken;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `pushflow push-sim [OPTIONS] [COMMAND]`
#[derive(Debug, clap::Args)]
pub struct PushSimArgs {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<PushSimCommand>,
    /// Where to listen; endpoints are http://<addr>/push/<subscriber_id>.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub addr: String,
    /// A JSON file with the behaviour (as POST /sim/behaviour takes it).
    #[arg(long)]
    pub behaviour: Option<PathBuf>,
    /// Answer this fraction of requests with --fail-status.
    #[arg(long, default_value_t = 0.0)]
    pub fail_fraction: f64,
    /// Status for --fail-fraction (e.g. 500, 429, 410).
    #[arg(long, default_value_t = 500)]
    pub fail_status: u16,
    /// Retry-After seconds sent with --fail-status.
    #[arg(long)]
    pub retry_after: Option<u64>,
    /// Subscribers answered 410 Gone (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub gone: Vec<String>,
    /// Delay every accepted push by this many milliseconds.
    #[arg(long)]
    pub delay_ms: Option<u64>,
    /// Share of accepted pushes decrypted and checked (VAPID is always checked).
    #[arg(long, default_value_t = 1.0)]
    pub verify_sample: f64,
    /// Do not keep raw bodies and headers (benchmarks).
    #[arg(long)]
    pub no_keep_raw: bool,
    /// Do not publish generated subscribers to Kafka (benchmarks).
    #[arg(long)]
    pub no_publish: bool,
}

/// Subcommands of `pushflow push-sim`.
#[derive(Debug, clap::Subcommand)]
pub enum PushSimCommand {
    /// Print a fresh VAPID key pair: the private key for
    /// PUSHFLOW_VAPID_PRIVATE_KEY and the public applicationServerKey.
    Keys,
    /// Ask a running simulator to generate subscribers (keys it keeps) and
    /// publish them as subscription.created.
    Subscribers {
        /// The store they subscribe to.
        #[arg(long)]
        store: String,
        /// How many.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// The running simulator.
        #[arg(long, default_value = "http://127.0.0.1:8090")]
        sim: String,
    },
}

impl PushSimArgs {
    /// The behaviour the flags describe.
    pub fn behaviour(&self) -> Result<Behaviour, SimError> {
        let bad = |m: String| SimError::BadKey(m);
        let mut b = match &self.behaviour {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| bad(format!("{}: {e}", p.display())))?;
                serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", p.display())))?
            }
            None => Behaviour::default(),
        };
        if self.fail_fraction > 0.0 {
            let rule = Rule {
                status: self.fail_status,
                retry_after: self.retry_after,
                delay_ms: None,
                times: None,
            };
            b.random.push(RandomRule {
                fraction: self.fail_fraction,
                rule,
            });
        }
        if let Some(ms) = self.delay_ms {
            let rule = Rule {
                status: 201,
                retry_after: None,
                delay_ms: Some(ms),
                times: None,
            };
            b.random.push(RandomRule {
                fraction: 1.0,
                rule,
            });
        }
        for id in &self.gone {
            b.subscribers.insert(
                id.clone(),
                Rule {
                    status: 410,
                    retry_after: None,
                    delay_ms: None,
                    times: None,
                },
            );
        }
        b.verify_sample = self.verify_sample;
        b.keep_raw = !self.no_keep_raw;
        Ok(b)
    }
}

/// Runs `pushflow push-sim`.
pub async fn run(topology: &Path, args: PushSimArgs) -> Result<(), SimError> {
    match &args.command {
        Some(PushSimCommand::Keys) => {
            let (private, public) = vapid_keys();
            println!("PUSHFLOW_VAPID_PRIVATE_KEY={private}");
            println!("applicationServerKey (VAPID public key)={public}");
            Ok(())
        }
        Some(PushSimCommand::Subscribers { store, count, sim }) => {
            let url = format!("{}/sim/subscribers", sim.trim_end_matches('/'));
            let resp = reqwest::Client::new()
                .post(&url)
                .json(&serde_json::json!({"store": store, "count": count}))
                .send()
                .await
                .map_err(|e| SimError::Publish(format!("{url}: {e}")))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| SimError::Publish(e.to_string()))?;
            if !status.is_success() {
                return Err(SimError::Publish(format!(
                    "{url} answered {status}: {body}"
                )));
            }
            let n = body["subscribers"].as_array().map(Vec::len).unwrap_or(0);
            println!(
                "{n} subscribers of store {store} generated; published to subscription.created: {}",
                body["published"]
            );
            Ok(())
        }
        None => serve_cli(topology, &args).await,
    }
}

async fn serve_cli(topology: &Path, args: &PushSimArgs) -> Result<(), SimError> {
    let behaviour = args.behaviour()?;
    let publisher = match Topology::load(topology) {
        _ if args.no_publish => None,
        Ok(t) => {
            let producer = Producer::new(&t.services.brokers, &t.kafka, Duration::from_secs(30))
                .map_err(|e| SimError::Publish(e.to_string()))?;
            let codec = Codec::for_registry(&t.services.registry_url)
                .map_err(|e| SimError::Publish(e.to_string()))?;
            Some(Publisher {
                producer,
                codec: Arc::new(codec),
                topic: "subscription.created".into(),
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "no topology: generated subscribers will not be published");
            None
        }
    };
    let (listener, local) = pushflow_push_sim::listen(&args.addr).await?;
    let state = Arc::new(SimState::new(
        format!("http://{local}"),
        behaviour,
        publisher,
    ));
    let health = Health::default();
    health.ok("push-sim");
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    println!("push-sim listening on http://{local}");
    let router = server::router(state).merge(admin_router(health));
    serve(listener, router, shutdown)
        .await
        .map_err(|e| SimError::Bind {
            addr: args.addr.clone(),
            message: e.to_string(),
        })
}

//! The demo's pipeline (the topology's components with demo settings, and
//! an in-process push simulator) and the scenario run against it.

use pushflow_push_sim::{Behaviour, Publisher, PushSim};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::http::Health;
use pushflow_runtime::kafka::Producer;
use pushflow_runtime::topology::Topology;
use pushflow_runtime::CancellationToken;
use serde_yaml::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{browsers, checks, report::Report, DemoArgs, Phases};
use crate::commands::up::Pipeline;
use crate::components::{validate_all, Validated};
use crate::Failure;

/// The running demo pipeline.
pub struct DemoEnv {
    pub topology: Arc<Topology>,
    pub pipeline: Pipeline,
    pub sim: PushSim,
    pub http: reqwest::Client,
    /// `http://<addr>` of the topology's dashboard, if it has one.
    pub dashboard: Option<String>,
}

impl DemoEnv {
    /// `http://<ingest_addr>`.
    pub fn ingest(&self) -> String {
        format!("http://{}", self.topology.services.ingest_addr)
    }

    /// Whether the topology runs a component of type `kind`.
    pub fn runs(&self, kind: &str) -> bool {
        self.topology.components.iter().any(|c| c.kind == kind)
    }

    /// Drains and stops every component.
    pub async fn stop(self) {
        self.pipeline.shutdown.cancel();
        self.serve().await
    }

    /// Keeps every component running until a signal (or a component
    /// failing for good) stops them, then returns once they drained.
    pub async fn serve(self) {
        let why = match self.pipeline.wait().await {
            Ok(()) => return,
            Err(Failure::Config(e)) => e,
            Err(Failure::Other(e)) => format!("{e:#}"),
        };
        tracing::warn!(error = %why, "a component did not stop cleanly");
    }
}

fn set(settings: &mut Value, key: &str, value: Value) {
    if settings.is_null() {
        *settings = Value::Mapping(Default::default());
    }
    if let Value::Mapping(m) = settings {
        m.insert(Value::String(key.into()), value);
    }
}

/// Loads the topology and applies the demo's changes: the lake flushes
/// after 2 s idle instead of its production interval (so the report need
/// not wait), ingest trusts the demo as a load balancer on loopback (the
/// demo's browsers each have their own `X-Forwarded-For` address, as
/// behind a real one), and the topology's push-sim is not started.
pub fn prepare(path: &Path) -> Result<(Topology, Vec<Validated>), Failure> {
    let mut t = Topology::load(path).map_err(|e| Failure::Config(e.to_string()))?;
    t.components.retain(|c| c.kind != "push-sim");
    for c in &mut t.components {
        match c.kind.as_str() {
            "s3-parquet" => set(&mut c.settings, "flush_idle", Value::String("2s".into())),
            "ingest" => set(
                &mut c.settings,
                "trusted_proxies",
                Value::Sequence(vec![
                    Value::String("127.0.0.1/32".into()),
                    Value::String("::1/128".into()),
                ]),
            ),
            _ => {}
        }
    }
    for kind in ["ingest", "dispatch", "aggregate", "s3-parquet"] {
        if !t.components.iter().any(|c| c.kind == kind) {
            return Err(Failure::Config(format!(
                "{}: the demo needs a component of type {kind}",
                t.path.display()
            )));
        }
    }
    let v = validate_all(&t).map_err(|e| Failure::Config(e.to_string()))?;
    Ok((t, v))
}

/// Starts the pipeline and the simulator and waits until every component
/// reports healthy.
pub async fn start(topology: Topology, components: Vec<Validated>) -> Result<DemoEnv, Failure> {
    let topology = Arc::new(topology);
    let shutdown = CancellationToken::new();
    pushflow_runtime::component::cancel_on_signal(shutdown.clone());
    let health = Health::default();
    eprintln!(
        "starting the pipeline (topology {})",
        topology.path.display()
    );
    let Some(pipeline) = Pipeline::start(
        topology.clone(),
        components,
        shutdown.clone(),
        health.clone(),
    )
    .await?
    else {
        return Err(Failure::Other(anyhow::anyhow!("interrupted")));
    };
    let s = &topology.services;
    let publisher = Publisher {
        producer: Producer::new(&s.brokers, &topology.kafka, Duration::from_secs(60))?,
        codec: Arc::new(Codec::for_registry(&s.registry_url)?),
        topic: "subscription.created".into(),
    };
    let behaviour = Behaviour {
        verify_sample: 1.0,
        keep_raw: false,
        ..Behaviour::default()
    };
    let sim = PushSim::start("127.0.0.1:0", behaviour, Some(publisher))
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    let dashboard = dashboard_url(&topology);
    let env = DemoEnv {
        topology,
        pipeline,
        sim,
        dashboard,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()?,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (ok, detail) = health.report();
        let ingest_up = env
            .http
            .get(format!("{}/sw.js", env.ingest()))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok && ingest_up {
            break;
        }
        if shutdown.is_cancelled() || Instant::now() > deadline {
            env.stop().await;
            return Err(Failure::Other(anyhow::anyhow!(
                "the pipeline did not become healthy: {detail}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(env)
}

/// `http://<addr>` of the topology's dashboard (its settings with
/// `PUSHFLOW_DASHBOARD_ADDR`), if it has one.
fn dashboard_url(topology: &Topology) -> Option<String> {
    let spec = topology.components.iter().find(|c| c.kind == "dashboard")?;
    let config = pushflow_dashboard::DashboardSettings::from_yaml(&spec.settings)
        .and_then(|s| s.validate(|k| std::env::var(k).ok()))
        .ok()?;
    let mut addr: std::net::SocketAddr = config.addr.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Some(format!("http://{addr}"))
}

/// Runs the phases and returns the report.
pub async fn scenario(env: &DemoEnv, args: &DemoArgs, phases: &Phases) -> Result<Report, Failure> {
    let store_id = super::fresh_id("demo-store");
    let mut report = Report::new(&store_id, args.subscribers);
    let procs = crate::procs::Sampler::start();
    procs.mark("start");
    let dlq_before = checks::dlq_records(&env.topology).await?;

    // 1. Subscribers: key pairs held by push-sim, announced on Kafka.
    let bar = phases.bar("subscribe", args.subscribers as u64);
    let t = Instant::now();
    let mut subs = Vec::with_capacity(args.subscribers);
    for chunk in chunks(args.subscribers, 5_000) {
        let events = env.sim.state.add_subscribers(&store_id, chunk);
        env.sim
            .state
            .publish(&events)
            .await
            .map_err(|e| Failure::Other(e.into()))?;
        bar.inc(chunk as u64);
        subs.extend(events.into_iter().map(|e| e.subscriber_id));
    }
    checks::wait_active(env, &store_id, args, &bar).await?;
    bar.finish_with_message("active in dispatch");
    report.phase("subscribe", t.elapsed());
    procs.mark("subscribe");

    // 2. The campaign, through the ingest API.
    let t = Instant::now();
    let campaign_id = browsers::launch_campaign(env, &store_id, &args.token).await?;
    report.campaign_id = campaign_id.clone();
    // And one for tomorrow, so the dashboard lists a scheduled campaign.
    let scheduled = browsers::schedule_campaign(env, &store_id, &args.token).await?;
    report.scheduled(&scheduled);
    report.phase("campaign", t.elapsed());
    procs.mark("campaign");

    // 3. Dispatch: every subscriber gets one decrypted push.
    let bar = phases.bar("dispatch", args.subscribers as u64);
    let t = Instant::now();
    let pushes = checks::wait_pushes(env, &campaign_id, &subs, args, &bar).await?;
    let took = t.elapsed();
    bar.finish_with_message("pushes received");
    report.dispatch(&pushes, took);
    procs.mark("dispatch");

    // 4. Service workers ping back; the late ones after the rest counted.
    let plan = browsers::Plan::draw(&pushes.payloads, args);
    let bar = phases.bar("pings", plan.on_time.len() as u64);
    let t = Instant::now();
    let sent_on_time = browsers::send(env, &plan.on_time, &bar).await?;
    bar.finish();
    let first = plan.truth_of(&plan.on_time);
    let bar = phases.bar("aggregate", first.delivered.len() as u64);
    checks::wait_billing(env, &store_id, &first, args, &bar).await?;
    bar.finish_with_message("on-time pings counted");
    let bar = phases.bar("late", plan.late.len() as u64);
    let sent_late = browsers::send(env, &plan.late, &bar).await?;
    bar.finish();
    report.phase("pings", t.elapsed());
    procs.mark("pings");
    let truth = plan.truth();
    report.pings(&truth, &sent_on_time, &sent_late);

    // 5. Billing equals the distinct pings; the lake holds every record.
    let bar = phases.bar("billing", truth.delivered.len() as u64);
    let t = Instant::now();
    report.billing = Some(checks::wait_billing(env, &store_id, &truth, args, &bar).await?);
    bar.finish();
    report.pings.counted_late = checks::counted_late(env, &store_id).await?;
    report.phase("billing", t.elapsed());
    procs.mark("billing");
    let expected = report.expected_lake_rows();
    let bar = phases.bar("lake", expected.values().sum::<u64>());
    let t = Instant::now();
    report.lake =
        Some(checks::wait_lake(env, &store_id, &campaign_id, &expected, args, &bar).await?);
    bar.finish();
    report.phase("lake", t.elapsed());
    procs.mark("lake");
    // 6. The merchant's own view: the dashboard's API shows the same.
    if let Some(base) = &env.dashboard {
        let t = Instant::now();
        report.dashboard =
            Some(checks::wait_dashboard(env, base, &report, &scheduled.campaign_id, args).await?);
        report.phase("dashboard", t.elapsed());
        procs.mark("dashboard");
    }
    let dlq_after = checks::dlq_records(&env.topology).await?;
    report.dead_letters = dlq_after
        .iter()
        .map(|(t, n)| (t.clone(), n - dlq_before.get(t).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 0)
        .collect();
    report.processes = procs.finish();
    report.check();
    Ok(report)
}

fn chunks(total: usize, size: usize) -> impl Iterator<Item = usize> {
    (0..total)
        .step_by(size)
        .map(move |start| size.min(total - start))
}

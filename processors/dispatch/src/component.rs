//! dispatch as a component of `pushflow up` (type `dispatch`): a pure
//! [`validate`], then [`Dispatch::run_until`] connects and runs the view
//! loop, the batch loop, the paced loop and the releaser (throttled
//! launches) until shutdown.

use async_trait::async_trait;
use pushflow_runtime::codec::Codec;
use pushflow_runtime::component::{Component, ConfigError, Context, Entry, Kind};
use pushflow_runtime::http::Health;
use pushflow_runtime::kafka::{
    run_consumer_transactional, ConsumerSettings, DeadLetters, Producer,
};
use pushflow_runtime::probe::Dependency;
use pushflow_runtime::token::PingKeys;
use pushflow_runtime::{CancellationToken, RuntimeError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::batch::BatchCodec;
use crate::config::{Checked, DispatchSettings};
use crate::send::BatchHandler;
use crate::sender::{Sender, SenderConfig};
use crate::shared::{Shared, Topics};
use crate::store::Store;
use crate::vapid::{VapidCache, VapidKey};
use crate::view::ViewHandler;
use crate::DispatchError;

/// A validated dispatch, ready to connect.
pub struct Dispatch {
    /// Component name.
    pub name: String,
    /// Checked settings.
    pub settings: Checked,
    /// Topic names.
    pub topics: Topics,
    /// VAPID key.
    pub vapid: Arc<VapidKey>,
    /// Ping-token keys.
    pub ping: PingKeys,
    /// Whether http:// endpoints are allowed.
    pub allow_insecure: bool,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// librdkafka pass-through.
    pub kafka: BTreeMap<String, String>,
    /// Postgres URL.
    pub database_url: String,
    /// Schema registry URL.
    pub registry_url: String,
    /// Consumer group of the view loop (`<group>-batches` for batches).
    pub group: String,
}

/// The VAPID key from `PUSHFLOW_VAPID_PRIVATE_KEY` or the file
/// `PUSHFLOW_VAPID_PRIVATE_KEY_FILE` names ([`crate::vapid::key_from_env`]),
/// else the PEM file of the settings, else a fresh one (logged: push
/// services will refuse subscriptions made with another key, so set one in
/// production). The error names the field or variable.
pub fn load_vapid_key(
    settings: &DispatchSettings,
    env: impl Fn(&str) -> Option<String>,
) -> Result<VapidKey, ConfigError> {
    if let Some(k) = crate::vapid::key_from_env(env)? {
        return Ok(k);
    }
    if let Some(path) = &settings.vapid_private_key_file {
        let field =
            |e: DispatchError| ConfigError::new("settings.vapid_private_key_file", e.to_string());
        let text = std::fs::read_to_string(path).map_err(|e| {
            field(DispatchError::Config(format!(
                "cannot read VAPID key file {path}: {e}"
            )))
        })?;
        return VapidKey::from_pem(&text).map_err(field);
    }
    let k = VapidKey::generate();
    tracing::warn!(public_key = %k.public_b64, "no VAPID key configured (PUSHFLOW_VAPID_PRIVATE_KEY, PUSHFLOW_VAPID_PRIVATE_KEY_FILE or vapid_private_key_file): using a fresh one for this process");
    Ok(k)
}

/// Checks a `dispatch` entry of the topology (no network I/O; the VAPID
/// key and ping keys from the environment or the key file).
impl Kind for Dispatch {
    const TYPE: &'static str = "dispatch";
    type Settings = DispatchSettings;

    fn validate(e: Entry<'_, DispatchSettings>) -> Result<Self, ConfigError> {
        let (spec, t) = (e.spec, e.topology);
        let vapid = load_vapid_key(&e.settings, |k| std::env::var(k).ok())?;
        let settings = e.settings.check_with(&t.pings)?;
        let topics = Topics::default();
        let mut inputs = topics.view_inputs();
        inputs.push(topics.batches.clone());
        spec.require_inputs("dispatch", &inputs)?;
        spec.require_outputs(
            "dispatch",
            &[
                &topics.batches,
                &topics.dispatched,
                &topics.failed,
                &topics.subscription_expired,
            ],
        )?;
        let ping = PingKeys::from_env().map_err(|e| ConfigError::new("PUSHFLOW_PING_KEYS", e))?;
        let s = &t.services;
        Ok(Dispatch {
            name: spec.name.clone(),
            settings,
            topics,
            vapid: Arc::new(vapid),
            ping,
            allow_insecure: std::env::var("PUSHFLOW_ALLOW_INSECURE_PUSH").is_ok_and(|v| v == "1"),
            brokers: s.brokers.clone(),
            kafka: t.kafka.clone(),
            database_url: s.database_url.clone(),
            registry_url: s.registry_url.clone(),
            group: spec.group_id(),
        })
    }
}

impl Dispatch {
    /// Connects everything dispatch shares between its loops.
    pub async fn connect(&self) -> Result<Shared, DispatchError> {
        let mut tries = 0;
        let store = loop {
            match Store::connect(&self.database_url).await {
                Ok(s) => break s,
                Err(e) if e.is_retryable() && tries < 30 => {
                    tries += 1;
                    tracing::warn!(error = %e, "dispatch cannot reach Postgres yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let producer = Producer::new(&self.brokers, &self.kafka, Duration::from_secs(60))?;
        // A transactional id per instance and loop that a restart reuses,
        // so the restarted instance aborts what its predecessor left open
        // at once instead of readers waiting for the transaction timeout.
        let instance = pushflow_runtime::kafka::instance_id();
        let txn = |lp: &str, timeout: &str| {
            let id = format!("{}-{lp}-{instance}", self.group);
            let mut kafka = self.kafka.clone();
            kafka
                .entry("transaction.timeout.ms".into())
                .or_insert_with(|| timeout.into());
            async move {
                Producer::transactional(&self.brokers, &kafka, Duration::from_secs(60), &id).await
            }
        };
        // Planning a campaign of millions and sending a batch with retries
        // take long; the broker's default ceiling is 15 min.
        let view_txn = txn("view", "900000").await?;
        let batch_txn = txn("batches", "300000").await?;
        let paced_txn = txn("paced", "300000").await?;
        tracing::info!(component = %self.name, instance = %instance, "transactional producers ready");
        let cfg = &self.settings;
        let sender = Sender::new(
            VapidCache::new(
                self.vapid.clone(),
                &cfg.raw.vapid_subject,
                cfg.vapid_jwt_ttl,
            ),
            SenderConfig {
                concurrency_per_origin: cfg.raw.concurrency_per_origin,
                request_timeout: cfg.request_timeout,
                max_attempts: cfg.raw.max_attempts,
                retry_base: cfg.retry_base,
                retry_max: cfg.retry_max,
                allow_insecure: self.allow_insecure,
            },
        )?;
        Ok(Shared {
            name: self.name.clone(),
            store,
            codec: Arc::new(Codec::for_registry(&self.registry_url)?),
            batches: Arc::new(BatchCodec::for_registry(
                &self.registry_url,
                &self.topics.batches,
            )?),
            dlq: DeadLetters::new(producer.clone(), self.name.clone()),
            producer,
            view_txn,
            batch_txn,
            paced_txn,
            brokers: self.brokers.clone(),
            kafka: self.kafka.clone(),
            view_group: self.group.clone(),
            batch_group: format!("{}-batches", self.group),
            paced_group: format!("{}-paced", self.group),
            sender,
            ping: self.ping.clone(),
            topics: Arc::new(self.topics.clone()),
            cfg: Arc::new(self.settings.clone()),
        })
    }

    /// Runs the loops and the releaser until `shutdown` is cancelled; each
    /// loop drains and commits before returning.
    pub async fn run_until(
        self,
        shutdown: CancellationToken,
        health: Option<Health>,
    ) -> Result<(), RuntimeError> {
        let shared = self
            .connect()
            .await
            .map_err(|e| e.into_runtime(&self.name))?;
        if let Some(h) = &health {
            h.ok(&self.name);
        }
        let view_settings = ConsumerSettings::new(
            &self.name,
            &self.brokers,
            &self.group,
            self.topics.view_inputs(),
        )
        .with(&self.kafka, 5000);
        let mut batch_settings = ConsumerSettings::new(
            &self.name,
            &self.brokers,
            &shared.batch_group,
            vec![self.topics.batches.clone()],
        )
        .with(&self.kafka, self.settings.records_per_transaction());
        batch_settings
            .passthrough
            .insert("max.poll.interval.ms".into(), "900000".into());
        // Throttled batches: a consumer group of their own, so their pacing
        // never holds up the batch loop.
        let mut paced_settings = batch_settings.clone();
        paced_settings.group_id = shared.paced_group.clone();
        paced_settings.max_batch = crate::send::PACED_PARALLEL;
        let (view_txn, batch_txn, paced_txn) = (
            shared.view_txn.clone(),
            shared.batch_txn.clone(),
            shared.paced_txn.clone(),
        );
        let mut view = ViewHandler {
            shared: shared.clone(),
        };
        let mut batches = BatchHandler::unthrottled(shared.clone());
        let mut paced = BatchHandler::throttled(shared.clone());
        tracing::info!(component = %self.name, group = %self.group, "dispatch running");
        tokio::try_join!(
            run_consumer_transactional(&view_settings, &mut view, &view_txn, shutdown.clone()),
            run_consumer_transactional(&batch_settings, &mut batches, &batch_txn, shutdown.clone()),
            run_consumer_transactional(&paced_settings, &mut paced, &paced_txn, shutdown.clone()),
            crate::release::run(shared, shutdown.clone()),
        )?;
        Ok(())
    }
}

#[async_trait]
impl Component for Dispatch {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        ctx.watch(Dependency::processor());
        (*self)
            .run_until(ctx.shutdown.clone(), Some(ctx.health.clone()))
            .await
    }
}

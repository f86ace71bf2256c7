//! `ingest` as a component of `pushflow up`: serves the routes of
//! [`crate::app`], `/healthz` and `/metrics` on `ingest_addr`.

use async_trait::async_trait;
use pushflow_runtime::codec::Codec;
use pushflow_runtime::component::{Component, ConfigError, Context, Entry, Kind};
use pushflow_runtime::http::{admin_router, bind, serve};
use pushflow_runtime::kafka::Producer;
use pushflow_runtime::probe::Dependency;
use pushflow_runtime::token::PingKeys;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::RuntimeError;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::app::{router, Deps};
use crate::batches::Batches;
use crate::config::{IngestConfig, IngestSettings};
use crate::IngestError;

/// A validated `ingest` component.
pub struct IngestComponent {
    config: IngestConfig,
    ping_keys: PingKeys,
    addr: String,
    brokers: String,
    kafka: BTreeMap<String, String>,
    registry_url: String,
}

impl IngestComponent {
    /// [`Kind::validate`] with the environment given (tests): parses the
    /// entry's settings, then checks it.
    pub fn with_env(
        spec: &ComponentSpec,
        t: &Topology,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<IngestComponent, IngestError> {
        IngestComponent::checked(IngestSettings::from_yaml(&spec.settings)?, spec, t, env)
    }

    fn checked(
        settings: IngestSettings,
        spec: &ComponentSpec,
        t: &Topology,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<IngestComponent, IngestError> {
        let config = settings.validate(&env)?;
        for o in &spec.outputs {
            if pushflow_schemas::Topic::by_name(o).is_none() {
                return Err(IngestError::config(
                    "outputs",
                    format!("{o:?} is not a topic of the catalogue"),
                ));
            }
        }
        let ping_keys = match env("PUSHFLOW_PING_KEYS").filter(|s| !s.trim().is_empty()) {
            Some(s) => PingKeys::parse(&s),
            None => PingKeys::from_env(),
        }
        .map_err(|e| IngestError::config("PUSHFLOW_PING_KEYS", e))?;
        Ok(IngestComponent {
            config,
            ping_keys,
            addr: t.services.ingest_addr.clone(),
            brokers: t.services.brokers.clone(),
            kafka: t.kafka.clone(),
            registry_url: t.services.registry_url.clone(),
        })
    }
}

/// Checks an `ingest` entry without network I/O (settings, tokens, ping
/// keys, the VAPID key, outputs; the variables from the environment).
impl Kind for IngestComponent {
    const TYPE: &'static str = "ingest";
    const SERVES_HTTP: bool = true;
    type Settings = IngestSettings;

    fn validate(e: Entry<'_, IngestSettings>) -> Result<Self, ConfigError> {
        let (settings, spec, t) = (e.settings, e.spec, e.topology);
        IngestComponent::checked(settings, spec, t, |k| std::env::var(k).ok()).map_err(
            |e| match e {
                IngestError::Config { field, message } => ConfigError::new(field, message),
                other => ConfigError::new("settings", other.to_string()),
            },
        )
    }
}

#[async_trait]
impl Component for IngestComponent {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        let name = ctx.spec.name.clone();
        let listener = bind(&self.addr).await?;
        let producer = Producer::new(&self.brokers, &self.kafka, self.config.produce_timeout)?;
        let codec = Arc::new(Codec::for_registry(&self.registry_url)?);
        let timeout = self.config.produce_timeout;
        if self.config.tokens.is_empty() {
            tracing::warn!("ingest: /v1/events is open without a token (allow_anonymous: true)");
        }
        let deps = Deps {
            producer: producer.clone(),
            codec,
            ping_keys: self.ping_keys,
            topic_prefix: String::new(),
            batches: Arc::new(Batches::new(
                &self.brokers,
                &self.kafka,
                self.config.produce_timeout,
                "",
            )),
        };
        let app = router(self.config, deps).merge(admin_router(ctx.health.clone()));
        ctx.health.ok(&name);
        ctx.watch(vec![Dependency::Broker, Dependency::Registry]);
        tracing::info!(addr = %self.addr, "ingest listening");
        let served = serve(listener, app, ctx.shutdown.clone()).await;
        // Every 2xx was already acked; this only tidies records whose
        // requests were answered 503.
        if let Err(e) = producer.flush(timeout) {
            tracing::warn!(error = %e, "ingest: producer flush at shutdown");
        }
        served
    }
}

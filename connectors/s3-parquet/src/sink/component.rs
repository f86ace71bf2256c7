//! The contract of the `s3-parquet` component ([`Kind`]: its type, its
//! settings, its pure validation; [`Component`]: open the lake, then the
//! consumer loop until shutdown). Guarantee: see the module doc of
//! [`crate::sink`].

use async_trait::async_trait;
use pushflow_runtime::codec::RegistryResolver;
use pushflow_runtime::component::{Component, ConfigError, Context, Entry, Kind};
use pushflow_runtime::kafka::run_consumer;
use pushflow_runtime::probe::{Dependency, Probe};

use pushflow_runtime::RuntimeError;
use std::sync::Arc;
use std::time::Duration;

use super::{S3ParquetSink, SinkConfig, SinkHandler};
use crate::lake::Lake;

/// The lake's object store answers: a listing of the lake's root (an
/// empty listing is fine; a missing bucket or refused connection is not).
struct LakeProbe {
    lake: Lake,
}

#[async_trait]
impl Probe for LakeProbe {
    fn name(&self) -> &str {
        "object-store"
    }

    async fn check(&mut self) -> Result<(), String> {
        self.lake
            .store
            .list_with_delimiter(None)
            .await
            .map(|_| ())
            .map_err(|e| format!("object store {} unreachable: {e}", self.lake.url))
    }
}

impl Kind for S3ParquetSink {
    const TYPE: &'static str = "s3-parquet";
    type Settings = SinkConfig;

    fn validate(e: Entry<'_, SinkConfig>) -> Result<Self, ConfigError> {
        let (config, spec, topology) = (e.settings, e.spec, e.topology);
        S3ParquetSink::checked(config, spec, topology)
    }
}

#[async_trait]
impl Component for S3ParquetSink {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        let name = ctx.spec.name.clone();
        let services = &ctx.topology.services;
        let url = self
            .lake_url
            .clone()
            .unwrap_or_else(|| services.lake_url.clone());
        let options: Vec<(&str, &str)> = self
            .lake_options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let lake = Lake::open(&url, &options).map_err(|e| e.into_runtime(&name))?;
        let lake_for_probe = lake.clone();
        let resolver = Arc::new(RegistryResolver::new(&services.registry_url)?);
        let dlq = ctx.dead_letters()?;
        let mut handler = SinkHandler::new(&name, lake, self.settings.clone(), resolver, Some(dlq));
        handler.share_stats(self.stats.clone());
        let mut cs = ctx.consumer_settings(self.topics.clone(), self.settings.max_batch);
        cs.max_wait = Duration::from_millis(100);
        ctx.health.ok(&name);
        ctx.watch(vec![
            Dependency::Broker,
            Dependency::Registry,
            Dependency::Other(Box::new(LakeProbe {
                lake: lake_for_probe,
            })),
        ]);
        tracing::info!(component = %name, lake = %url, topics = ?self.topics, "writing the lake");
        run_consumer(&cs, &mut handler, ctx.shutdown.clone()).await
    }
}

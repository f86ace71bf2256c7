//! The simulator as a component of `pushflow up` (type `push-sim`), so
//! the local demo has a push service on 127.0.0.1:8090.

use async_trait::async_trait;
use pushflow_runtime::codec::Codec;
use pushflow_runtime::component::{Component, ConfigError, Context, Entry, Kind};
use pushflow_runtime::http::{admin_router, bind, serve};
use pushflow_runtime::kafka::Producer;

use pushflow_runtime::RuntimeError;
use std::sync::Arc;
use std::time::Duration;

use crate::{server, Publisher, PushSimSettings, SimState};

/// A validated `push-sim` component.
pub struct PushSimComponent {
    settings: PushSimSettings,
}

impl Kind for PushSimComponent {
    const TYPE: &'static str = "push-sim";
    const SERVES_HTTP: bool = true;
    type Settings = PushSimSettings;

    fn validate(e: Entry<'_, PushSimSettings>) -> Result<Self, ConfigError> {
        let settings = e.settings;
        if settings.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::new(
                "settings.addr",
                format!("{:?} is not host:port", settings.addr),
            ));
        }
        Ok(PushSimComponent { settings })
    }
}

#[async_trait]
impl Component for PushSimComponent {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        let failed = |message: String| RuntimeError::Component {
            component: ctx.spec.name.clone(),
            message,
            retryable: false,
        };
        let s = &ctx.topology.services;
        let producer = Producer::new(&s.brokers, &ctx.topology.kafka, Duration::from_secs(30))?;
        let codec = Codec::for_registry(&s.registry_url)?;
        let publisher = Publisher {
            producer,
            codec: Arc::new(codec),
            topic: self.settings.subscriptions_topic.clone(),
        };
        let listener = bind(&self.settings.addr).await?;
        let local = listener.local_addr().map_err(|e| failed(e.to_string()))?;
        let state = Arc::new(SimState::new(
            format!("http://{local}"),
            self.settings.behaviour.clone(),
            Some(publisher),
        ));
        ctx.health.ok(&ctx.spec.name);
        tracing::info!(addr = %local, "push simulator listening");
        let router = server::router(state).merge(admin_router(ctx.health.clone()));
        serve(listener, router, ctx.shutdown.clone()).await
    }
}

//! The one contract every component of `pushflow up` implements.
//!
//! A kind of component ([`Kind`]) has a `type:` string, a `Settings`
//! struct (serde, defaults, unknown fields refused) and a pure
//! [`Kind::validate`] that checks its entry of `topology.yaml` without
//! I/O and returns the component ready to run, or a [`ConfigError`]
//! naming the field. Only then does [`Component::run`] connect, work until
//! `ctx.shutdown` is cancelled, then drain: it commits whatever it made
//! durable and returns. The binary lists its kinds as [`KindInfo::of`],
//! the one place that names them, and asks each what it needs
//! ([`Kind::SERVES_HTTP`], [`Kind::STARTS_FIRST`]).

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::http::Health;
use crate::topology::{ComponentSpec, Topology};
use crate::RuntimeError;

/// What a running component gets from the process.
#[derive(Clone)]
pub struct Context {
    /// The whole topology (services, topics, kafka pass-through).
    pub topology: Arc<Topology>,
    /// This component's entry.
    pub spec: ComponentSpec,
    /// Cancelled on Ctrl-C / SIGTERM: drain, commit, return.
    pub shutdown: CancellationToken,
    /// Report health here under the component's name.
    pub health: Health,
}

impl Context {
    /// Probes `deps` every second until shutdown: `/healthz` then names
    /// any of them that is unreachable (see [`crate::probe`]).
    pub fn watch(&self, deps: Vec<crate::probe::Dependency>) {
        crate::probe::watch(
            &self.health,
            &self.spec.name,
            &self.topology.services,
            &self.topology.kafka,
            deps,
            self.shutdown.clone(),
        );
    }
}

impl Context {
    /// This component's consumer settings: its group, the topology's
    /// brokers and pass-through, batches of up to `max_batch` records.
    pub fn consumer_settings(
        &self,
        inputs: Vec<String>,
        max_batch: usize,
    ) -> crate::kafka::ConsumerSettings {
        let t = &self.topology;
        crate::kafka::ConsumerSettings::new(
            &self.spec.name,
            &t.services.brokers,
            &self.spec.group_id(),
            inputs,
        )
        .with(&t.kafka, max_batch)
    }

    /// This component's dead-letter writer (an idempotent producer of its
    /// own; each record goes to `<topic>.dlq`).
    pub fn dead_letters(&self) -> Result<crate::kafka::DeadLetters, RuntimeError> {
        let t = &self.topology;
        let producer = crate::kafka::Producer::new(
            &t.services.brokers,
            &t.kafka,
            std::time::Duration::from_secs(30),
        )?;
        Ok(crate::kafka::DeadLetters::new(
            producer,
            self.spec.name.clone(),
        ))
    }

    /// Marks the component healthy, probes `deps` (see [`Context::watch`])
    /// and awaits `work`; a failure is shown on `/healthz` (503, naming it)
    /// and returned as the runtime's error.
    pub async fn supervise<T, E: std::fmt::Display>(
        &self,
        deps: Vec<crate::probe::Dependency>,
        work: impl std::future::Future<Output = Result<T, E>>,
        into_runtime: impl FnOnce(E) -> RuntimeError,
    ) -> Result<T, RuntimeError> {
        self.health.ok(&self.spec.name);
        self.watch(deps);
        work.await.map_err(|e| {
            self.health.failing(&self.spec.name, e.to_string());
            into_runtime(e)
        })
    }
}

/// A validated component, ready to connect and run.
#[async_trait]
pub trait Component: Send {
    /// Connects and runs until `ctx.shutdown` is cancelled.
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError>;
}

/// A mistake in a component's entry of `topology.yaml`: the field
/// (`settings.max_batch`, `inputs`, …) and what to fix. The binary adds
/// the file and the component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The field, as written in `topology.yaml` (or the variable).
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl ConfigError {
    /// The error of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One kind of component: what a `type:` of `topology.yaml` names.
pub trait Kind: Component + Sized + 'static {
    /// The `type:` string.
    const TYPE: &'static str;
    /// Serves HTTP on an address of its own, with its own `/healthz` and
    /// `/metrics` (so `pushflow run` binds no admin address for it).
    const SERVES_HTTP: bool = false;
    /// Starts before the topology is applied (the others need it then).
    const STARTS_FIRST: bool = false;
    /// Its `settings:` (serde, defaults when absent, unknown fields
    /// refused).
    type Settings: DeserializeOwned + Default;
    /// Checks the settings and the entry against the topology, without
    /// I/O, and returns the component ready to run.
    fn validate(entry: Entry<'_, Self::Settings>) -> Result<Self, ConfigError>;
}

/// A component's entry of `topology.yaml` with its settings parsed: what
/// [`Kind::validate`] checks.
pub struct Entry<'a, S> {
    /// The parsed `settings:` (defaults where absent).
    pub settings: S,
    /// The entry itself (name, inputs, outputs, group).
    pub spec: &'a ComponentSpec,
    /// The whole topology (services, topics, kafka pass-through).
    pub topology: &'a Topology,
}

/// Parses an entry's settings and validates it as a `K`.
pub fn validate<K: Kind>(spec: &ComponentSpec, topology: &Topology) -> Result<K, ConfigError> {
    K::validate(Entry {
        settings: spec.settings::<K::Settings>()?,
        spec,
        topology,
    })
}

/// Validates an entry as one kind, its type erased.
type ValidateFn = fn(&ComponentSpec, &Topology) -> Result<Box<dyn Component>, ConfigError>;

/// A [`Kind`] as the binary lists it (its type erased).
#[derive(Clone, Copy)]
pub struct KindInfo {
    /// [`Kind::TYPE`].
    pub name: &'static str,
    /// [`Kind::SERVES_HTTP`].
    pub serves_http: bool,
    /// [`Kind::STARTS_FIRST`].
    pub starts_first: bool,
    validate: ValidateFn,
}

impl KindInfo {
    /// The entry of kind `K`.
    pub fn of<K: Kind>() -> KindInfo {
        KindInfo {
            name: K::TYPE,
            serves_http: K::SERVES_HTTP,
            starts_first: K::STARTS_FIRST,
            validate: |spec, t| Ok(Box::new(validate::<K>(spec, t)?)),
        }
    }

    /// Validates `spec` as this kind (no I/O).
    pub fn validate(
        &self,
        spec: &ComponentSpec,
        topology: &Topology,
    ) -> Result<Box<dyn Component>, ConfigError> {
        (self.validate)(spec, topology)
    }
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutdown requested: draining");
        token.cancel();
    });
}

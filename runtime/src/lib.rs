//! pushflow's shared runtime: what every component stands on.
//!
//! - [`topology`]: `topology.yaml`, checked before anything starts;
//! - [`kafka`]: the at-least-once consumer loop, the idempotent producer,
//!   the dead-letter writer and topic administration;
//! - [`codec`]: Avro in the Confluent wire format, schema ids cached;
//! - [`http`], [`probe`], [`telemetry`]: `/healthz` (with dependency
//!   probes), `/metrics`, structured logs;
//! - [`component`]: the lifecycle every component of `pushflow up` follows;
//! - [`postgres`] and [`replay`]: the pool, migrations, errors and stored
//!   offsets of components with a database, and their replays;
//! - [`windows`]: the event-time windows counting components key rows by;
//! - [`bearer`] and [`token`]: the bearer tokens HTTP components accept and
//!   the ping tokens dispatch signs and ingest verifies.
//!
//! Dependencies run one way: components use this crate and
//! `pushflow-schemas`; this crate never names a component.

pub mod bearer;
pub mod codec;
pub mod component;
pub mod error;
pub mod http;
pub mod kafka;
pub mod postgres;
pub mod probe;
pub mod replay;
pub mod telemetry;
pub mod token;
pub mod topology;
pub mod windows;

pub use error::RuntimeError;
pub use tokio_util::sync::CancellationToken;

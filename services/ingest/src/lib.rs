//! `pushflow ingest`, the HTTP front door: internal services post events,
//! browsers' service workers post signed pings and new subscriptions, and
//! ingest turns each into an Avro event on Kafka.
//!
//! Guarantee: a 2xx is answered only after the broker acknowledged every
//! record of the request (idempotent producer, `acks=all`), so nothing
//! answered 2xx is lost, even if ingest is killed right after. A batch of
//! several records is one Kafka transaction ([`batches`]): written whole
//! or not at all. When the broker is slow or down a request waits at most
//! `produce_timeout` and then gets 503 with `Retry-After`, saying that
//! nothing was written (or, when a commit got no answer, that this is
//! unknown); clients retry with the same `event_id`s, and the lake keeps
//! each `event_id` once. Bad input is refused
//! with a 4xx that says what to fix and is never produced: a batch is
//! validated whole before any record of it is sent.
//!
//! Routes: `POST /v1/events/{topic}` (bearer tokens scoped to topics and
//! stores; the billable topics refused: they enter only as signed pings),
//! `POST /v1/pings`, `POST /v1/subscriptions`, `GET /v1/vapid-public-key`,
//! `GET /sw.js`, `GET /subscribe.js`, plus `/healthz` and `/metrics`.

pub mod app;
mod assets;
pub mod auth;
pub mod batches;
pub mod client_ip;
pub mod component;
pub mod config;
mod error;
pub mod pings;
pub mod ratelimit;
pub mod records;
pub mod vapid;

pub use app::{router, Deps};
pub use assets::{SUBSCRIBE_JS, SW_JS};
pub use auth::hash_token;
pub use component::IngestComponent;
pub use config::{IngestConfig, IngestSettings};
pub use error::IngestError;

//! pushflow's schema registry: a Confluent Schema Registry compatible REST
//! service (AVRO only) backed by Postgres.
//!
//! Guarantees, in plain words:
//! - A registration is answered only after its Postgres transaction
//!   committed: an id a producer got is durable, and a crash loses nothing
//!   that was acknowledged.
//! - Schema ids are global, never reused (not even after a permanent
//!   delete) and always resolve to the same schema; any number of registry
//!   instances can share one database without handing out the same id.
//! - Registering a schema that is already a live version of the subject
//!   (whatever its whitespace or key order) returns its id and creates no
//!   version; a schema identical to one under another subject reuses that
//!   id, like Confluent.
//! - A new version must pass the subject's compatibility level (subject
//!   level, else global, else BACKWARD), checked with real Avro schema
//!   resolution; a rejection names the offending field.
//!
//! Layout: `config` (its settings) and `component` (its contract as a
//! component of `pushflow up`); [`connect`] (in `db`) creates the database
//! and runs the migrations; `api` holds the HTTP handlers, `store` every SQL statement,
//! `compat` the compatibility rules, `canonical` schema identity, `error`
//! the error type and Confluent error bodies.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = pushflow_registry::connect("postgres://postgres@127.0.0.1:5432/pushflow").await?;
//! registry.check().await?;
//! let app = registry.router(); // add /healthz and /metrics, then serve
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod api;
mod canonical;
mod compat;
pub mod component;
pub mod config;
mod db;
mod error;
mod store;

pub use api::CONTENT_TYPE_V1;
pub use compat::CompatibilityLevel;
pub use component::RegistryComponent;
pub use error::RegistryError;

/// Connects to Postgres (creating the database named in the URL if it does
/// not exist), runs the registry's migrations (idempotent, versioned, safe
/// when several instances start at once) and returns the shared state.
///
/// The URL is a libpq-style URL such as
/// `postgres://postgres@127.0.0.1:5432/pushflow`; connections are made
/// without TLS.
pub async fn connect(database_url: &str) -> Result<Registry, RegistryError> {
    let pool = db::connect(database_url).await?;
    tracing::info!("schema registry store ready");
    Ok(Registry { pool })
}

/// The registry's shared state: a Postgres connection pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    pool: deadpool_postgres::Pool,
}

impl Registry {
    /// The Confluent REST API routes only (no `/healthz` or `/metrics`: the
    /// caller adds those).
    pub fn router(&self) -> axum::Router {
        api::router(self.pool.clone())
    }

    /// Health probe: Ok if Postgres answers `SELECT 1`.
    pub async fn check(&self) -> Result<(), RegistryError> {
        let client = self.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }
}

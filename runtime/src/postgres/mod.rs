//! Postgres bits every component with a database shares.
//!
//! Guarantee: [`ensure_database`] and [`create_database`] leave the
//! database of a connection URL existing, whoever created it: two
//! instances starting at once both succeed. [`migrate`] applies each
//! versioned migration of a schema exactly once, whoever runs it.
//! [`pool`] is the one way a component builds its connection pool, and
//! [`PgError`] the one Postgres error every component's error wraps.
//! [`offsets`] keeps a consumer's positions in the component's schema.

mod error;
pub mod offsets;

pub use error::{pg, PgError, PgFailure};
pub use offsets::{OffsetsTable, StoredPosition};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::component::ConfigError;

/// How a component's pool behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_size: usize,
    /// Longest wait for a free connection.
    pub wait_timeout: Duration,
    /// Longest wait to open a new connection.
    pub create_timeout: Duration,
}

/// Opens a component's database: parses `url`, creates the database if it
/// is missing ([`ensure_database`]), builds the pool ([`pool`]) and applies
/// `migrations` to `schema` ([`migrate`]). Returns the pool and the parsed
/// config (for connections of its own, outside the pool).
pub async fn open(
    url: &str,
    settings: PoolSettings,
    schema: &str,
    migrations: &[Migration],
) -> Result<(Pool, Config), PgError> {
    let config: Config = url
        .parse()
        .map_err(|e| PgError::new("open the database", PgFailure::Url(e)))?;
    ensure_database(&config)
        .await
        .map_err(pg("create the database"))?;
    let pool = pool(config.clone(), settings).map_err(pg("build the pool"))?;
    let mut client = pool.get().await.map_err(pg("connect"))?;
    migrate(&mut client, schema, migrations).await?;
    Ok((pool, config))
}

/// A connection pool for `config` (connections are opened on first use,
/// so this needs no running Postgres; a dropped connection is replaced).
pub fn pool(config: Config, settings: PoolSettings) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.create_timeout))
        .build()
}

/// Creates the database `config` names if it does not exist yet (through
/// the server's `postgres` database). Returns whether this call created
/// it. A database created meanwhile by another instance is fine.
pub async fn ensure_database(config: &Config) -> Result<bool, tokio_postgres::Error> {
    if config.get_dbname().is_none() {
        return Ok(false);
    }
    match config.connect(NoTls).await {
        Ok((client, conn)) => {
            drop(client);
            let _ = conn.await;
            Ok(false)
        }
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
            create_database(config).await
        }
        Err(e) => Err(e),
    }
}

/// Creates the database `config` names, for a caller whose connection was
/// just refused because it does not exist (see [`ensure_database`] to
/// check first). Returns whether this call created it; a database created
/// meanwhile by another instance is fine.
pub async fn create_database(config: &Config) -> Result<bool, tokio_postgres::Error> {
    let Some(name) = config.get_dbname() else {
        return Ok(false);
    };
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, conn) = admin.connect(NoTls).await?;
    let driver = tokio::spawn(conn);
    let created = client
        .batch_execute(&format!(
            "CREATE DATABASE \"{}\"",
            name.replace('"', "\"\"")
        ))
        .await;
    drop(client);
    let _ = driver.await;
    match created {
        Ok(()) => {
            tracing::info!(database = name, "created database");
            Ok(true)
        }
        Err(e)
            if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Connects to `url`, creating the database first if it does not exist
/// (see [`create_database`]); the connection is driven on its own task.
pub async fn connect(url: &str) -> Result<Client, PgError> {
    let config: Config = url.parse().map_err(pg("connect"))?;
    let connected = match config.connect(NoTls).await {
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {
            create_database(&config).await.map_err(pg("connect"))?;
            config.connect(NoTls).await
        }
        other => other,
    };
    let (client, conn) = connected.map_err(pg("connect"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// A client that connects on first use and again whenever its connection
/// closed (Postgres restarted, the network dropped), for a loop that must
/// outlive one connection.
pub struct Reconnecting {
    url: String,
    client: Option<Client>,
}

impl Reconnecting {
    /// A client of `url`, connected on first use (or now: `client`).
    pub fn new(url: impl Into<String>, client: Option<Client>) -> Reconnecting {
        Reconnecting {
            url: url.into(),
            client,
        }
    }

    /// The open client, connecting first if there is none or it closed.
    pub async fn get(&mut self) -> Result<&mut Client, PgError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.url).await?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}

/// Whether `name` can be spliced into SQL as a schema name unquoted: 1 to
/// 48 lowercase ASCII letters, digits and `_`, not starting with a digit.
pub fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Checks a schema name of the settings ([`is_plain_identifier`]); the
/// error names `field`.
pub fn check_schema_name(field: &str, name: &str) -> Result<(), ConfigError> {
    match is_plain_identifier(name) {
        true => Ok(()),
        false => Err(ConfigError::new(
            field,
            format!(
                "{name:?} is not a plain Postgres identifier (1 to 48 lowercase letters, digits, _; not starting with a digit)"
            ),
        )),
    }
}

/// One versioned migration of a schema: its SQL runs once, ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Version (recorded in `<schema>.migrations`); applied in ascending order.
    pub version: i32,
    /// Statements, separated by `;`.
    pub sql: String,
}

/// Creates `schema` and `<schema>.migrations (version, applied_at)` if
/// missing, then applies every migration whose version is not recorded
/// there, in ascending version order, and returns the versions applied now.
///
/// Guarantee: everything happens in ONE transaction under a
/// transaction-level advisory lock on the schema's name, so two instances
/// starting at once apply each migration exactly once (the second waits,
/// then finds them recorded), and a failed migration leaves nothing behind.
/// `schema` must be a plain identifier ([`is_plain_identifier`]; the caller
/// validates it: it is spliced into the SQL).
pub async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: &str,
    migrations: &[Migration],
) -> Result<Vec<i32>, PgError> {
    apply(client, schema, migrations)
        .await
        .map_err(pg(&format!("apply the migrations of schema {schema}")))
}

async fn apply(
    client: &mut tokio_postgres::Client,
    schema: &str,
    migrations: &[Migration],
) -> Result<Vec<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let lock = format!("pushflow.migrations.{schema}");
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock])
        .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.migrations (version int PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .await?;
    let done: Vec<i32> = tx
        .query(&format!("SELECT version FROM {schema}.migrations"), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newer) = done.iter().copied().filter(|v| *v > known).max() {
        tracing::warn!(
            schema,
            applied = newer,
            known,
            "the database has migrations newer than this binary"
        );
    }
    let mut todo: Vec<&Migration> = migrations
        .iter()
        .filter(|m| !done.contains(&m.version))
        .collect();
    todo.sort_by_key(|m| m.version);
    let mut applied = Vec::new();
    for m in todo {
        tx.batch_execute(&m.sql).await?;
        tx.execute(
            &format!("INSERT INTO {schema}.migrations (version) VALUES ($1)"),
            &[&m.version],
        )
        .await?;
        tracing::info!(schema, version = m.version, "applied migration");
        applied.push(m.version);
    }
    tx.commit().await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identifiers_are_lowercase_words() {
        for ok in ["analytics", "analytics_replay_1", "_x"] {
            assert!(is_plain_identifier(ok), "{ok}");
        }
        for bad in ["", "1abc", "Analytics", "a-b", "a;drop", &"x".repeat(49)] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
        assert!(check_schema_name("settings.schema", "aggregate").is_ok());
        let e = check_schema_name("settings.schema", "Sched-1").unwrap_err();
        assert_eq!(e.field, "settings.schema");
    }
}

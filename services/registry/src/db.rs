//! Connecting to Postgres: creating the database if needed, the pool, and
//! the registry's migrations.
//!
//! Guarantee: migrations are versioned (`registry.migrations`), each applied
//! exactly once, in one transaction with its version row, under a
//! transaction-scoped advisory lock — so two registry instances starting at
//! once against one database neither race nor apply anything twice. All
//! tables live in the `registry` Postgres schema, apart from other
//! components' tables.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::RegistryError;

/// Advisory-lock key serialising migrations ("pushflow registry" in ASCII, truncated).
const MIGRATION_LOCK_KEY: i64 = 0x7075_7368_7265_6769;

/// The registry's migrations, in order. Never edit a released one: append.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
    -- One row per distinct schema (by canonical key); ids come from the
    -- identity, are never reused, and rows are never deleted, so an id
    -- found in an old Kafka record always resolves.
    CREATE TABLE registry.schemas (
        id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        fingerprint bytea NOT NULL UNIQUE,
        canonical   text NOT NULL,
        schema_text text NOT NULL,
        schema_type text NOT NULL DEFAULT 'AVRO',
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    -- Versions of each subject; soft delete sets `deleted`, hard delete
    -- removes the row.
    CREATE TABLE registry.subject_versions (
        subject    text NOT NULL,
        version    integer NOT NULL CHECK (version > 0),
        schema_id  integer NOT NULL REFERENCES registry.schemas (id),
        deleted    boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (subject, version)
    );
    CREATE INDEX subject_versions_schema_id ON registry.subject_versions (schema_id);
    CREATE TABLE registry.subject_config (
        subject       text PRIMARY KEY,
        compatibility text NOT NULL
    );
    CREATE TABLE registry.global_config (
        singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        compatibility text NOT NULL
    );
    "#,
)];

/// Parses the URL, creates its database if missing, builds the pool and
/// runs the migrations.
pub(crate) async fn connect(database_url: &str) -> Result<Pool, RegistryError> {
    let config: tokio_postgres::Config = database_url
        .parse()
        .map_err(|e| RegistryError::InvalidDatabaseUrl(format!("{e}")))?;
    ensure_database(&config).await?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(16)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Connects once to the target database; if Postgres says it does not
/// exist, connects to `postgres` and creates it (losing a creation race to
/// another instance is fine).
async fn ensure_database(config: &tokio_postgres::Config) -> Result<(), RegistryError> {
    let Some(name) = config.get_dbname() else {
        return Ok(());
    };
    match config.connect(NoTls).await {
        Ok((client, connection)) => {
            drop(client);
            let _ = connection.await;
            return Ok(());
        }
        Err(e) if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) => {}
        Err(e) => return Err(e.into()),
    }
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let sql = format!("CREATE DATABASE {}", quote_ident(name));
    let created = client.batch_execute(&sql).await;
    drop(client);
    let _ = driver.await;
    match created {
        Ok(()) => {
            tracing::info!(database = name, "created database");
            Ok(())
        }
        Err(e)
            if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies the migrations not yet recorded in `registry.migrations`.
async fn migrate(pool: &Pool) -> Result<(), RegistryError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS registry;
         CREATE TABLE IF NOT EXISTS registry.migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM registry.migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if let Some(newer) = applied.iter().copied().filter(|v| *v > known).max() {
        tracing::warn!(
            applied = newer,
            known,
            "database has registry migrations newer than this binary"
        );
    }
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO registry.migrations (version, applied_at) VALUES ($1, now())",
            &[version],
        )
        .await?;
        tracing::info!(version, "applied registry migration");
    }
    tx.commit().await?;
    Ok(())
}

/// Quotes a Postgres identifier (`"a""b"`).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("pushflow"), "\"pushflow\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn migrations_are_strictly_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(MIGRATIONS[0].0, 1);
    }
}

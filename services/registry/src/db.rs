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

use deadpool_postgres::Pool;
use pushflow_runtime::postgres::{self, Migration, PoolSettings};

use crate::RegistryError;

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
/// runs the migrations (all through [`pushflow_runtime::postgres`]).
pub(crate) async fn connect(database_url: &str) -> Result<Pool, RegistryError> {
    let settings = PoolSettings {
        max_size: 16,
        wait_timeout: Duration::from_secs(10),
        create_timeout: Duration::from_secs(10),
    };
    let all: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|(version, sql)| Migration {
            version: *version,
            sql: sql.to_string(),
        })
        .collect();
    let (pool, _) = postgres::open(database_url, settings, "registry", &all).await?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_strictly_increasing() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(MIGRATIONS[0].0, 1);
    }
}

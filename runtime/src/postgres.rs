//! Postgres bits every component with a database shares.
//!
//! Guarantee: [`ensure_database`] and [`create_database`] leave the
//! database of a connection URL existing, whoever created it: two
//! instances starting at once both succeed.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Config, NoTls};

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

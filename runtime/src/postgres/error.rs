//! [`PgError`]: the one Postgres error of every component with a database,
//! saying what was being done and keeping the driver's or the pool's error
//! as its source.

use tokio_postgres::error::SqlState;

/// A Postgres call failed: what was being done, and why.
#[derive(Debug, thiserror::Error)]
#[error("postgres: {context}: {source}")]
pub struct PgError {
    /// What was being done ("store offsets", "connect").
    pub context: String,
    /// What failed.
    #[source]
    pub source: PgFailure,
}

/// What failed under a [`PgError`].
#[derive(Debug, thiserror::Error)]
pub enum PgFailure {
    /// The driver failed or the server refused (its SQLSTATE, if it answered,
    /// is [`PgError::code`]).
    #[error(transparent)]
    Driver(#[from] tokio_postgres::Error),
    /// No pooled connection could be had (timeout, or the connection failed).
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The pool could not be built (its settings are wrong).
    #[error(transparent)]
    Build(#[from] deadpool_postgres::BuildError),
    /// The database URL is not a Postgres connection string.
    #[error("not a Postgres connection URL: {0}")]
    Url(tokio_postgres::Error),
    /// A connection that had to stay open (one holding a session lock) closed.
    #[error("the connection closed")]
    Closed,
    /// A fenced save ([`crate::postgres::OffsetsTable::save_expecting`])
    /// found these partitions' stored positions moved by someone else
    /// (another instance owned them meanwhile): the transaction must be
    /// rolled back and the partitions' state loaded again from Postgres.
    /// Retrying the same transaction cannot help; retrying after a reload
    /// can ([`PgError::needs_reload`]).
    #[error("stored position moved by another instance for {}", fenced_list(.0))]
    Fenced(Vec<crate::kafka::PartitionKey>),
}

fn fenced_list(parts: &[crate::kafka::PartitionKey]) -> String {
    let names: Vec<String> = parts
        .iter()
        .map(|p| format!("{}/{}", p.topic, p.partition))
        .collect();
    names.join(", ")
}

/// Maps an error of the driver or the pool to a [`PgError`] saying what was
/// being done: `.map_err(pg("store offsets"))?`.
pub fn pg<E: Into<PgFailure>>(context: &str) -> impl FnOnce(E) -> PgError + '_ {
    move |e| PgError::new(context, e)
}

impl PgError {
    /// `failure` while doing `context`.
    pub fn new(context: impl Into<String>, failure: impl Into<PgFailure>) -> PgError {
        PgError {
            context: context.into(),
            source: failure.into(),
        }
    }

    /// The server's SQLSTATE, when it answered.
    pub fn code(&self) -> Option<&SqlState> {
        match &self.source {
            PgFailure::Driver(e) => e.code(),
            PgFailure::Pool(deadpool_postgres::PoolError::Backend(e)) => e.code(),
            _ => None,
        }
    }

    /// The partitions a fenced save refused ([`PgFailure::Fenced`]): roll
    /// back, load them again from Postgres, and go on from there.
    pub fn needs_reload(&self) -> Option<&[crate::kafka::PartitionKey]> {
        match &self.source {
            PgFailure::Fenced(parts) => Some(parts),
            _ => None,
        }
    }

    /// The class of [`PgError::code`]: its first two characters ("23" for
    /// an integrity constraint violation).
    pub fn sqlstate_class(&self) -> Option<&str> {
        self.code().and_then(|c| c.code().get(..2))
    }

    /// Whether trying again later could succeed: yes for a lost or refused
    /// connection, a timeout, a deadlock or a server restarting; no for a
    /// statement or schema the server refuses (SQLSTATE class 42), data it
    /// refuses (22), a URL or pool that cannot be built, or a fenced save
    /// (which needs a reload first: [`PgError::needs_reload`]).
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self.source,
            PgFailure::Build(_) | PgFailure::Url(_) | PgFailure::Fenced(_)
        ) && !matches!(self.sqlstate_class(), Some("42" | "22"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_was_being_done_and_keeps_the_source() {
        let e = PgError::new("hold the releaser's lock", PgFailure::Closed);
        assert_eq!(
            e.to_string(),
            "postgres: hold the releaser's lock: the connection closed"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.is_retryable(), "a closed connection can be opened again");
        assert_eq!(e.sqlstate_class(), None);
    }
}

//! The crate's error type.

use pushflow_runtime::RuntimeError;

/// Why the dashboard could not start or answer. Each knows whether
/// retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The settings (or an environment override) are wrong; the message
    /// names the field. Retrying cannot help.
    #[error("settings: field `{field}`: {message}")]
    Config {
        /// The field, e.g. `tokens` or `PUSHFLOW_DASHBOARD_TOKENS`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// No connection to Postgres could be had (down, or refusing).
    #[error("postgres unreachable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A query failed.
    #[error("postgres: {context}: {source}")]
    Postgres {
        /// What was being read.
        context: String,
        /// Postgres's error.
        source: tokio_postgres::Error,
    },
    /// What the dashboard reads does not exist yet (a table, the
    /// database): the component that writes it has not started (or uses
    /// another schema).
    #[error("not there yet: {what}; {hint}")]
    NotReady {
        /// Postgres's words, e.g. `relation "analytics.campaigns" does not exist`.
        what: String,
        /// Who creates it.
        hint: String,
    },
    /// The runtime failed (binding the address).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl DashboardError {
    /// Whether trying again later could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DashboardError::Config { .. } => false,
            DashboardError::Pool(_) | DashboardError::NotReady { .. } => true,
            DashboardError::Postgres { source, .. } => {
                source.is_closed() || source.code().is_none()
            }
            DashboardError::Runtime(e) => e.is_retryable(),
        }
    }

    /// Whether this is a configuration mistake (the binary exits 2).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            DashboardError::Config { .. } | DashboardError::Runtime(RuntimeError::Topology(_))
        )
    }

    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        DashboardError::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl From<DashboardError> for RuntimeError {
    fn from(e: DashboardError) -> Self {
        match e {
            DashboardError::Runtime(r) => r,
            other => RuntimeError::Component {
                component: "dashboard".into(),
                retryable: other.is_retryable(),
                message: other.to_string(),
            },
        }
    }
}

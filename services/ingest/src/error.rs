//! The crate's error type.

use pushflow_runtime::RuntimeError;

/// Why ingest could not start or run. Each knows whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The settings (or an environment override) are wrong; the message
    /// names the field. Retrying cannot help.
    #[error("settings: field `{field}`: {message}")]
    Config {
        /// The field, e.g. `tokens` or `PUSHFLOW_INGEST_TOKENS`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The runtime failed (broker, registry, binding the address).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The benchmark could not run or measure.
    #[error("bench: {0}")]
    Bench(String),
}

impl IngestError {
    /// Whether trying again later could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Config { .. } => false,
            IngestError::Runtime(e) => e.is_retryable(),
            IngestError::Bench(_) => false,
        }
    }

    /// Whether this is a configuration mistake (the binary exits 2).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            IngestError::Config { .. } | IngestError::Runtime(RuntimeError::Topology(_))
        )
    }

    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        IngestError::Config {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl From<IngestError> for RuntimeError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Runtime(r) => r,
            other => RuntimeError::Component {
                component: "ingest".into(),
                retryable: other.is_retryable(),
                message: other.to_string(),
            },
        }
    }
}

//! The crate's error type.

/// What can go wrong in the lake. Each error knows whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The lake URL or a setting is wrong (retrying cannot help).
    #[error("configuration: {0}")]
    Config(String),
    /// A record or schema does not fit the Parquet mapping.
    #[error("schema: {0}")]
    Schema(String),
    /// The object store failed (unreachable, throttled, 5xx): retry later.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Arrow refused a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The Parquet writer failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A query failed (bad SQL, unknown table or column).
    #[cfg(feature = "query")]
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// The schema registry or the broker failed.
    #[error(transparent)]
    Runtime(#[from] pushflow_runtime::RuntimeError),
}

impl LakeError {
    /// Whether trying again later could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            LakeError::Store(e) => !matches!(
                e,
                object_store::Error::NotSupported { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::UnknownConfigurationKey { .. }
            ),
            LakeError::Runtime(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether this is a configuration mistake (the CLI exits with 2).
    pub fn is_config(&self) -> bool {
        matches!(self, LakeError::Config(_))
    }

    /// As the runtime's error of `component`.
    pub fn into_runtime(self, component: &str) -> pushflow_runtime::RuntimeError {
        match self {
            LakeError::Runtime(e) => e,
            other => pushflow_runtime::RuntimeError::Component {
                component: component.to_string(),
                retryable: other.is_retryable(),
                message: other.to_string(),
            },
        }
    }
}

impl From<rdkafka::error::KafkaError> for LakeError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        LakeError::Runtime(e.into())
    }
}

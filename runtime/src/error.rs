//! The runtime's error type.

use rdkafka::error::KafkaError;

/// Errors of the shared runtime. Each knows whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The broker refused or could not be reached.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A record could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] crate::codec::CodecError),
    /// The topology or a component's settings are wrong (retrying cannot help).
    #[error(transparent)]
    Topology(#[from] crate::topology::TopologyError),
    /// An address could not be bound or served.
    #[error("http server on {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A component failed; the message says why.
    #[error("{component}: {message}")]
    Component {
        /// Component name.
        component: String,
        /// What went wrong.
        message: String,
        /// Whether restarting the component could help.
        retryable: bool,
    },
}

impl RuntimeError {
    /// Whether trying again later could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RuntimeError::Kafka(_) => true,
            RuntimeError::Codec(e) => e.is_retryable(),
            RuntimeError::Topology(_) => false,
            RuntimeError::Http { .. } => false,
            RuntimeError::Component { retryable, .. } => *retryable,
        }
    }
}

//! The registry's one error type, and how each error becomes a Confluent
//! error body (`{"error_code": 40401, "message": "..."}`) with the HTTP
//! status Confluent uses.
//!
//! Guarantee: every failure a client can cause maps to the same
//! `error_code` Confluent Schema Registry returns for it, so clients that
//! switch on those codes (the Java, Python and Rust serdes) behave the same
//! against pushflow's registry. Failures of the store map to 500/50001 and
//! say whether retrying can help ([`RegistryError::is_retryable`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio_postgres::error::SqlState;

use crate::api::json_response;

/// Everything that can go wrong in the registry, from a bad database URL to
/// a schema that breaks its subject's compatibility rule.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Postgres returned an error, or the connection to it failed.
    #[error("postgres error: {0}")]
    Postgres(#[from] tokio_postgres::Error),

    /// Opening the database failed (creating it, the pool, the
    /// migrations): what was being done, and why.
    #[error(transparent)]
    Open(#[from] pushflow_runtime::postgres::PgError),

    /// No pooled connection could be obtained (Postgres unreachable, pool
    /// exhausted or timed out).
    #[error("postgres pool error: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),

    /// 40401: the subject has no (non-deleted) versions.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),

    /// 40402: the subject exists but not this version.
    #[error("Version {0} not found.")]
    VersionNotFound(i32),

    /// 40403: no schema with this id, or (lookup) the schema is not
    /// registered under the subject.
    #[error("{}", match .0 { Some(id) => format!("Schema {id} not found"), None => "Schema not found".to_owned() })]
    SchemaNotFound(Option<i64>),

    /// 40404: the subject was already soft-deleted.
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),

    /// 40405: a permanent delete of a subject that was not soft-deleted first.
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),

    /// 40406: the version was already soft-deleted.
    #[error("Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted {
        /// The subject.
        subject: String,
        /// The version that is already soft-deleted.
        version: i32,
    },

    /// 40407: a permanent delete of a version that was not soft-deleted first.
    #[error("Subject '{subject}' Version {version} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted {
        /// The subject.
        subject: String,
        /// The version that is still live.
        version: i32,
    },

    /// 40408: `GET /config/{subject}` on a subject without its own level.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),

    /// 409: the schema breaks the subject's compatibility level; the details
    /// name the offending field.
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .details.join(", "))]
    Incompatible {
        /// The subject.
        subject: String,
        /// One entry per problem found, Confluent style.
        details: Vec<String>,
    },

    /// 42201: the schema is not valid Avro, is empty, is not of type AVRO, or
    /// uses references (not supported).
    #[error("{0}")]
    InvalidSchema(String),

    /// 42202: the version is neither a number in [1, 2^31-1], `latest` nor `-1`.
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),

    /// 42203: not one of NONE, BACKWARD(_TRANSITIVE), FORWARD(_TRANSITIVE), FULL(_TRANSITIVE).
    #[error("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive (got '{0}')")]
    InvalidCompatibilityLevel(String),

    /// 400: the request body is not the JSON object the route expects.
    #[error("{0}")]
    MalformedRequest(String),

    /// 415: the request body has a content type the registry does not read.
    #[error("HTTP 415 Unsupported Media Type: {0}")]
    UnsupportedMediaType(String),

    /// 404: no such route.
    #[error("HTTP 404 Not Found")]
    RouteNotFound,

    /// 405: the route exists but not with this method.
    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,
}

impl RegistryError {
    /// Whether retrying the same call later can succeed: true for lost
    /// connections, pool timeouts, serialization failures and deadlocks;
    /// false for client errors (bad schema, unknown subject, ...) and
    /// configuration errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Postgres(e) => postgres_is_retryable(e),
            RegistryError::Open(e) => e.is_retryable(),
            RegistryError::Pool(deadpool_postgres::PoolError::Backend(e)) => {
                postgres_is_retryable(e)
            }
            RegistryError::Pool(deadpool_postgres::PoolError::Closed)
            | RegistryError::Pool(deadpool_postgres::PoolError::NoRuntimeSpecified) => false,
            RegistryError::Pool(_) => true,
            _ => false,
        }
    }

    /// The HTTP status Confluent answers this error with.
    pub fn status(&self) -> StatusCode {
        match self.error_code() {
            400 => StatusCode::BAD_REQUEST,
            404 | 40401..=40408 => StatusCode::NOT_FOUND,
            405 => StatusCode::METHOD_NOT_ALLOWED,
            409 => StatusCode::CONFLICT,
            415 => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            42201..=42203 => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Confluent `error_code` of the response body (50001 for store errors).
    pub fn error_code(&self) -> u32 {
        match self {
            RegistryError::Postgres(_) | RegistryError::Open(_) | RegistryError::Pool(_) => 50001,
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound(_) => 40402,
            RegistryError::SchemaNotFound(_) => 40403,
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted { .. } => 40406,
            RegistryError::VersionNotSoftDeleted { .. } => 40407,
            RegistryError::SubjectConfigNotFound(_) => 40408,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibilityLevel(_) => 42203,
            RegistryError::MalformedRequest(_) => 400,
            RegistryError::UnsupportedMediaType(_) => 415,
            RegistryError::RouteNotFound => 404,
            RegistryError::MethodNotAllowed => 405,
        }
    }
}

fn postgres_is_retryable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQL state: an I/O or protocol failure on the connection.
        None => true,
        Some(code) => [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::QUERY_CANCELED,
        ]
        .contains(code),
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            if self.is_retryable() {
                tracing::warn!(error = %self, "registry store error (the client may retry)");
            } else {
                tracing::error!(error = %self, "registry store error");
            }
            format!("Error in the backend data store: {self}")
        } else {
            self.to_string()
        };
        json_response(
            status,
            &serde_json::json!({ "error_code": self.error_code(), "message": message }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_follow_confluent() {
        let e = RegistryError::SubjectNotFound("s".into());
        assert_eq!((e.error_code(), e.status()), (40401, StatusCode::NOT_FOUND));
        assert_eq!(e.to_string(), "Subject 's' not found.");
        let e = RegistryError::SchemaNotFound(Some(7));
        assert_eq!(e.to_string(), "Schema 7 not found");
        let e = RegistryError::InvalidCompatibilityLevel("X".into());
        assert_eq!(
            (e.error_code(), e.status()),
            (42203, StatusCode::UNPROCESSABLE_ENTITY)
        );
        let e = RegistryError::Incompatible {
            subject: "s".into(),
            details: vec!["a".into(), "b".into()],
        };
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert!(e.to_string().contains("for subject \"s\", details: [a, b]"));
        assert!(!e.is_retryable());
    }
}

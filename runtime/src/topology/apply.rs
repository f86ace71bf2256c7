//! `pushflow topology apply`: creates the topics on the broker and
//! registers each topic's schema under `<topic>-value`. Idempotent: a
//! second run changes nothing and says so. An incompatible schema change is
//! refused with the registry's own message.

use serde_json::json;
use std::fmt;
use std::time::Duration;

use super::Topology;
use crate::kafka::admin::{ensure_topics, TopicChange};
use crate::RuntimeError;

/// What happened to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    /// Registered: a new version (or a new subject).
    Registered {
        /// Subject.
        subject: String,
        /// Global id.
        id: u32,
    },
    /// Already registered under the subject.
    Unchanged {
        /// Subject.
        subject: String,
        /// Global id.
        id: u32,
    },
}

/// Everything `apply` did.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Per topic.
    pub topics: Vec<TopicChange>,
    /// Per subject.
    pub schemas: Vec<SchemaChange>,
}

impl ApplyReport {
    /// Whether anything was created or registered.
    pub fn changed(&self) -> bool {
        self.topics
            .iter()
            .any(|t| matches!(t, TopicChange::Created(_)))
            || self
                .schemas
                .iter()
                .any(|s| matches!(s, SchemaChange::Registered { .. }))
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.topics {
            match t {
                TopicChange::Created(n) => writeln!(f, "topic {n}: created")?,
                TopicChange::Unchanged(n) => writeln!(f, "topic {n}: unchanged")?,
            }
        }
        for s in &self.schemas {
            match s {
                SchemaChange::Registered { subject, id } => {
                    writeln!(f, "schema {subject}: registered (id {id})")?
                }
                SchemaChange::Unchanged { subject, id } => {
                    writeln!(f, "schema {subject}: unchanged (id {id})")?
                }
            }
        }
        if self.changed() {
            write!(f, "topology applied")
        } else {
            write!(f, "topology already applied: nothing changed")
        }
    }
}

fn registry_err(message: String, retryable: bool) -> RuntimeError {
    RuntimeError::Component {
        component: "topology apply".into(),
        message,
        retryable,
    }
}

/// Registers `schema` under `subject` unless it is already there.
pub async fn ensure_schema(
    http: &reqwest::Client,
    registry_url: &str,
    subject: &str,
    schema: &str,
) -> Result<SchemaChange, RuntimeError> {
    let base = registry_url.trim_end_matches('/');
    let body = json!({ "schema": schema });
    let unreachable = |e: reqwest::Error| {
        registry_err(format!("schema registry at {base} unreachable: {e}"), true)
    };
    let lookup = http
        .post(format!("{base}/subjects/{subject}"))
        .json(&body)
        .send()
        .await
        .map_err(unreachable)?;
    if lookup.status().is_success() {
        let v: serde_json::Value = lookup.json().await.map_err(unreachable)?;
        return Ok(SchemaChange::Unchanged {
            subject: subject.to_string(),
            id: v["id"].as_u64().unwrap_or_default() as u32,
        });
    }
    let resp = http
        .post(format!("{base}/subjects/{subject}/versions"))
        .json(&body)
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        let msg = v["message"].as_str().unwrap_or("no message").to_string();
        return Err(registry_err(
            format!("registering {subject} refused ({status}): {msg}"),
            status.is_server_error(),
        ));
    }
    Ok(SchemaChange::Registered {
        subject: subject.to_string(),
        id: v["id"].as_u64().unwrap_or_default() as u32,
    })
}

/// Creates the topology's topics and registers its schemas.
pub async fn apply(t: &Topology) -> Result<ApplyReport, RuntimeError> {
    let topics = ensure_topics(t).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| registry_err(e.to_string(), false))?;
    let mut schemas = Vec::new();
    for topic in &t.topics {
        let subject = pushflow_schemas::catalogue::value_subject(&topic.spec.name);
        schemas.push(
            ensure_schema(
                &http,
                &t.services.registry_url,
                &subject,
                &topic.schema_text,
            )
            .await?,
        );
    }
    Ok(ApplyReport { topics, schemas })
}

/// [`apply`], retried while the broker or registry is still starting
/// (retryable errors), for at most `patience`.
pub async fn apply_patiently(
    t: &Topology,
    patience: Duration,
) -> Result<ApplyReport, RuntimeError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match apply(t).await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "topology apply failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

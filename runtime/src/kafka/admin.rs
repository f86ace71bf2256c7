//! Topic administration for `pushflow topology apply`: creates what is
//! missing, leaves what exists, and says which is which.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::topology::Topology;
use crate::RuntimeError;

/// What `ensure_topics` did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    /// It was created.
    Created(String),
    /// It existed already (left as it is).
    Unchanged(String),
}

/// The topics a topology needs: each declared topic and its `.dlq`, with
/// partitions and configs.
pub fn wanted_topics(t: &Topology) -> Vec<(String, i32, i16, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for topic in &t.topics {
        let mut cfg = BTreeMap::new();
        cfg.insert(
            "retention.ms".to_string(),
            topic.retention.as_millis().to_string(),
        );
        cfg.insert(
            "max.message.bytes".to_string(),
            topic.max_message_bytes.to_string(),
        );
        cfg.insert(
            "cleanup.policy".to_string(),
            topic.spec.cleanup_policy.as_kafka().to_string(),
        );
        out.push((
            topic.spec.name.clone(),
            topic.spec.partitions,
            topic.spec.replication_factor,
            cfg.clone(),
        ));
        out.push((
            pushflow_schemas::catalogue::dlq_topic(&topic.spec.name),
            1,
            topic.spec.replication_factor,
            cfg,
        ));
    }
    out
}

/// Names of the topics the broker has.
pub fn existing_topics(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
) -> Result<HashSet<String>, RuntimeError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = super::client_config(brokers, passthrough).create()?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(md.topics().iter().map(|t| t.name().to_string()).collect())
}

/// Creates the topology's missing topics; idempotent.
pub async fn ensure_topics(t: &Topology) -> Result<Vec<TopicChange>, RuntimeError> {
    let brokers = &t.services.brokers;
    let existing = {
        let b = brokers.clone();
        let p = t.kafka.clone();
        tokio::task::spawn_blocking(move || existing_topics(&b, &p))
            .await
            .expect("metadata task panicked")?
    };
    let admin: AdminClient<DefaultClientContext> =
        super::client_config(brokers, &t.kafka).create()?;
    let wanted = wanted_topics(t);
    let mut changes = Vec::new();
    let missing: Vec<_> = wanted
        .iter()
        .filter(|(name, ..)| {
            let have = existing.contains(name);
            if have {
                changes.push(TopicChange::Unchanged(name.clone()));
            }
            !have
        })
        .collect();
    if missing.is_empty() {
        return Ok(changes);
    }
    let new_topics: Vec<NewTopic> = missing
        .iter()
        .map(|(name, parts, rf, cfg)| {
            let mut nt = NewTopic::new(name, *parts, TopicReplication::Fixed(i32::from(*rf)));
            for (k, v) in cfg {
                nt = nt.set(k, v);
            }
            nt
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new_topics, &opts).await? {
        match result {
            Ok(name) => changes.push(TopicChange::Created(name)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                changes.push(TopicChange::Unchanged(name))
            }
            Err((name, code)) => {
                return Err(RuntimeError::Component {
                    component: "topology".into(),
                    message: format!("creating topic {name}: {code}"),
                    retryable: true,
                })
            }
        }
    }
    Ok(changes)
}

/// The sum over each topic's partitions of high minus low watermark (0 for
/// a topic the broker does not have): on Kafka the records it holds; tansu
/// 0.6 advances its watermarks once per produced batch, so compare two
/// readings to see whether a topic grew rather than by how much. Blocking.
pub fn watermark_spans(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
    topics: &[String],
) -> Result<BTreeMap<String, i64>, RuntimeError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = super::client_config(brokers, passthrough).create()?;
    let timeout = Duration::from_secs(10);
    let mut out = BTreeMap::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), timeout)?;
        let mut n = 0;
        for t in md.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
                n += high - low;
            }
        }
        out.insert(topic.clone(), n);
    }
    Ok(out)
}

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
    // Created is not served yet: wait until every new partition has a
    // leader, so that what starts next can produce and fetch at once.
    let created: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            TopicChange::Created(n) => Some(n.clone()),
            TopicChange::Unchanged(_) => None,
        })
        .collect();
    let (b, p) = (brokers.clone(), t.kafka.clone());
    tokio::task::spawn_blocking(move || {
        wait_for_leaders(&b, &p, &created, Duration::from_secs(60))
    })
    .await
    .expect("metadata task panicked")?;
    Ok(changes)
}

/// Waits until each of `topics` is in the broker's metadata with a leader
/// for every partition. Blocking.
pub fn wait_for_leaders(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
    topics: &[String],
    within: Duration,
) -> Result<(), RuntimeError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    if topics.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer = super::client_config(brokers, passthrough).create()?;
    let started = std::time::Instant::now();
    loop {
        let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
        let ready = |name: &String| {
            md.topics().iter().any(|t| {
                t.name() == name
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions()
                        .iter()
                        .all(|p| p.error().is_none() && p.leader() >= 0)
            })
        };
        let waiting: Vec<&String> = topics.iter().filter(|n| !ready(n)).collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if started.elapsed() > within {
            return Err(RuntimeError::Component {
                component: "topology".into(),
                message: format!("topics without a partition leader after {within:?}: {waiting:?}"),
                retryable: true,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum over each topic's partitions of high minus low watermark (0 for
/// a topic the broker does not have): the offsets it holds (records, plus
/// one marker per transaction that wrote to the partition). Blocking.
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
                let (low, high) = watermarks(&consumer, topic, p.id())?;
                n += high - low;
            }
        }
        out.insert(topic.clone(), n);
    }
    Ok(out)
}

/// The next offsets consumer group `group` has committed for `partitions`
/// (absent: nothing committed). Blocking.
///
/// A transactional consumer loop commits a partition's offset past a
/// record only in the transaction that holds what the record caused, so
/// "committed past offset o" means "the outputs of o are committed".
pub fn committed_offsets(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<BTreeMap<(String, i32), i64>, RuntimeError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = super::client_config(brokers, passthrough)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

/// A partition's (low, high) watermarks, asking again for up to 30 s while
/// the broker says it is not (yet) the partition's leader: a partition
/// created a moment ago is in the metadata before its leader serves it.
/// Blocking.
pub fn watermarks<C: rdkafka::consumer::Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), RuntimeError> {
    use rdkafka::error::KafkaError;
    let started = std::time::Instant::now();
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition,
            )) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return Ok(other?),
        }
    }
}

//! Helpers for the scheduler's integration tests: the real broker,
//! Postgres and an in-process registry (testkit), topics under a random
//! prefix, and an independent `read_committed` reader of the output.
#![allow(dead_code)]

use pushflow_runtime::codec::Codec;
use pushflow_runtime::kafka::Producer;
use pushflow_scheduler::config::SchedulerSettings;
use pushflow_scheduler::schedule::{CampaignKey, Schedule};
use pushflow_scheduler::{Scheduler, Topics};
use pushflow_schemas::{
    new_event_id, now_millis, CampaignCancelled, CampaignLaunched, CampaignScheduled, Event,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything a test needs, named for this run.
pub struct Env {
    pub prefix: String,
    pub topics: Topics,
    pub registry: String,
    pub database_url: String,
    pub group: String,
    pub codec: Arc<Codec>,
    pub producer: Producer,
}

/// A `campaign.launched` record as read back.
#[derive(Debug, Clone)]
pub struct Launched {
    pub event: CampaignLaunched,
    pub partition: i32,
    pub offset: i64,
    /// The broker's (create) timestamp, ms.
    pub timestamp_ms: i64,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Launched {
    pub fn key(&self) -> CampaignKey {
        key(&self.event.store_id, &self.event.campaign_id)
    }
}

pub fn key(store: &str, campaign: &str) -> CampaignKey {
    CampaignKey {
        store_id: store.into(),
        campaign_id: campaign.into(),
    }
}

impl Env {
    pub async fn new() -> Env {
        let prefix = format!("{}.", pushflow_testkit::unique("sched"));
        let topics = Topics::prefixed(&prefix);
        let mut list: Vec<(String, i32)> = topics.inputs().into_iter().map(|t| (t, 3)).collect();
        let dlqs: Vec<(String, i32)> = list.iter().map(|(t, _)| (format!("{t}.dlq"), 1)).collect();
        list.extend(dlqs);
        let refs: Vec<(&str, i32)> = list.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        pushflow_testkit::create_topics(&refs).await;
        let registry = pushflow_testkit::start_registry().await;
        let (_, database_url) = pushflow_testkit::fresh_database("scheduler_test");
        let codec = Arc::new(Codec::for_registry(&registry).unwrap());
        let producer = Producer::new(
            &pushflow_testkit::brokers(),
            &BTreeMap::new(),
            Duration::from_secs(30),
        )
        .unwrap();
        Env {
            prefix,
            topics,
            registry,
            database_url,
            group: pushflow_testkit::unique("g"),
            codec,
            producer,
        }
    }

    pub fn settings() -> SchedulerSettings {
        SchedulerSettings {
            late_after: "1s".into(),
            catch_up_timeout: "5s".into(),
            ..SchedulerSettings::default()
        }
    }

    pub fn scheduler(&self) -> Scheduler {
        Scheduler {
            name: "scheduler".into(),
            settings: Env::settings().validate().unwrap(),
            topics: self.topics.clone(),
            brokers: pushflow_testkit::brokers(),
            kafka: BTreeMap::new(),
            database_url: self.database_url.clone(),
            registry_url: self.registry.clone(),
            group: self.group.clone(),
        }
    }

    async fn send<E: Event>(&self, topic: &str, e: &E) {
        let bytes = self.codec.encode(e).await.unwrap();
        self.producer
            .send(topic, Some(e.key().as_bytes()), &bytes, &[])
            .await
            .unwrap();
    }

    /// Publishes `campaign.scheduled`; returns the event.
    pub async fn schedule(
        &self,
        store: &str,
        campaign: &str,
        send_at: i64,
        throttle: Option<i32>,
    ) -> CampaignScheduled {
        let e = CampaignScheduled {
            event_id: new_event_id(),
            occurred_at: now_millis(),
            store_id: store.into(),
            campaign_id: campaign.into(),
            send_at,
            throttle_per_minute: throttle,
        };
        self.send(&self.topics.scheduled, &e).await;
        e
    }

    /// Publishes `campaign.cancelled`.
    pub async fn cancel(&self, store: &str, campaign: &str) -> CampaignCancelled {
        let e = CampaignCancelled {
            event_id: new_event_id(),
            occurred_at: now_millis(),
            store_id: store.into(),
            campaign_id: campaign.into(),
        };
        self.send(&self.topics.cancelled, &e).await;
        e
    }

    /// Publishes a `campaign.launched` directly (as through the API).
    pub async fn launch_directly(&self, store: &str, campaign: &str) -> CampaignLaunched {
        let e = CampaignLaunched {
            event_id: new_event_id(),
            occurred_at: now_millis(),
            store_id: store.into(),
            campaign_id: campaign.into(),
            throttle_per_minute: None,
        };
        self.send(&self.topics.launched, &e).await;
        e
    }

    /// Every committed `campaign.launched` record (read_committed, up to
    /// each partition's high watermark as it is now).
    pub async fn launched(&self) -> Vec<Launched> {
        let raw = read_committed(&self.topics.launched, Duration::from_secs(30));
        let mut out = Vec::new();
        for (partition, offset, timestamp_ms, headers, payload) in raw {
            let event: CampaignLaunched = self.codec.decode(&payload).await.unwrap();
            out.push(Launched {
                event,
                partition,
                offset,
                timestamp_ms,
                headers,
            });
        }
        out
    }

    /// The launches of each campaign.
    pub async fn launches_by_key(&self) -> HashMap<CampaignKey, Vec<Launched>> {
        let mut m: HashMap<CampaignKey, Vec<Launched>> = HashMap::new();
        for l in self.launched().await {
            m.entry(l.key()).or_default().push(l);
        }
        m
    }

    /// Waits until `pred` holds for the launches, polling; panics after
    /// `within`.
    pub async fn wait_launches(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&HashMap<CampaignKey, Vec<Launched>>) -> bool,
    ) -> HashMap<CampaignKey, Vec<Launched>> {
        let deadline = Instant::now() + within;
        loop {
            let m = self.launches_by_key().await;
            if pred(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?} ({} campaigns launched)",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (c, conn) = tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    }

    /// The row of a campaign (None before the scheduler made its schema).
    pub async fn row(&self, store: &str, campaign: &str) -> Option<Schedule> {
        let Ok((c, conn)) =
            tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls).await
        else {
            return None;
        };
        tokio::spawn(conn);
        pushflow_scheduler::store::schedule(&c, "scheduler", &key(store, campaign))
            .await
            .ok()
            .flatten()
    }

    /// Waits until the campaign's row satisfies `pred`.
    pub async fn wait_row(
        &self,
        store: &str,
        campaign: &str,
        within: Duration,
        pred: impl Fn(&Schedule) -> bool,
    ) -> Schedule {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.row(store, campaign).await {
                if pred(&r) {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "row of {store}/{campaign} not as expected within {within:?}: {:?}",
                self.row(store, campaign).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

type Raw = (i32, i64, i64, Vec<(String, Vec<u8>)>, Vec<u8>);

/// Reads every committed record of `topic` from the beginning, up to each
/// partition's high watermark (of the log, not the last stable offset a
/// read_committed client is told), judged by the consumer's position, which
/// moves past transaction markers and aborted records.
pub fn read_committed(topic: &str, limit: Duration) -> Vec<Raw> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", pushflow_testkit::brokers())
        .set("group.id", pushflow_testkit::unique("sched-test-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", pushflow_testkit::brokers())
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
        let (_, high) = watermarks
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap();
        ends.insert(p.id(), high);
    }
    consumer.assign(&tpl).unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let done = |next: &HashMap<i32, i64>| {
        let at = consumer.position().unwrap_or_default();
        ends.iter().all(|(p, end)| {
            let position = match at.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            };
            position.max(next.get(p).copied().unwrap_or(0)) >= *end
        })
    };
    while !done(&next) {
        assert!(
            started.elapsed() < limit,
            "read {} records of {topic} in {limit:?}, not up to the high watermarks {ends:?}",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            next.insert(m.partition(), m.offset() + 1);
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.partition(),
                m.offset(),
                m.timestamp().to_millis().unwrap_or_default(),
                headers,
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}

/// Counts the records of a dead-letter topic (read to the high watermark).
pub fn dead_letters(topic: &str) -> Vec<Raw> {
    read_committed(&format!("{topic}.dlq"), Duration::from_secs(20))
}

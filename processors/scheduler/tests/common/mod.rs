//! Helpers for the scheduler's integration tests: the real broker,
//! Postgres and an in-process registry (testkit), topics under a random
//! prefix, and an independent `read_committed` reader of the output.
#![allow(dead_code)]

use pushflow_runtime::kafka::Record;
use pushflow_scheduler::config::SchedulerSettings;
use pushflow_scheduler::schedule::{CampaignKey, Schedule};
use pushflow_scheduler::{Scheduler, Topics};
use pushflow_schemas::{
    new_event_id, now_millis, CampaignCancelled, CampaignLaunched, CampaignScheduled, Event,
};
use pushflow_testkit::Services;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Everything a test needs, named for this run.
pub struct Env {
    pub prefix: String,
    pub topics: Topics,
    pub group: String,
    pub services: Services,
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
        let inputs: Vec<(String, i32)> = topics.inputs().into_iter().map(|t| (t, 3)).collect();
        pushflow_testkit::create_topics_with_dead_letters(&inputs).await;
        Env {
            prefix,
            topics,
            group: pushflow_testkit::unique("g"),
            services: Services::start("scheduler_test").await,
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
            database_url: self.services.database_url.clone(),
            registry_url: self.services.registry.clone(),
            group: self.group.clone(),
        }
    }

    async fn send<E: Event>(&self, topic: &str, e: &E) {
        let bytes = self.services.codec.encode(e).await.unwrap();
        self.services
            .producer
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
        let records = pushflow_testkit::read_topic(&self.topics.launched, Duration::from_secs(30));
        let mut out = Vec::new();
        for r in records {
            let payload = r.payload.unwrap_or_default();
            let event: CampaignLaunched = self.services.codec.decode(&payload).await.unwrap();
            out.push(Launched {
                event,
                partition: r.partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms.unwrap_or_default(),
                headers: r.headers,
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
        pushflow_testkit::connect(&self.services.database_url).await
    }

    /// The row of a campaign (None before the scheduler made its schema).
    pub async fn row(&self, store: &str, campaign: &str) -> Option<Schedule> {
        let Ok((c, conn)) =
            tokio_postgres::connect(&self.services.database_url, tokio_postgres::NoTls).await
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

/// The records of a dead-letter topic (read to the high watermark).
pub fn dead_letters(topic: &str) -> Vec<Record> {
    pushflow_testkit::read_topic(&format!("{topic}.dlq"), Duration::from_secs(20))
}

//! Helpers for dispatch's integration tests: real broker, Postgres,
//! registry (testkit) and push-sim over real HTTP, every name random.
#![allow(dead_code)]

use pushflow_dispatch::config::DispatchSettings;
use pushflow_dispatch::store::Store;
use pushflow_dispatch::{Dispatch, Topics, VapidKey};
use pushflow_push_sim::{Behaviour, Publisher, PushSim};
use pushflow_runtime::token::PingKeys;
use pushflow_schemas::{
    new_event_id, now_millis, CampaignCreated, CampaignLaunched, Event, NotificationDispatched,
    NotificationFailed, SubscriptionExpired, Urgency,
};
use pushflow_testkit::Services;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything a test needs, named for this run.
pub struct Env {
    pub prefix: String,
    pub topics: Topics,
    pub services: Services,
}

impl Env {
    pub async fn new() -> Env {
        let prefix = format!("{}.", pushflow_testkit::unique("dsp"));
        let topics = Topics::prefixed(&prefix);
        let mut list: Vec<(String, i32)> =
            topics.view_inputs().into_iter().map(|t| (t, 3)).collect();
        list.push((topics.batches.clone(), 6));
        list.push((topics.dispatched.clone(), 3));
        list.push((topics.failed.clone(), 3));
        pushflow_testkit::create_topics_with_dead_letters(&list).await;
        Env {
            prefix,
            topics,
            services: Services::start("dispatch_test").await,
        }
    }

    pub async fn sim(&self, behaviour: Behaviour) -> PushSim {
        let publisher = Publisher {
            producer: self.services.producer.clone(),
            codec: self.services.codec.clone(),
            topic: self.topics.subscription_created.clone(),
        };
        PushSim::start("127.0.0.1:0", behaviour, Some(publisher))
            .await
            .unwrap()
    }

    pub fn settings() -> DispatchSettings {
        let mut s = DispatchSettings::with_subject("mailto:tests@pushflow.invalid");
        s.batch_size = 100;
        s.retry_base = "50ms".into();
        s.retry_max = "2s".into();
        s.max_attempts = 4;
        s.request_timeout = "3s".into();
        s.concurrency_per_origin = 32;
        s
    }

    pub fn dispatch(&self, settings: DispatchSettings, vapid: VapidKey, group: &str) -> Dispatch {
        Dispatch {
            name: "dispatch".into(),
            settings: settings.check().unwrap(),
            topics: self.topics.clone(),
            vapid: Arc::new(vapid),
            ping: PingKeys::from_env().unwrap(),
            allow_insecure: true,
            brokers: pushflow_testkit::brokers(),
            kafka: BTreeMap::new(),
            database_url: self.services.database_url.clone(),
            registry_url: self.services.registry.clone(),
            group: group.into(),
        }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.services.database_url).await.unwrap()
    }

    /// Waits until dispatch's view holds `n` active subscribers of `store`.
    pub async fn wait_active(&self, store_id: &str, n: i64, within: Duration) {
        let store = self.store().await;
        let deadline = Instant::now() + within;
        loop {
            let c = store.active_count(store_id).await.unwrap();
            if c == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "view has {c} active subscribers of {store_id}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Publishes a campaign and its launch; returns the campaign.
    pub async fn launch(&self, store_id: &str) -> CampaignCreated {
        self.launch_as(store_id, &pushflow_testkit::unique("camp"), "Winter sale")
            .await
    }

    /// Publishes campaign `campaign_id` of `store_id` titled `title`, and
    /// its launch.
    pub async fn launch_as(
        &self,
        store_id: &str,
        campaign_id: &str,
        title: &str,
    ) -> CampaignCreated {
        self.launch_with(store_id, campaign_id, title, None).await
    }

    /// [`Env::launch_as`] with the launch's `throttle_per_minute`.
    pub async fn launch_with(
        &self,
        store_id: &str,
        campaign_id: &str,
        title: &str,
        throttle_per_minute: Option<i32>,
    ) -> CampaignCreated {
        let c = CampaignCreated {
            event_id: new_event_id(),
            occurred_at: now_millis(),
            store_id: store_id.into(),
            campaign_id: campaign_id.into(),
            title: title.into(),
            body: "Everything -30 % until Sunday".into(),
            url: "https://shop.example/sale".into(),
            icon: Some("https://shop.example/icon.png".into()),
            ttl_seconds: 3600,
            urgency: Urgency::High,
        };
        let bytes = self.services.codec.encode(&c).await.unwrap();
        self.services
            .producer
            .send(
                &self.topics.campaign_created,
                Some(c.key().as_bytes()),
                &bytes,
                &[],
            )
            .await
            .unwrap();
        let l = CampaignLaunched {
            event_id: new_event_id(),
            occurred_at: now_millis(),
            store_id: store_id.into(),
            campaign_id: c.campaign_id.clone(),
            throttle_per_minute,
        };
        let bytes = self.services.codec.encode(&l).await.unwrap();
        self.services
            .producer
            .send(
                &self.topics.campaign_launched,
                Some(l.key().as_bytes()),
                &bytes,
                &[],
            )
            .await
            .unwrap();
        c
    }

    /// Collects the output topics in the background.
    pub fn collect(&self) -> Outputs {
        let consumer: StreamConsumer = pushflow_testkit::records::consumer_config("collector")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        let t = &self.topics;
        consumer
            .subscribe(&[&t.dispatched, &t.failed, &t.subscription_expired])
            .unwrap();
        let out = Outputs::default();
        let (o, codec, topics) = (
            out.clone(),
            self.services.codec.clone(),
            self.topics.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok(m) = consumer.recv().await else {
                    continue;
                };
                let bytes = m.payload().unwrap_or_default().to_vec();
                if m.topic() == topics.dispatched {
                    let e: NotificationDispatched = codec.decode(&bytes).await.unwrap();
                    o.dispatched.lock().unwrap().push(e);
                } else if m.topic() == topics.failed {
                    let e: NotificationFailed = codec.decode(&bytes).await.unwrap();
                    o.failed.lock().unwrap().push(e);
                } else {
                    let e: SubscriptionExpired = codec.decode(&bytes).await.unwrap();
                    o.expired.lock().unwrap().push(e);
                }
            }
        });
        out
    }
}

/// What dispatch wrote.
#[derive(Clone, Default)]
pub struct Outputs {
    pub dispatched: Arc<Mutex<Vec<NotificationDispatched>>>,
    pub failed: Arc<Mutex<Vec<NotificationFailed>>>,
    pub expired: Arc<Mutex<Vec<SubscriptionExpired>>>,
}

impl Outputs {
    /// Distinct notifications of `campaign` with an outcome.
    pub fn decided(&self, campaign: &str) -> usize {
        let mut ids = std::collections::HashSet::new();
        for e in self
            .dispatched
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.campaign_id == campaign)
        {
            ids.insert(e.notification_id.clone());
        }
        for e in self
            .failed
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.campaign_id == campaign)
        {
            ids.insert(e.notification_id.clone());
        }
        ids.len()
    }

    /// Waits until `n` notifications of `campaign` are decided.
    pub async fn wait_decided(&self, campaign: &str, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.decided(campaign) < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} notifications of {campaign} decided in {within:?}",
                self.decided(campaign)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Give stragglers (duplicates, if any) a moment to show.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

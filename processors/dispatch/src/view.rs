//! The view loop: applies `subscription.created` / `subscription.expired`
//! and `campaign.created` to Postgres, and turns each `campaign.launched`
//! into batch records on the batches topic (planning).
//!
//! A launch is planned once its content is known: if `campaign.launched`
//! comes first, it waits in `dispatch.launches` until `campaign.created`
//! arrives. Planning first vacuums and analyses the subscriptions
//! ([`crate::store::Store::analyze_audience`]: a freshly imported audience
//! must not look tiny to the planner, and its scan must be index-only),
//! then reads the store's active subscribers in id order (one streamed
//! query) and writes
//! `<campaign_id>:<batch_no>` records into the view loop's Kafka
//! transaction, which commits them with the view's consumed offsets
//! ([`pushflow_runtime::kafka::run_consumer_transactional`]); the launch is
//! marked planned naming the view record whose transaction that is. A crash
//! mid-plan aborts the transaction, and the replayed record plans again
//! (the same batches, with the same record ids); a launch seen again later
//! (a repeated `campaign.launched`) is planned again only if that
//! transaction never committed. So no batch record is on the topic twice.
//!
//! A launch with `throttle_per_minute` is planned into Postgres instead,
//! in one transaction, and released batch by batch ([`crate::throttle`]);
//! planned once, it is never planned again. A `throttle_per_minute` below
//! 1 is refused: the launch goes to the dead-letter topic.

use async_trait::async_trait;
use pushflow_runtime::kafka::{Durable, Handler, Record};
use pushflow_runtime::RuntimeError;
use pushflow_schemas::{
    CampaignCreated, CampaignLaunched, SubscriptionCreated, SubscriptionExpired,
};

use crate::batch::DispatchBatch;
use crate::shared::{derived_id, Cause, Shared};
use crate::store::{CampaignKey, Plan};
use crate::DispatchError;
use std::collections::BTreeMap;

/// The view loop's handler.
pub struct ViewHandler {
    /// Shared state.
    pub shared: Shared,
}

impl ViewHandler {
    async fn dead_letter(&self, r: &Record, e: &DispatchError) -> Result<(), RuntimeError> {
        self.shared.dlq.send(r, &e.to_string()).await
    }

    /// Writes the batches of a launched campaign into the open transaction;
    /// returns how many. `cause` is the view record that planned it.
    pub async fn plan(
        &self,
        campaign: &CampaignCreated,
        cause: &Cause,
    ) -> Result<i32, DispatchError> {
        let s = &self.shared;
        let size = s.cfg.raw.batch_size;
        let mut batch_no = 0i32;
        let mut audience = 0i64;
        let started = pushflow_schemas::now_millis();
        s.store.analyze_audience().await?;
        let mut subscribers = s.store.audience(&campaign.store_id).await?;
        loop {
            let mut pending = Vec::new();
            for _ in 0..32 {
                let ids = subscribers.page(size).await?;
                if ids.is_empty() {
                    break;
                }
                audience += ids.len() as i64;
                // The store is part of the key: campaign ids are unique
                // per store only.
                let key = format!("{}:{}:{batch_no}", campaign.store_id, campaign.campaign_id);
                let b = DispatchBatch {
                    event_id: derived_id(&[&key, "batch"]),
                    occurred_at: started,
                    store_id: campaign.store_id.clone(),
                    campaign_id: campaign.campaign_id.clone(),
                    batch_no,
                    batch_key: key,
                    subscriber_ids: ids,
                    throttle_per_minute: None,
                    due_at: None,
                };
                pending.push((b.batch_key.clone(), s.batches.encode(&b).await?));
                batch_no += 1;
            }
            if pending.is_empty() {
                break;
            }
            let sends = pending.iter().map(|(k, b)| {
                s.view_txn
                    .send(&s.topics.batches, Some(k.as_bytes()), b, &[])
            });
            for r in futures::future::join_all(sends).await {
                r?;
            }
        }
        let key = CampaignKey {
            store_id: campaign.store_id.clone(),
            campaign_id: campaign.campaign_id.clone(),
        };
        s.store.planned(&key, batch_no, audience, cause).await?;
        tracing::info!(component = %s.name, campaign_id = %campaign.campaign_id, store_id = %campaign.store_id, batches = batch_no, audience, "campaign planned");
        Ok(batch_no)
    }

    /// Plans a throttled launch into Postgres (see [`crate::throttle`]).
    async fn plan_throttled(&self, id: &CampaignKey, per_minute: i32) -> Result<(), DispatchError> {
        let s = &self.shared;
        s.store.analyze_audience().await?;
        let planned = s
            .store
            .plan_throttled(id, per_minute, s.cfg.raw.batch_size)
            .await?;
        if let Some((batches, audience)) = planned {
            tracing::info!(component = %s.name, campaign_id = %id.campaign_id, store_id = %id.store_id,
                batches, audience, throttle_per_minute = per_minute, "throttled campaign planned; batches are released as they fall due");
        }
        Ok(())
    }

    async fn apply(&mut self, batch: &[Record]) -> Result<(), DispatchError> {
        let s = self.shared.clone();
        let t = &s.topics;
        let (mut created, mut expired, mut campaigns, mut launches) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in batch {
            let bytes = r.payload.as_deref().unwrap_or_default();
            let cause = || Cause {
                topic: r.topic.clone(),
                partition: r.partition,
                offset: r.offset,
            };
            let decoded = if r.topic == t.subscription_created {
                s.codec
                    .decode::<SubscriptionCreated>(bytes)
                    .await
                    .map(|e| created.push(e))
            } else if r.topic == t.subscription_expired {
                s.codec
                    .decode::<SubscriptionExpired>(bytes)
                    .await
                    .map(|e| expired.push(e))
            } else if r.topic == t.campaign_created {
                s.codec
                    .decode::<CampaignCreated>(bytes)
                    .await
                    .map(|e| campaigns.push((e, cause())))
            } else if r.topic == t.campaign_launched {
                match s.codec.decode::<CampaignLaunched>(bytes).await {
                    Ok(e) if e.throttle_per_minute.is_some_and(|n| n < 1) => {
                        let why = format!(
                            "throttle_per_minute {:?}: must be at least 1, or null for no throttle",
                            e.throttle_per_minute
                        );
                        self.dead_letter(r, &DispatchError::BadRecord(why)).await?;
                        Ok(())
                    }
                    other => other.map(|e| launches.push((e, cause()))),
                }
            } else {
                Ok(())
            };
            match decoded {
                Ok(()) => {}
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => self.dead_letter(r, &e.into()).await?,
            }
        }
        if !created.is_empty() {
            s.store.add_subscriptions(&created).await?;
        }
        if !expired.is_empty() {
            s.store.expire_subscriptions(&expired).await?;
        }
        for (c, _) in &campaigns {
            s.store.add_campaign(c).await?;
        }
        for (l, _) in &launches {
            s.store
                .launch(&l.campaign_id, &l.store_id, l.throttle_per_minute)
                .await?;
        }
        // Each campaign whose content or launch came in this batch, with
        // the last record that names it (any of them commits with the plan).
        let key = |store_id: &str, campaign_id: &str| CampaignKey {
            store_id: store_id.to_string(),
            campaign_id: campaign_id.to_string(),
        };
        let mut touched: BTreeMap<CampaignKey, Cause> = BTreeMap::new();
        for (c, cause) in &campaigns {
            touched.insert(key(&c.store_id, &c.campaign_id), cause.clone());
        }
        for (l, cause) in &launches {
            touched.insert(key(&l.store_id, &l.campaign_id), cause.clone());
        }
        if touched.is_empty() {
            return Ok(());
        }
        let ids: Vec<CampaignKey> = touched.keys().cloned().collect();
        let plans = s.store.plans(&ids).await?;
        for (id, cause) in touched {
            let plan_now = match plans.get(&id) {
                None => false, // not launched yet
                Some(Plan::Waiting) => true,
                Some(Plan::Planned(None)) => false,
                Some(Plan::Planned(Some(by))) if *by == cause => true, // its transaction aborted
                Some(Plan::Planned(Some(by))) => {
                    !s.committed(&s.view_group, std::slice::from_ref(by)).await?[0]
                }
            };
            if !plan_now {
                continue;
            }
            match s.store.campaign(&id.store_id, &id.campaign_id).await? {
                Some(c) => match s.store.launch_throttle(&id).await? {
                    Some(n) => self.plan_throttled(&id, n).await?,
                    None => {
                        self.plan(&c, &cause).await?;
                    }
                },
                None => {
                    tracing::info!(component = %s.name, store_id = %id.store_id, campaign_id = %id.campaign_id, "launch waits for campaign.created")
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Handler for ViewHandler {
    async fn process(&mut self, batch: &[Record]) -> Result<Durable, RuntimeError> {
        self.apply(batch)
            .await
            .map_err(|e| e.into_runtime(&self.shared.name))?;
        Ok(Durable::All)
    }
}

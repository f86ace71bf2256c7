//! The demo's outside world: the merchant's campaign tool calling the
//! ingest API, and the service workers of the simulated browsers pinging
//! back with the tokens they found in their decrypted pushes.
//!
//! Like the real `sw.js`, every ping carries `at`, when its notification
//! was shown or clicked. On-time pings are sent at once, so `at` is the
//! moment of sending. Late pings come from browsers that were offline: they
//! were shown when the plan was drawn (every push had arrived by then) but
//! are sent only after the on-time wave was counted, so their event time
//! lies that long behind the partitions' watermarks. The aggregate marks a
//! ping late for a window only once its window end plus grace is behind the
//! watermark (topology.yaml: 1 m windows with 5 m grace, 1 h with 30 m), so
//! in a demo shorter than that they still land in their windows; ingest
//! accepts `at` back to the token's issue time, so the demo cannot date
//! them earlier than dispatch did.

use futures::StreamExt;
use indicatif::ProgressBar;
use pushflow_schemas::{CampaignCreated, CampaignLaunched, CampaignScheduled, Event, Topic};
use rand::Rng;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

use super::setup::DemoEnv;
use super::DemoArgs;
use crate::Failure;

/// What a browser found in its push.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The browser's index (its simulated IP address).
    pub browser: usize,
    /// `notification_id` of the payload.
    pub notification_id: String,
    /// `ping_token` of the payload.
    pub token: String,
}

/// One ping a service worker sends.
#[derive(Debug, Clone)]
pub struct Ping {
    browser: usize,
    kind: &'static str,
    notification_id: String,
    token: String,
    /// When shown or clicked (ms since the epoch); `None`: when sent.
    at: Option<i64>,
}

/// The pings to send, drawn at random from the fractions of [`DemoArgs`].
pub struct Plan {
    /// Sent first.
    pub on_time: Vec<Ping>,
    /// Sent after the on-time ones were counted, dated when the plan was
    /// drawn (late in event time).
    pub late: Vec<Ping>,
}

/// Ground truth: the distinct notifications pinged.
#[derive(Debug, Default, Clone)]
pub struct Truth {
    /// Delivered notification ids.
    pub delivered: HashSet<String>,
    /// Clicked notification ids.
    pub clicked: HashSet<String>,
}

/// What [`send`] got back.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Sent {
    /// `delivered` pings accepted (202).
    pub delivered: u64,
    /// `clicked` pings accepted (202).
    pub clicked: u64,
    /// Pings refused for good.
    pub refused: u64,
    /// 429 / 503 answers retried.
    pub retried: u64,
}

impl Plan {
    /// Each delivered push pings `delivered` with probability
    /// `args.delivered` and, if so, `clicked` with `args.clicked`; each
    /// ping is repeated with `args.repeated` and held back with `args.late`.
    /// Every push has been shown when this is called: held-back pings are
    /// dated now.
    pub fn draw(pushes: &[Delivered], args: &DemoArgs) -> Plan {
        let shown_at = pushflow_schemas::now_millis();
        let mut rng = rand::rng();
        let mut plan = Plan {
            on_time: Vec::new(),
            late: Vec::new(),
        };
        for p in pushes {
            if !rng.random_bool(args.delivered) {
                continue;
            }
            let mut kinds = vec!["delivered"];
            if rng.random_bool(args.clicked) {
                kinds.push("clicked");
            }
            for kind in kinds {
                let copies = if rng.random_bool(args.repeated) { 2 } else { 1 };
                for _ in 0..copies {
                    let late = rng.random_bool(args.late);
                    let ping = Ping {
                        browser: p.browser,
                        kind,
                        notification_id: p.notification_id.clone(),
                        token: p.token.clone(),
                        at: late.then_some(shown_at),
                    };
                    if late {
                        plan.late.push(ping);
                    } else {
                        plan.on_time.push(ping);
                    }
                }
            }
        }
        plan
    }

    /// The distinct notifications among `pings`.
    pub fn truth_of(&self, pings: &[Ping]) -> Truth {
        let mut t = Truth::default();
        for p in pings {
            match p.kind {
                "delivered" => t.delivered.insert(p.notification_id.clone()),
                _ => t.clicked.insert(p.notification_id.clone()),
            };
        }
        t
    }

    /// The distinct notifications of the whole plan.
    pub fn truth(&self) -> Truth {
        let mut t = self.truth_of(&self.on_time);
        let late = self.truth_of(&self.late);
        t.delivered.extend(late.delivered);
        t.clicked.extend(late.clicked);
        t
    }
}

/// A browser's address as the load balancer reports it.
fn browser_ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

/// Posts `events` (topic, JSON record) one by one through
/// `POST /v1/events/{topic}`, as the merchant's campaign tool does.
async fn post_events(
    env: &DemoEnv,
    token: &str,
    events: Vec<(&'static Topic, serde_json::Value)>,
) -> Result<(), Failure> {
    for (topic, body) in events {
        let r = env
            .http
            .post(format!("{}/v1/events/{}", env.ingest(), topic.name))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        if status.as_u16() != 201 {
            let text = r.text().await.unwrap_or_default();
            return Err(Failure::Other(anyhow::anyhow!(
                "ingest refused {} with {status}: {text} (is --token / PUSHFLOW_DEMO_TOKEN one of ingest's tokens?)",
                topic.name
            )));
        }
    }
    Ok(())
}

/// Creates and launches a campaign for `store_id` through
/// `POST /v1/events/…`; returns its id.
pub async fn launch_campaign(
    env: &DemoEnv,
    store_id: &str,
    token: &str,
) -> Result<String, Failure> {
    let campaign_id = super::fresh_id("camp");
    let created = json!({
        "store_id": store_id,
        "campaign_id": campaign_id,
        "title": "Black Friday: 30 % off",
        "body": "Only today, on everything in the shop.",
        "url": "https://shop.example/black-friday",
        "icon": null,
        "ttl_seconds": 86_400,
        "urgency": "high",
    });
    let launched = json!({"store_id": store_id, "campaign_id": campaign_id});
    post_events(
        env,
        token,
        vec![
            (CampaignCreated::topic(), created),
            (CampaignLaunched::topic(), launched),
        ],
    )
    .await?;
    Ok(campaign_id)
}

/// A second campaign, created and scheduled through the ingest API to go
/// out `SCHEDULED_AFTER` from now (the scheduler launches it then, unless
/// it is cancelled first), so the dashboard shows a scheduled campaign.
pub struct Scheduled {
    /// Its id.
    pub campaign_id: String,
    /// `send_at`, ms since the epoch.
    pub send_at: i64,
}

/// How far ahead the demo schedules its second campaign.
pub const SCHEDULED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Creates and schedules the demo's second campaign (see [`Scheduled`]).
pub async fn schedule_campaign(
    env: &DemoEnv,
    store_id: &str,
    token: &str,
) -> Result<Scheduled, Failure> {
    let campaign_id = super::fresh_id("camp");
    // On a whole minute, as a merchant would pick it.
    let minute = 60_000;
    let send_at =
        (pushflow_schemas::now_millis() + SCHEDULED_AFTER.as_millis() as i64) / minute * minute;
    let created = json!({
        "store_id": store_id,
        "campaign_id": campaign_id,
        "title": "Cyber Monday: free shipping",
        "body": "Tomorrow only: free shipping on every order.",
        "url": "https://shop.example/cyber-monday",
        "icon": null,
        "ttl_seconds": 43_200,
        "urgency": "normal",
    });
    let scheduled = json!({
        "store_id": store_id,
        "campaign_id": campaign_id,
        "send_at": send_at,
        "throttle_per_minute": 1_000,
    });
    post_events(
        env,
        token,
        vec![
            (CampaignCreated::topic(), created),
            (CampaignScheduled::topic(), scheduled),
        ],
    )
    .await?;
    Ok(Scheduled {
        campaign_id,
        send_at,
    })
}

/// Sends `pings` to `/v1/pings`, 64 at a time, retrying 429 and 503 after
/// their `Retry-After`.
pub async fn send(env: &DemoEnv, pings: &[Ping], bar: &ProgressBar) -> Result<Sent, Failure> {
    let url = format!("{}/v1/pings", env.ingest());
    let results: Vec<Result<(&'static str, u64), String>> = futures::stream::iter(pings)
        .map(|p| {
            let url = url.clone();
            async move {
                let r = send_one(env, &url, p).await;
                bar.inc(1);
                r
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut sent = Sent::default();
    let mut first_error = None;
    for r in results {
        match r {
            Ok((kind, retries)) => {
                sent.retried += retries;
                match kind {
                    "delivered" => sent.delivered += 1,
                    _ => sent.clicked += 1,
                }
            }
            Err(e) => {
                sent.refused += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        tracing::warn!(refused = sent.refused, first = %e, "pings refused");
    }
    Ok(sent)
}

async fn send_one(env: &DemoEnv, url: &str, p: &Ping) -> Result<(&'static str, u64), String> {
    // Dated once: a retry reports the same event time, as sw.js does.
    let at = p.at.unwrap_or_else(pushflow_schemas::now_millis);
    let body = json!({"type": p.kind, "token": p.token, "at": at}).to_string();
    let mut retries = 0;
    loop {
        let r = env
            .http
            .post(url)
            .header("content-type", "text/plain;charset=UTF-8")
            .header("x-forwarded-for", browser_ip(p.browser))
            .body(body.clone())
            .send()
            .await;
        let wait = match r {
            Ok(r) if r.status().as_u16() == 202 => return Ok((p.kind, retries)),
            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_millis(200)),
            Ok(r) => {
                let status = r.status();
                return Err(format!("{status}: {}", r.text().await.unwrap_or_default()));
            }
            Err(e) if retries < 5 => {
                tracing::debug!(error = %e, "ping failed; retrying");
                Duration::from_millis(200)
            }
            Err(e) => return Err(e.to_string()),
        };
        retries += 1;
        if retries > 50 {
            return Err(format!(
                "ping of {} still refused after 50 tries",
                p.notification_id
            ));
        }
        tokio::time::sleep(wait).await;
    }
}

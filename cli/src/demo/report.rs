//! The demo's report: figures per phase, and checks of pushflow's outputs
//! against the demo's ground truth.

use pushflow_aggregate::billing::BillingRow;
use pushflow_s3_parquet::lake::table_name;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::browsers::{Scheduled, Sent, Truth};
use super::checks::{LakeCounts, Pushes};
use crate::procs::ProcessFigures;

/// The reference peak: a million notifications in 15 minutes.
const REFERENCE_NOTIFICATIONS: f64 = 1_000_000.0;
const REFERENCE_SECONDS: f64 = 15.0 * 60.0;

/// One check of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The figures compared.
    pub detail: String,
}

/// Dispatch's figures.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DispatchFigures {
    /// From launch until every browser had its push.
    pub seconds: f64,
    /// Notifications per second over that time.
    pub per_second: f64,
    /// Pushes push-sim accepted.
    pub accepted: u64,
    /// Subscribers pushed more than once.
    pub repeated: u64,
    /// Bodies push-sim could not decrypt.
    pub decrypt_failed: u64,
    /// Time a million notifications would take at this rate.
    pub projected_seconds_for_1m: f64,
    /// `projected_seconds_for_1m` / 15 minutes (below 1: faster than the
    /// reference peak).
    pub vs_reference: f64,
}

/// The pings the browsers sent.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PingFigures {
    /// On-time wave.
    pub on_time: Sent,
    /// Late wave.
    pub late: Sent,
    /// Distinct notifications pinged `delivered` (ground truth).
    pub distinct_delivered: u64,
    /// Distinct notifications pinged `clicked` (ground truth).
    pub distinct_clicked: u64,
    /// What the aggregate itself counted late for a window (its table
    /// `late_events`): (window size, distinct (notification, kind)). The
    /// held-back pings carry their shown time, so they are late in event
    /// time; the aggregate calls one late only once its window's end plus
    /// grace is behind the partition's watermark.
    pub counted_late: Vec<(String, i64)>,
}

/// The demo's second campaign, scheduled for later.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ScheduledFigures {
    /// Its id.
    pub campaign_id: String,
    /// `send_at`, RFC 3339 UTC.
    pub send_at: String,
}

/// What the dashboard's API answered for the demo's merchant.
#[derive(Debug, Default, Clone, Serialize)]
pub struct DashboardFigures {
    /// The page for the demo's store and campaign.
    pub url: String,
    /// Whether the topology runs `analytics` (dispatched and the scheduled
    /// campaign come from it).
    pub with_analytics: bool,
    /// The campaign's `dispatched`.
    pub dispatched: i64,
    /// The campaign's `delivered`.
    pub delivered: i64,
    /// The campaign's `clicked`.
    pub clicked: i64,
    /// This month's billed impressions.
    pub impressions: i64,
    /// This month's billed clicks.
    pub clicks: i64,
    /// The second campaign's `status` (or why it could not be read).
    pub scheduled_status: String,
    /// Why the API could not be read, if it could not.
    pub error: Option<String>,
}

/// What `pushflow demo` reports.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// The demo's merchant.
    pub store_id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// Its second campaign, scheduled for later.
    pub scheduled_campaign: ScheduledFigures,
    /// Simulated subscribers.
    pub subscribers: u64,
    /// Seconds per phase, in order.
    pub phases: Vec<(String, f64)>,
    /// Dispatch.
    pub dispatch: DispatchFigures,
    /// Pings.
    pub pings: PingFigures,
    /// The billing view's row for the merchant this month.
    pub billing: Option<BillingRow>,
    /// The lake's rows for the merchant.
    pub lake: Option<LakeCounts>,
    /// What the dashboard's API showed (when the topology has one).
    pub dashboard: Option<DashboardFigures>,
    /// Dead-letter topics that grew during the demo, by how much their
    /// watermarks moved.
    pub dead_letters: BTreeMap<String, i64>,
    /// The processes the work ran in: peak memory and CPU per phase.
    pub processes: Vec<ProcessFigures>,
    /// Whole run, seconds.
    pub total_seconds: f64,
    /// Every check and whether it held.
    pub checks: Vec<Check>,
}

impl Report {
    /// An empty report for `store_id`.
    pub fn new(store_id: &str, subscribers: usize) -> Report {
        Report {
            store_id: store_id.to_string(),
            subscribers: subscribers as u64,
            ..Report::default()
        }
    }

    /// Records the second campaign.
    pub fn scheduled(&mut self, s: &Scheduled) {
        self.scheduled_campaign = ScheduledFigures {
            campaign_id: s.campaign_id.clone(),
            send_at: chrono::DateTime::from_timestamp_millis(s.send_at)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
        };
    }

    /// Records a phase's duration.
    pub fn phase(&mut self, name: &str, took: Duration) {
        self.phases.push((name.to_string(), took.as_secs_f64()));
    }

    /// Records dispatch's figures.
    pub fn dispatch(&mut self, p: &Pushes, took: Duration) {
        let seconds = took.as_secs_f64().max(1e-3);
        let per_second = self.subscribers as f64 / seconds;
        let projected = REFERENCE_NOTIFICATIONS / per_second;
        self.phase("dispatch", took);
        self.dispatch = DispatchFigures {
            seconds,
            per_second,
            accepted: p.accepted,
            repeated: p.repeated,
            decrypt_failed: p.decrypt_failed,
            projected_seconds_for_1m: projected,
            vs_reference: projected / REFERENCE_SECONDS,
        };
    }

    /// Records the pings sent and the ground truth.
    pub fn pings(&mut self, truth: &Truth, on_time: &Sent, late: &Sent) {
        self.pings = PingFigures {
            on_time: *on_time,
            late: *late,
            distinct_delivered: truth.delivered.len() as u64,
            distinct_clicked: truth.clicked.len() as u64,
            counted_late: Vec::new(),
        };
    }

    /// The rows each lake table must hold for this merchant: one per event
    /// the demo caused, repeated pings included (each is its own event).
    pub fn expected_lake_rows(&self) -> BTreeMap<String, u64> {
        let n = self.subscribers;
        let p = &self.pings;
        [
            ("subscription.created", n),
            ("subscription.expired", 0),
            // The launched campaign and the scheduled one.
            ("campaign.created", 2),
            ("campaign.launched", 1),
            ("campaign.scheduled", 1),
            ("campaign.cancelled", 0),
            ("notification.dispatched", n),
            ("notification.failed", 0),
            (
                "notification.delivered",
                p.on_time.delivered + p.late.delivered,
            ),
            ("notification.clicked", p.on_time.clicked + p.late.clicked),
        ]
        .into_iter()
        .map(|(t, n)| (table_name(t), n))
        .collect()
    }

    /// Fills [`Report::checks`] from the figures.
    pub fn check(&mut self) {
        let mut checks = Vec::new();
        let mut add = |name: &str, ok: bool, detail: String| {
            checks.push(Check {
                name: name.into(),
                ok,
                detail,
            })
        };
        let p = &self.pings;
        let lake = self.lake.clone().unwrap_or_default();
        let dispatched = lake
            .rows
            .get("notification_dispatched")
            .copied()
            .unwrap_or(0);
        let failed = lake.rows.get("notification_failed").copied().unwrap_or(0);
        add(
            "every subscriber has exactly one outcome",
            lake.distinct_dispatched == self.subscribers
                && dispatched == self.subscribers
                && failed == 0,
            format!(
                "{} subscribers; lake: {dispatched} dispatched ({} distinct), {failed} failed",
                self.subscribers, lake.distinct_dispatched
            ),
        );
        add(
            "push-sim decrypted every push",
            self.dispatch.decrypt_failed == 0,
            format!(
                "{} accepted, {} not decryptable",
                self.dispatch.accepted, self.dispatch.decrypt_failed
            ),
        );
        let refused = p.on_time.refused + p.late.refused;
        add(
            "ingest accepted every ping",
            refused == 0,
            format!("{refused} refused"),
        );
        let (bi, bc) = self
            .billing
            .as_ref()
            .map_or((-1, -1), |b| (b.impressions, b.clicks));
        add(
            "billing = distinct pings sent",
            bi == p.distinct_delivered as i64 && bc == p.distinct_clicked as i64,
            format!(
                "impressions {bi} vs {} distinct delivered; clicks {bc} vs {} distinct clicked",
                p.distinct_delivered, p.distinct_clicked
            ),
        );
        add(
            "lake query agrees with billing",
            lake.distinct_delivered as i64 == bi && lake.distinct_clicked as i64 == bc,
            format!(
                "lake: {} delivered, {} clicked; billing: {bi}, {bc}",
                lake.distinct_delivered, lake.distinct_clicked
            ),
        );
        let expected = self.expected_lake_rows();
        add(
            "lake holds every record exactly once",
            lake.rows == expected,
            format!("rows {:?}, expected {expected:?}", lake.rows),
        );
        if let Some(d) = &self.dashboard {
            let pings = d.delivered == p.distinct_delivered as i64
                && d.clicked == p.distinct_clicked as i64;
            let analytics = !d.with_analytics
                || (d.dispatched == self.subscribers as i64 && d.scheduled_status == "scheduled");
            add(
                "dashboard API agrees with billing and the pings",
                d.error.is_none() && pings && (d.impressions, d.clicks) == (bi, bc) && analytics,
                match &d.error {
                    Some(e) => format!("dashboard API: {e}"),
                    None => format!(
                        "campaign: {} delivered, {} clicked{}; billing: {} impressions, {} clicks{}",
                        d.delivered,
                        d.clicked,
                        match d.with_analytics {
                            true => format!(", {} dispatched", d.dispatched),
                            false => String::new(),
                        },
                        d.impressions,
                        d.clicks,
                        match d.with_analytics {
                            true => format!("; second campaign {}", d.scheduled_status),
                            false => String::new(),
                        },
                    ),
                },
            );
        }
        add(
            "no dead letters",
            self.dead_letters.is_empty(),
            format!("{:?}", self.dead_letters),
        );
        self.checks = checks;
    }

    /// Names of the checks that failed.
    pub fn failed_checks(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }

    /// What a phase moved, for its rate: (count, unit).
    fn phase_items(&self, phase: &str) -> Option<(u64, &'static str)> {
        let p = &self.pings;
        let pings = p.on_time.delivered + p.on_time.clicked + p.late.delivered + p.late.clicked;
        match phase {
            "subscribe" => Some((self.subscribers, "subscribers")),
            "dispatch" => Some((self.subscribers, "notifications")),
            // Sending, and waiting until the on-time ones are billed.
            "pings" => Some((pings, "pings")),
            "billing" => Some((p.distinct_delivered + p.distinct_clicked, "distinct pings")),
            "lake" => Some((self.expected_lake_rows().values().sum(), "rows")),
            _ => None,
        }
    }

    /// Per process: peak memory, and CPU per phase as seconds and as cores
    /// busy over the phase's wall time.
    fn render_processes(&self, s: &mut String) {
        let wall: BTreeMap<&str, f64> = self.phases.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        for p in &self.processes {
            let phases: Vec<String> = p
                .cpu_seconds
                .iter()
                .map(|(n, c)| {
                    // Samples are a second apart: a shorter phase's share
                    // of cores would be noise.
                    let wall = wall.get(n.as_str()).copied().unwrap_or(0.0);
                    match wall >= 5.0 {
                        true => format!("{n} {c:.1} s ({:.2} cores)", c / wall),
                        false => format!("{n} {c:.1} s"),
                    }
                })
                .collect();
            let _ = writeln!(
                s,
                "  process       {} ({} process{}): peak {:.0} MB; CPU {}",
                p.name,
                p.processes,
                if p.processes == 1 { "" } else { "es" },
                p.peak_mb,
                phases.join(", ")
            );
        }
    }

    /// The report as printed.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let d = &self.dispatch;
        let p = &self.pings;
        let _ = writeln!(
            s,
            "\npushflow demo: merchant {} · campaign {}",
            self.store_id, self.campaign_id
        );
        let _ = writeln!(s, "  subscribers   {}", self.subscribers);
        if !self.scheduled_campaign.campaign_id.is_empty() {
            let _ = writeln!(
                s,
                "  scheduled     campaign {} for {}",
                self.scheduled_campaign.campaign_id, self.scheduled_campaign.send_at
            );
        }
        let _ = writeln!(
            s,
            "  dispatch      {} notifications in {:.1} s = {:.0}/s ({} pushes accepted, {} repeated)",
            self.subscribers, d.seconds, d.per_second, d.accepted, d.repeated
        );
        let _ = writeln!(
            s,
            "  reference     1,000,000 notifications: {} at this rate vs 15 min ({:.2}× the reference time)",
            humantime::format_duration(Duration::from_secs(d.projected_seconds_for_1m as u64)),
            d.vs_reference
        );
        let _ = writeln!(
            s,
            "  pings         {} delivered + {} clicked accepted ({} of them held back, sent late with their shown time); {} / {} distinct",
            p.on_time.delivered + p.late.delivered,
            p.on_time.clicked + p.late.clicked,
            p.late.delivered + p.late.clicked,
            p.distinct_delivered,
            p.distinct_clicked
        );
        let counted: Vec<String> = p
            .counted_late
            .iter()
            .map(|(w, n)| format!("{n} for the {w} windows"))
            .collect();
        let _ = writeln!(
            s,
            "  late          the aggregate counted {} late (window end + grace behind the watermark; still billed)",
            match counted.is_empty() {
                true => "none".to_string(),
                false => counted.join(", "),
            }
        );
        if let Some(b) = &self.billing {
            let _ =
                writeln!(
                s,
                "  billing       {} {}: {} impressions, {} clicks (pushflow billing --month {})",
                b.store_id, b.month, b.impressions, b.clicks, &b.month[..7]
            );
        }
        if let Some(l) = &self.lake {
            let _ = writeln!(
                s,
                "  lake query    {} distinct delivered, {} distinct clicked",
                l.distinct_delivered, l.distinct_clicked
            );
            let _ = writeln!(s, "                pushflow query \"{}\"", l.sql);
        }
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(n, t)| match self.phase_items(n) {
                Some((items, what)) => {
                    format!("{n} {t:.1}s ({:.0} {what}/s)", items as f64 / t.max(1e-3))
                }
                None => format!("{n} {t:.1}s"),
            })
            .collect();
        let _ = writeln!(
            s,
            "  phases        {} · total {:.1} s",
            phases.join(", "),
            self.total_seconds
        );
        if let Some(d) = &self.dashboard {
            let _ = writeln!(s, "  dashboard     {}", d.url);
        }
        self.render_processes(&mut s);
        let _ = writeln!(s, "  checks");
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            let _ = writeln!(s, "    {mark} {}: {}", c.name, c.detail);
        }
        s
    }
}

//! What one (store, campaign) is: pending, cancelled or launched, and how
//! each input event changes it. Pure: no I/O, unit-tested below.
//!
//! Rules (ids are unique per store only, so everything is keyed by
//! [`CampaignKey`], never by the campaign id alone):
//!
//! - `campaign.scheduled` and `campaign.cancelled` are different topics,
//!   so Kafka gives no order between them. They are ordered by event time
//!   (`occurred_at`, ties broken by `event_id`), which makes the outcome
//!   the same whatever order they are read in: the schedule in force is
//!   the latest `campaign.scheduled`; a `campaign.cancelled` cancels every
//!   schedule that occurred at or before it (a cancel wins a tie), and a
//!   `campaign.scheduled` that occurred after the last cancel schedules
//!   the campaign again (cancel, then schedule anew, is allowed).
//! - A later `campaign.scheduled` reschedules a pending campaign (new
//!   `send_at`, new `throttle_per_minute`, new version).
//! - Launched is final: a campaign is launched at most once, whether the
//!   scheduler launched it or someone posted `campaign.launched` directly
//!   (then its schedule is moot). A schedule or cancel after that changes
//!   nothing and is reported.

use uuid::Uuid;

/// A campaign: (store, campaign id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignKey {
    /// The store.
    pub store_id: String,
    /// The campaign, unique within its store.
    pub campaign_id: String,
}

/// Where a campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Scheduled, not launched yet.
    Pending,
    /// Called off (or only a cancel was seen so far).
    Cancelled,
    /// `campaign.launched` is on the topic.
    Launched,
}

impl State {
    /// As stored in Postgres.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Cancelled => "cancelled",
            State::Launched => "launched",
        }
    }

    /// From Postgres.
    pub fn parse(s: &str) -> State {
        match s {
            "pending" => State::Pending,
            "launched" => State::Launched,
            _ => State::Cancelled,
        }
    }
}

/// How a campaign was launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The `campaign.launched` event's id.
    pub event_id: String,
    /// Its `occurred_at` (for the scheduler's own: the firing time).
    pub at: i64,
    /// How late after `send_at` it fired (the scheduler's own launches).
    pub lateness_ms: Option<i64>,
    /// Whether the scheduler launched it (else it was posted directly).
    pub by_scheduler: bool,
}

/// One campaign's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Where it stands.
    pub state: State,
    /// When to launch (ms), from the schedule in force.
    pub send_at: Option<i64>,
    /// Its throttle.
    pub throttle_per_minute: Option<i32>,
    /// The `event_id` of the `campaign.scheduled` in force: the version
    /// the launch's event id derives from.
    pub version: Option<String>,
    /// That event's `occurred_at`.
    pub scheduled_at: Option<i64>,
    /// The latest cancel's `occurred_at`.
    pub cancelled_at: Option<i64>,
    /// Set once launched.
    pub launch: Option<Launch>,
}

/// An input event, decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `campaign.scheduled`.
    Scheduled {
        /// Its id (the version).
        event_id: String,
        /// Event time.
        occurred_at: i64,
        /// When to launch.
        send_at: i64,
        /// Throttle for dispatch.
        throttle_per_minute: Option<i32>,
    },
    /// `campaign.cancelled`.
    Cancelled {
        /// Its id.
        event_id: String,
        /// Event time.
        occurred_at: i64,
    },
    /// `campaign.launched`, by anyone.
    Launched {
        /// Its id.
        event_id: String,
        /// Event time.
        occurred_at: i64,
        /// The `send_at` the scheduler's header carries on its own
        /// launches (absent on a launch posted directly).
        scheduled_send_at: Option<i64>,
    },
}

/// What an input did, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A first schedule: now pending.
    Scheduled,
    /// A pending campaign got a new schedule.
    Rescheduled,
    /// Scheduled again after a cancel.
    ScheduledAgain,
    /// An older schedule than the one in force, or one a later cancel
    /// already called off: nothing changes.
    Stale,
    /// A pending campaign was cancelled.
    Cancelled,
    /// A cancel older than the schedule in force, or for a campaign
    /// already cancelled: nothing changes.
    CancelIgnored,
    /// A cancel for a campaign already launched: too late.
    CancelTooLate,
    /// A schedule for a campaign already launched: moot.
    ScheduleAfterLaunch,
    /// The campaign is launched now (by this event).
    Launched,
    /// Launched before: nothing changes.
    AlreadyLaunched,
}

impl Change {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Scheduled => "scheduled",
            Change::Rescheduled => "rescheduled",
            Change::ScheduledAgain => "scheduled_again",
            Change::Stale => "stale",
            Change::Cancelled => "cancelled",
            Change::CancelIgnored => "cancel_ignored",
            Change::CancelTooLate => "cancel_too_late",
            Change::ScheduleAfterLaunch => "schedule_after_launch",
            Change::Launched => "launched",
            Change::AlreadyLaunched => "already_launched",
        }
    }
}

fn empty() -> Schedule {
    Schedule {
        state: State::Cancelled,
        send_at: None,
        throttle_per_minute: None,
        version: None,
        scheduled_at: None,
        cancelled_at: None,
        launch: None,
    }
}

/// The state a row not launched is in.
fn derive(s: &Schedule) -> State {
    match (s.scheduled_at, s.cancelled_at) {
        (None, _) => State::Cancelled,
        (Some(_), None) => State::Pending,
        // A cancel wins a tie.
        (Some(sch), Some(can)) if sch > can => State::Pending,
        _ => State::Cancelled,
    }
}

/// Applies `input` to the campaign's row (`None`: never seen).
pub fn apply(current: Option<Schedule>, input: &Input) -> (Schedule, Change) {
    let had_row = current.is_some();
    let mut s = current.unwrap_or_else(empty);
    if s.state == State::Launched {
        let change = match input {
            Input::Scheduled { .. } => Change::ScheduleAfterLaunch,
            Input::Cancelled { occurred_at, .. } => {
                // Kept on the row (the state stays launched): a cancel came,
                // too late.
                s.cancelled_at = Some(s.cancelled_at.map_or(*occurred_at, |c| c.max(*occurred_at)));
                Change::CancelTooLate
            }
            Input::Launched { .. } => Change::AlreadyLaunched,
        };
        return (s, change);
    }
    let before = if had_row { Some(derive(&s)) } else { None };
    let change = match input {
        Input::Scheduled {
            event_id,
            occurred_at,
            send_at,
            throttle_per_minute,
        } => {
            let newer = match (&s.scheduled_at, &s.version) {
                (Some(at), Some(v)) => (*occurred_at, event_id.as_str()) > (*at, v.as_str()),
                _ => true,
            };
            if !newer {
                Change::Stale
            } else {
                let had_schedule = s.scheduled_at.is_some();
                s.send_at = Some(*send_at);
                s.throttle_per_minute = *throttle_per_minute;
                s.version = Some(event_id.clone());
                s.scheduled_at = Some(*occurred_at);
                match (derive(&s), before) {
                    (State::Pending, Some(State::Pending)) if had_schedule => Change::Rescheduled,
                    (State::Pending, Some(State::Cancelled)) if had_schedule => {
                        Change::ScheduledAgain
                    }
                    (State::Pending, _) => Change::Scheduled,
                    _ => Change::Stale,
                }
            }
        }
        Input::Cancelled { occurred_at, .. } => {
            s.cancelled_at = Some(s.cancelled_at.map_or(*occurred_at, |c| c.max(*occurred_at)));
            match (before, derive(&s)) {
                (Some(State::Pending), State::Cancelled) => Change::Cancelled,
                _ => Change::CancelIgnored,
            }
        }
        Input::Launched {
            event_id,
            occurred_at,
            scheduled_send_at,
        } => {
            s.launch = Some(Launch {
                event_id: event_id.clone(),
                at: *occurred_at,
                lateness_ms: scheduled_send_at.map(|at| occurred_at - at),
                by_scheduler: scheduled_send_at.is_some(),
            });
            s.state = State::Launched;
            return (s, Change::Launched);
        }
    };
    s.state = derive(&s);
    (s, change)
}

const NS: Uuid = Uuid::from_u128(0x2f6b_1d3e_7c44_4f1a_8e0d_7363_6865_6475);

/// The `event_id` of the launch of `key` by the schedule `version`:
/// UUIDv5, so a launch fired again after a crash (its transaction never
/// committed) carries the same id.
pub fn launch_event_id(key: &CampaignKey, version: &str) -> String {
    Uuid::new_v5(
        &NS,
        format!("{}\n{}\n{version}", key.store_id, key.campaign_id).as_bytes(),
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduled(id: &str, at: i64, send_at: i64) -> Input {
        Input::Scheduled {
            event_id: id.into(),
            occurred_at: at,
            send_at,
            throttle_per_minute: None,
        }
    }
    fn cancelled(at: i64) -> Input {
        Input::Cancelled {
            event_id: format!("c{at}"),
            occurred_at: at,
        }
    }
    fn run(inputs: &[Input]) -> (Schedule, Vec<Change>) {
        let mut row = None;
        let mut changes = Vec::new();
        for i in inputs {
            let (s, c) = apply(row.take(), i);
            row = Some(s);
            changes.push(c);
        }
        (row.unwrap(), changes)
    }

    #[test]
    fn schedule_reschedule_and_stale() {
        let (s, c) = run(&[
            scheduled("a", 10, 1000),
            scheduled("b", 20, 2000),
            scheduled("x", 15, 9000),
        ]);
        assert_eq!(
            c,
            vec![Change::Scheduled, Change::Rescheduled, Change::Stale]
        );
        assert_eq!(s.state, State::Pending);
        assert_eq!(s.send_at, Some(2000));
        assert_eq!(s.version.as_deref(), Some("b"));
    }

    #[test]
    fn cancel_wins_regardless_of_read_order() {
        // Scheduled at 10, cancelled at 20: cancelled in either order.
        let (a, _) = run(&[scheduled("a", 10, 1000), cancelled(20)]);
        let (b, cb) = run(&[cancelled(20), scheduled("a", 10, 1000)]);
        assert_eq!(a.state, State::Cancelled);
        assert_eq!(b.state, State::Cancelled);
        assert_eq!(cb, vec![Change::CancelIgnored, Change::Stale]);
        // A tie: the cancel wins.
        let (t, _) = run(&[scheduled("a", 20, 1000), cancelled(20)]);
        assert_eq!(t.state, State::Cancelled);
    }

    #[test]
    fn scheduled_again_after_a_cancel() {
        let (s, c) = run(&[
            scheduled("a", 10, 1000),
            cancelled(20),
            scheduled("b", 30, 5000),
        ]);
        assert_eq!(
            c,
            vec![Change::Scheduled, Change::Cancelled, Change::ScheduledAgain]
        );
        assert_eq!((s.state, s.send_at), (State::Pending, Some(5000)));
        // Read in another order, the same end state.
        let (t, _) = run(&[
            scheduled("b", 30, 5000),
            cancelled(20),
            scheduled("a", 10, 1000),
        ]);
        assert_eq!(
            (t.state, t.send_at, t.version),
            (s.state, s.send_at, s.version)
        );
    }

    #[test]
    fn launched_is_final() {
        let launched = Input::Launched {
            event_id: "L".into(),
            occurred_at: 1500,
            scheduled_send_at: Some(1000),
        };
        let (s, c) = run(&[
            scheduled("a", 10, 1000),
            launched.clone(),
            cancelled(2000),
            scheduled("b", 3000, 9000),
            launched,
        ]);
        assert_eq!(
            c,
            vec![
                Change::Scheduled,
                Change::Launched,
                Change::CancelTooLate,
                Change::ScheduleAfterLaunch,
                Change::AlreadyLaunched
            ]
        );
        assert_eq!(s.state, State::Launched);
        assert_eq!(s.cancelled_at, Some(2000), "the late cancel is on the row");
        assert_eq!(
            s.send_at,
            Some(1000),
            "the schedule after the launch is not"
        );
        let l = s.launch.unwrap();
        assert_eq!((l.lateness_ms, l.by_scheduler), (Some(500), true));
        // Launched directly (no header) before any schedule: moot.
        let direct = Input::Launched {
            event_id: "D".into(),
            occurred_at: 5,
            scheduled_send_at: None,
        };
        let (s, c) = run(&[direct, scheduled("a", 10, 1000)]);
        assert_eq!(c, vec![Change::Launched, Change::ScheduleAfterLaunch]);
        assert!(!s.launch.unwrap().by_scheduler);
    }

    #[test]
    fn launch_ids_are_per_store_and_version() {
        let k = |s: &str| CampaignKey {
            store_id: s.into(),
            campaign_id: "c".into(),
        };
        assert_eq!(
            launch_event_id(&k("s1"), "v"),
            launch_event_id(&k("s1"), "v")
        );
        assert_ne!(
            launch_event_id(&k("s1"), "v"),
            launch_event_id(&k("s2"), "v")
        );
        assert_ne!(
            launch_event_id(&k("s1"), "v"),
            launch_event_id(&k("s1"), "w")
        );
    }
}

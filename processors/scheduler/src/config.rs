//! What `topology.yaml` says about a `scheduler` component (`settings:`).

use pushflow_runtime::component::ConfigError;
use pushflow_runtime::topology::parse_duration;
use serde::Deserialize;
use std::time::Duration;

/// `settings:` of a `scheduler` component.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Postgres schema of the scheduler's tables.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Longest the timer sleeps before it looks at the earliest pending
    /// `send_at` again (it wakes AT that `send_at` when it is sooner, so
    /// launches normally leave within milliseconds of it).
    #[serde(default = "default_max_sleep")]
    pub max_sleep: String,
    /// Launches written per Kafka transaction (a round of due schedules).
    #[serde(default = "default_max_launches")]
    pub max_launches: usize,
    /// A launch later than this after its `send_at` (the process was down,
    /// or the schedule came in late) is logged at WARN with `late_ms` and
    /// counted in `pushflow_scheduler_late_launches_total`.
    #[serde(default = "default_late_after")]
    pub late_after: String,
    /// Before a round fires, the scheduler reads `campaign.scheduled` and
    /// `campaign.cancelled` up to their high watermarks, so that a cancel
    /// the broker acknowledged before the round is applied first. A
    /// transaction another producer left open holds that reading back; the
    /// round then fires after this long, with a warning.
    #[serde(default = "default_catch_up_timeout")]
    pub catch_up_timeout: String,
}

fn default_schema() -> String {
    "scheduler".into()
}
fn default_max_sleep() -> String {
    "1s".into()
}
fn default_max_launches() -> usize {
    500
}
fn default_late_after() -> String {
    "2s".into()
}
fn default_catch_up_timeout() -> String {
    "10s".into()
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            schema: default_schema(),
            max_sleep: default_max_sleep(),
            max_launches: default_max_launches(),
            late_after: default_late_after(),
            catch_up_timeout: default_catch_up_timeout(),
        }
    }
}

/// Settings checked and converted (no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Postgres schema.
    pub schema: String,
    /// Longest timer sleep.
    pub max_sleep: Duration,
    /// Launches per transaction.
    pub max_launches: usize,
    /// Lateness reported at WARN.
    pub late_after: Duration,
    /// Longest wait to read the inputs up before a round fires.
    pub catch_up_timeout: Duration,
}

impl SchedulerSettings {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let d = |field: &str, v: &str| {
            parse_duration(v).map_err(|m| ConfigError::new(format!("settings.{field}"), m))
        };
        let max_sleep = d("max_sleep", &self.max_sleep)?;
        if max_sleep < Duration::from_millis(10) || max_sleep > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "settings.max_sleep",
                format!("{:?} must be between 10ms and 60s", self.max_sleep),
            ));
        }
        if !(1..=10_000).contains(&self.max_launches) {
            return Err(ConfigError::new(
                "settings.max_launches",
                format!("{}: must be between 1 and 10000", self.max_launches),
            ));
        }
        pushflow_runtime::postgres::check_schema_name("settings.schema", &self.schema)?;
        Ok(Validated {
            schema: self.schema.clone(),
            max_sleep,
            max_launches: self.max_launches,
            late_after: d("late_after", &self.late_after)?,
            catch_up_timeout: d("catch_up_timeout", &self.catch_up_timeout)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_refuses_unknown_fields() {
        let s: SchedulerSettings =
            serde_yaml::from_str("max_sleep: 500ms\nlate_after: 5s\nmax_launches: 100\n").unwrap();
        let v = s.validate().unwrap();
        assert_eq!(v.max_sleep, Duration::from_millis(500));
        assert_eq!(v.late_after, Duration::from_secs(5));
        assert_eq!(v.max_launches, 100);
        assert_eq!(v.schema, "scheduler");
        assert_eq!(v.catch_up_timeout, Duration::from_secs(10));
        assert!(serde_yaml::from_str::<SchedulerSettings>("max_slep: 1s").is_err());
        let bad: SchedulerSettings = serde_yaml::from_str("max_sleep: 2m").unwrap();
        assert_eq!(bad.validate().unwrap_err().field, "settings.max_sleep");
        let bad: SchedulerSettings = serde_yaml::from_str("late_after: soon").unwrap();
        assert_eq!(bad.validate().unwrap_err().field, "settings.late_after");
        let bad: SchedulerSettings = serde_yaml::from_str("schema: Sched-1").unwrap();
        assert_eq!(bad.validate().unwrap_err().field, "settings.schema");
        let bad: SchedulerSettings = serde_yaml::from_str("max_launches: 0").unwrap();
        assert_eq!(bad.validate().unwrap_err().field, "settings.max_launches");
        assert_eq!(
            SchedulerSettings::default().validate().unwrap().max_sleep,
            Duration::from_secs(1)
        );
    }
}

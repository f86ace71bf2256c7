//! What `topology.yaml` says about an `aggregate` component (`settings:`).

use pushflow_runtime::component::ConfigError;
use pushflow_runtime::topology::{parse_duration, Pings};
use serde::Deserialize;
use std::time::Duration;

/// One tumbling window size and its grace period.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSetting {
    /// Window length, e.g. `1m`, `1h` (a whole number of seconds).
    pub size: String,
    /// How long after the window's end (in event time) records are still
    /// added to it; later ones are late events (still billed, reported).
    pub grace: String,
}

/// `settings:` of an `aggregate` component.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSettings {
    /// Window sizes computed at once (default 1 m for the live dashboard,
    /// 1 h for reports).
    #[serde(default = "default_windows")]
    pub windows: Vec<WindowSetting>,
    /// Removed: how long a (notification_id, kind) is remembered is now
    /// `pings.token_ttl + pings.clock_skew` of the topology (in Kafka
    /// record time), the lifetime dispatch gives ping tokens. Refused with
    /// a message saying so.
    #[serde(default)]
    pub dedup_horizon: Option<serde_yaml::Value>,
    /// Largest batch (records) committed in one Postgres transaction.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Postgres schema of the tables (`aggregate`; the billing view is
    /// created in `public` only for this default schema).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Postgres connections committing a batch at once, each for its own
    /// lane of partitions (`partition % commit_connections`); each lane's
    /// transaction holds its partitions' deltas, changelog rows and offsets.
    #[serde(default = "default_commit_connections")]
    pub commit_connections: usize,
    /// How long a lane gathers the parts staged after its first queued one
    /// before committing them all in one transaction (as Kafka Streams'
    /// `commit.interval.ms`): a window row that several batches update is
    /// then written once per interval instead of once per batch. Counted
    /// from when the first part's batch started; `0s` commits each part as
    /// soon as the lane is free. Results reach Postgres at most this much
    /// later; a crash costs only uncommitted batches, read again. A
    /// bounded run (replay, bench) commits once it has read its last
    /// record, without waiting out the interval.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: String,
}

fn default_windows() -> Vec<WindowSetting> {
    vec![
        WindowSetting {
            size: "1m".into(),
            grace: "5m".into(),
        },
        WindowSetting {
            size: "1h".into(),
            grace: "30m".into(),
        },
    ]
}
fn default_max_batch() -> usize {
    20_000
}
fn default_schema() -> String {
    "aggregate".into()
}
fn default_commit_connections() -> usize {
    1
}
fn default_commit_interval() -> String {
    "250ms".into()
}

impl Default for AggregateSettings {
    fn default() -> Self {
        AggregateSettings {
            windows: default_windows(),
            dedup_horizon: None,
            max_batch: default_max_batch(),
            schema: default_schema(),
            commit_connections: default_commit_connections(),
            commit_interval: default_commit_interval(),
        }
    }
}

/// A window in milliseconds, as the core uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Size in ms.
    pub size_ms: i64,
    /// Grace in ms.
    pub grace_ms: i64,
}

/// Settings checked and converted (no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Windows, in ms.
    pub windows: Vec<Window>,
    /// Dedup horizon in ms of record time: `pings.token_ttl +
    /// pings.clock_skew`.
    pub dedup_horizon_ms: i64,
    /// Largest batch.
    pub max_batch: usize,
    /// Postgres schema.
    pub schema: String,
    /// Commit lanes (connections).
    pub commit_connections: usize,
    /// How long a lane gathers parts into one transaction.
    pub commit_interval: Duration,
    /// Most queued parts a lane merges into one transaction (group commit;
    /// [`crate::pipeline::MERGE`], not a setting: 1 turns it off, which
    /// only the bench does to measure it).
    pub group_commit: usize,
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

impl AggregateSettings {
    /// [`AggregateSettings::validate_with`] the default `pings:` (tools
    /// and tests without a topology).
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        self.validate_with(&Pings::default())
    }

    /// Checks every field, taking the dedup horizon from the topology's
    /// `pings:`; the error names the field.
    pub fn validate_with(&self, pings: &Pings) -> Result<Validated, ConfigError> {
        if self.dedup_horizon.is_some() {
            return Err(ConfigError::new(
                "settings.dedup_horizon",
                "removed: the aggregate now remembers each (notification, kind) for `pings.token_ttl + pings.clock_skew` of record time; set `pings: {token_ttl: 7d, clock_skew: 10m}` at the top of topology.yaml instead and remove this setting",
            ));
        }
        if self.windows.is_empty() {
            return Err(ConfigError::new(
                "settings.windows",
                "give at least one window, e.g. [{size: 1m, grace: 5m}]",
            ));
        }
        let mut windows = Vec::new();
        for (i, w) in self.windows.iter().enumerate() {
            let field = |f: &str| format!("settings.windows[{i}].{f}");
            let size = parse_duration(&w.size).map_err(|e| ConfigError::new(field("size"), e))?;
            let grace =
                parse_duration(&w.grace).map_err(|e| ConfigError::new(field("grace"), e))?;
            if size.as_secs() == 0 || size.subsec_nanos() != 0 {
                return Err(ConfigError::new(
                    field("size"),
                    format!(
                        "{:?} must be a whole number of seconds, at least 1s",
                        w.size
                    ),
                ));
            }
            if windows.iter().any(|x: &Window| x.size_ms == ms(size)) {
                return Err(ConfigError::new(
                    field("size"),
                    format!("window size {:?} appears twice", w.size),
                ));
            }
            windows.push(Window {
                size_ms: ms(size),
                grace_ms: ms(grace),
            });
        }
        if !(1..=1_000_000).contains(&self.max_batch) {
            return Err(ConfigError::new(
                "settings.max_batch",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=16).contains(&self.commit_connections) {
            return Err(ConfigError::new(
                "settings.commit_connections",
                format!(
                    "{}: must be between 1 and 16 (Postgres connections per instance)",
                    self.commit_connections
                ),
            ));
        }
        let commit_interval = parse_duration(&self.commit_interval)
            .map_err(|e| ConfigError::new("settings.commit_interval", e))?;
        if commit_interval > Duration::from_secs(10) {
            return Err(ConfigError::new(
                "settings.commit_interval",
                format!(
                    "{:?} is longer than 10s: results would reach Postgres that late and a crash would read that much again; use e.g. 250ms",
                    self.commit_interval
                ),
            ));
        }
        pushflow_runtime::postgres::check_schema_name("settings.schema", &self.schema)?;
        Ok(Validated {
            windows,
            dedup_horizon_ms: ms(pings.dedup_horizon()),
            max_batch: self.max_batch,
            schema: self.schema.clone(),
            commit_connections: self.commit_connections,
            commit_interval,
            group_commit: crate::pipeline::MERGE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_refuses_unknown_fields() {
        let s: AggregateSettings = serde_yaml::from_str(
            "windows: [{size: 1m, grace: 5m}, {size: 1h, grace: 30m}]\nmax_batch: 5000\n",
        )
        .unwrap();
        let pings = Pings {
            token_ttl: Duration::from_secs(3 * 3600),
            clock_skew: Duration::from_secs(60),
        };
        let v = s.validate_with(&pings).unwrap();
        assert_eq!(
            v.windows,
            vec![
                Window {
                    size_ms: 60_000,
                    grace_ms: 300_000
                },
                Window {
                    size_ms: 3_600_000,
                    grace_ms: 1_800_000
                }
            ]
        );
        assert_eq!(v.dedup_horizon_ms, 3 * 3_600_000 + 60_000);
        let old: AggregateSettings = serde_yaml::from_str("dedup_horizon: 2h").unwrap();
        let e = old.validate().unwrap_err();
        assert_eq!(e.field, "settings.dedup_horizon");
        assert!(e.message.contains("pings:"), "{e}");
        assert_eq!(v.max_batch, 5000);
        assert_eq!(v.schema, "aggregate");
        assert_eq!(v.commit_connections, 1);
        assert_eq!(v.commit_interval, Duration::from_millis(250));
        let slow: AggregateSettings = serde_yaml::from_str("commit_interval: 1m").unwrap();
        let e = slow.validate().unwrap_err();
        assert_eq!(e.field, "settings.commit_interval");
        assert!(e.message.contains("250ms"), "{e}");
        let off: AggregateSettings = serde_yaml::from_str("commit_interval: 0s").unwrap();
        assert_eq!(off.validate().unwrap().commit_interval, Duration::ZERO);
        let bad: AggregateSettings = serde_yaml::from_str("commit_connections: 0").unwrap();
        assert_eq!(
            bad.validate().unwrap_err().field,
            "settings.commit_connections"
        );
        assert!(serde_yaml::from_str::<AggregateSettings>("windos: []").is_err());
        let bad: AggregateSettings =
            serde_yaml::from_str("windows: [{size: 1.5s, grace: 1m}]").unwrap();
        assert_eq!(
            bad.validate().unwrap_err().field,
            "settings.windows[0].size"
        );
        assert_eq!(
            AggregateSettings::default()
                .validate()
                .unwrap()
                .windows
                .len(),
            2
        );
    }
}

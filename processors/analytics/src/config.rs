//! What `topology.yaml` says about an `analytics` component (`settings:`).

use pushflow_runtime::component::ConfigError;
use pushflow_runtime::postgres::is_plain_identifier;
use pushflow_runtime::topology::parse_duration;
use serde::Deserialize;

/// `settings:` of an `analytics` component.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSettings {
    /// Postgres schema of the tables (`analytics`; replays build into
    /// another).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Sizes of the tumbling event-time windows of `campaign_windows`
    /// (default `[1m, 1h]`: the dashboard's per-minute and per-hour
    /// series). Whole seconds, at least 1s.
    #[serde(default = "default_windows")]
    pub windows: Vec<String>,
    /// Largest batch (records) committed in one Postgres transaction.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

fn default_schema() -> String {
    "analytics".into()
}
fn default_windows() -> Vec<String> {
    vec!["1m".into(), "1h".into()]
}
fn default_max_batch() -> usize {
    5_000
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            schema: default_schema(),
            windows: default_windows(),
            max_batch: default_max_batch(),
        }
    }
}

/// Settings checked and converted (no I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// Postgres schema.
    pub schema: String,
    /// Window sizes in ms, as written (distinct).
    pub windows_ms: Vec<i64>,
    /// Largest batch.
    pub max_batch: usize,
}

impl AnalyticsSettings {
    /// Checks every field; the error names the field.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        if !is_plain_identifier(&self.schema) {
            return Err(ConfigError::new(
                "settings.schema",
                format!(
                    "{:?} is not a plain Postgres identifier (1 to 48 lowercase letters, digits, _; not starting with a digit)",
                    self.schema
                ),
            ));
        }
        if self.windows.is_empty() {
            return Err(ConfigError::new(
                "settings.windows",
                "give at least one window size, e.g. [1m, 1h]",
            ));
        }
        let mut windows_ms = Vec::new();
        for (i, w) in self.windows.iter().enumerate() {
            let field = format!("settings.windows[{i}]");
            let size = parse_duration(w).map_err(|e| ConfigError::new(field.clone(), e))?;
            if size.as_secs() == 0 || size.subsec_nanos() != 0 {
                return Err(ConfigError::new(
                    field,
                    format!("{w:?} must be a whole number of seconds, at least 1s"),
                ));
            }
            let ms = size.as_millis() as i64;
            if windows_ms.contains(&ms) {
                return Err(ConfigError::new(
                    field,
                    format!("window size {w:?} appears twice"),
                ));
            }
            windows_ms.push(ms);
        }
        if !(1..=1_000_000).contains(&self.max_batch) {
            return Err(ConfigError::new(
                "settings.max_batch",
                format!("{}: must be between 1 and 1000000", self.max_batch),
            ));
        }
        Ok(Validated {
            schema: self.schema.clone(),
            windows_ms,
            max_batch: self.max_batch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_names_bad_fields() {
        let s: AnalyticsSettings =
            serde_yaml::from_str("schema: stats\nwindows: [1m, 1h, 1d]\nmax_batch: 200\n").unwrap();
        assert_eq!(
            s.validate().unwrap(),
            Validated {
                schema: "stats".into(),
                windows_ms: vec![60_000, 3_600_000, 86_400_000],
                max_batch: 200,
            }
        );
        let d = AnalyticsSettings::default().validate().unwrap();
        assert_eq!(
            (d.schema.as_str(), d.windows_ms, d.max_batch),
            ("analytics", vec![60_000, 3_600_000], 5_000)
        );
        assert!(serde_yaml::from_str::<AnalyticsSettings>("windos: [1m]").is_err());
        let field = |yaml: &str| {
            serde_yaml::from_str::<AnalyticsSettings>(yaml)
                .unwrap()
                .validate()
                .unwrap_err()
                .field
        };
        assert_eq!(field("schema: Analytics"), "settings.schema");
        assert_eq!(field("windows: []"), "settings.windows");
        assert_eq!(field("windows: [1m, soon]"), "settings.windows[1]");
        assert_eq!(field("windows: [1.5s]"), "settings.windows[0]");
        assert_eq!(field("windows: [1h, 60m]"), "settings.windows[1]");
        assert_eq!(field("max_batch: 0"), "settings.max_batch");
    }
}

//! What `topology.yaml` says about a `dashboard` component, checked without
//! I/O into a [`DashboardConfig`].
//!
//! ```yaml
//! - name: dashboard
//!   type: dashboard
//!   settings:
//!     addr: 127.0.0.1:8082            # PUSHFLOW_DASHBOARD_ADDR overrides it
//!     tokens:                         # PUSHFLOW_DASHBOARD_TOKENS="name:token[:store1|store2];…" replaces them
//!       - {name: local-dev, sha256: "<pushflow ingest hash-token TOKEN>"}          # every store
//!       - {name: shop-42, sha256: "<…>", stores: [shop-42]}
//!     aggregate_schema: aggregate     # window_stats, late_events (and the billing view)
//!     analytics_schema: analytics     # campaigns, campaign_totals, store_days
//!     windows: [1h, 1m]               # the aggregate's window sizes offered as ?window= (the first is the default)
//!     refresh_interval: 5s            # how often the page reloads its numbers
//!     max_days: 366                   # longest ?from=…&to=… range of /subscribers
//! ```

use pushflow_runtime::bearer::{check_stores, EnvFormat, TokenEntry, Tokens};
use pushflow_runtime::topology::parse_duration;
use serde::Deserialize;
use std::time::Duration;

use crate::DashboardError;

/// `settings:` of a `dashboard` component.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DashboardSettings {
    /// Where the API and page listen (`PUSHFLOW_DASHBOARD_ADDR` overrides
    /// it), e.g. `127.0.0.1:8082`.
    #[serde(default = "default_addr")]
    pub addr: String,
    /// Bearer tokens allowed on `/api/v1`, stored as SHA-256 hashes, each
    /// covering some stores or all. `PUSHFLOW_DASHBOARD_TOKENS` replaces
    /// them when set.
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
    /// Postgres schema of the aggregate's tables (`window_stats`,
    /// `late_events`); the billing view is `public.billing_monthly_impressions`
    /// for the default schema, `<schema>.billing_monthly_impressions`
    /// otherwise (where the aggregate creates it).
    #[serde(default = "default_aggregate_schema")]
    pub aggregate_schema: String,
    /// Postgres schema of the analytics component's tables (`campaigns`,
    /// `campaign_totals`, `store_days`).
    #[serde(default = "default_analytics_schema")]
    pub analytics_schema: String,
    /// Window sizes of the aggregate the API offers as `?window=` (each
    /// must be one the aggregate computes); the first is the default.
    #[serde(default = "default_windows")]
    pub windows: Vec<String>,
    /// How often the page reloads its numbers, e.g. `5s`.
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: String,
    /// The longest range `/subscribers?from=…&to=…` answers, in days.
    #[serde(default = "default_max_days")]
    pub max_days: u32,
}

/// One bearer token as written in `tokens:` (ingest's shape; a dashboard
/// token reads, so it has no topics).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Who holds it (logged, never the token).
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`pushflow ingest hash-token`).
    pub sha256: String,
    /// Stores it may read, or `["*"]`; omitted: every store.
    #[serde(default)]
    pub stores: Vec<String>,
}

fn default_addr() -> String {
    "127.0.0.1:8082".into()
}
fn default_aggregate_schema() -> String {
    "aggregate".into()
}
fn default_analytics_schema() -> String {
    "analytics".into()
}
fn default_windows() -> Vec<String> {
    vec!["1h".into(), "1m".into()]
}
fn default_refresh_interval() -> String {
    "5s".into()
}
fn default_max_days() -> u32 {
    366
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            addr: default_addr(),
            tokens: Vec::new(),
            aggregate_schema: default_aggregate_schema(),
            analytics_schema: default_analytics_schema(),
            windows: default_windows(),
            refresh_interval: default_refresh_interval(),
            max_days: default_max_days(),
        }
    }
}

/// A window size the API offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// As written in the settings, e.g. `1h`.
    pub name: String,
    /// Its length.
    pub size: Duration,
}

impl Window {
    /// The size as a Postgres interval literal, e.g. `3600 seconds`.
    pub fn interval(&self) -> String {
        format!("{} seconds", self.size.as_secs())
    }
}

/// Checked settings, ready to serve with.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Listen address.
    pub addr: String,
    /// Tokens for `/api/v1` (at least one).
    pub tokens: Tokens,
    /// Schema of `window_stats` and `late_events`.
    pub aggregate_schema: String,
    /// Schema of the analytics tables.
    pub analytics_schema: String,
    /// `schema.billing_monthly_impressions`.
    pub billing_view: String,
    /// Offered window sizes, the default first.
    pub windows: Vec<Window>,
    /// How often the page reloads.
    pub refresh: Duration,
    /// Longest `/subscribers` range, days.
    pub max_days: u32,
}

impl DashboardConfig {
    /// The window `?window=` names (by its settings name or any spelling of
    /// the same length, e.g. `60m` for `1h`); the default when `None`.
    pub fn window(&self, asked: Option<&str>) -> Result<&Window, String> {
        let Some(asked) = asked else {
            return Ok(&self.windows[0]);
        };
        let size = parse_duration(asked).ok();
        self.windows
            .iter()
            .find(|w| w.name == asked || Some(w.size) == size)
            .ok_or_else(|| {
                let known: Vec<&str> = self.windows.iter().map(|w| w.name.as_str()).collect();
                format!(
                    "window {asked:?} is not offered; use one of: {}",
                    known.join(", ")
                )
            })
    }

    /// The window the campaign totals are summed over: the largest (fewest
    /// rows; every ping is in one of its windows or in `late_events` for
    /// it, so any window size gives the same totals).
    pub fn totals_window(&self) -> &Window {
        self.windows
            .iter()
            .max_by_key(|w| w.size)
            .expect("validated: at least one window")
    }
}

impl DashboardSettings {
    /// Parses a component's `settings:` (null means defaults).
    pub fn from_yaml(v: &serde_yaml::Value) -> Result<DashboardSettings, DashboardError> {
        if v.is_null() {
            return Ok(DashboardSettings::default());
        }
        serde_yaml::from_value(v.clone())
            .map_err(|e| DashboardError::config("settings", e.to_string()))
    }

    /// Checks the settings, applying `PUSHFLOW_DASHBOARD_ADDR` and
    /// `PUSHFLOW_DASHBOARD_TOKENS` from `env`.
    pub fn validate(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<DashboardConfig, DashboardError> {
        let (addr, addr_field) = match env("PUSHFLOW_DASHBOARD_ADDR").filter(|s| !s.is_empty()) {
            Some(a) => (a, "PUSHFLOW_DASHBOARD_ADDR"),
            None => (self.addr.clone(), "addr"),
        };
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(DashboardError::config(
                addr_field,
                format!("{addr:?} is not ip:port, e.g. 127.0.0.1:8082"),
            ));
        }
        let tokens = match env("PUSHFLOW_DASHBOARD_TOKENS").filter(|s| !s.trim().is_empty()) {
            Some(spec) => Tokens::parse_env(&spec, EnvFormat::Stores, |_| Ok(()))
                .map_err(|e| DashboardError::config("PUSHFLOW_DASHBOARD_TOKENS", e))?,
            None => {
                let mut entries = Vec::new();
                for (i, t) in self.tokens.iter().enumerate() {
                    check_stores(&t.stores)
                        .map_err(|e| DashboardError::config(&format!("tokens[{i}].stores"), e))?;
                    let e = TokenEntry::from_hash(&t.name, &t.sha256, &[], &t.stores)
                        .map_err(|e| DashboardError::config(&format!("tokens[{i}].sha256"), e))?;
                    entries.push(e);
                }
                Tokens::new(entries)
            }
        };
        if tokens.is_empty() {
            return Err(DashboardError::config(
                "tokens",
                "no tokens configured: every /api/v1 call needs one; add tokens \
                 (sha256 from `pushflow ingest hash-token <TOKEN>`, `stores` to limit one to \
                 some stores) or set PUSHFLOW_DASHBOARD_TOKENS=\"name:token[:store1|store2];…\"",
            ));
        }
        for (field, schema) in [
            ("aggregate_schema", &self.aggregate_schema),
            ("analytics_schema", &self.analytics_schema),
        ] {
            if !pushflow_runtime::postgres::is_plain_identifier(schema) {
                return Err(DashboardError::config(
                    field,
                    format!("{schema:?} is not a plain schema name (lowercase letters, digits, _)"),
                ));
            }
        }
        if self.windows.is_empty() {
            return Err(DashboardError::config(
                "windows",
                "empty: list the aggregate's window sizes to offer, e.g. [1h, 1m]",
            ));
        }
        let mut windows: Vec<Window> = Vec::new();
        for (i, w) in self.windows.iter().enumerate() {
            let size = parse_duration(w)
                .map_err(|e| DashboardError::config(&format!("windows[{i}]"), e))?;
            if size.is_zero() || size.subsec_nanos() != 0 {
                return Err(DashboardError::config(
                    &format!("windows[{i}]"),
                    format!("{w:?}: a window is a whole number of seconds, more than 0"),
                ));
            }
            if windows.iter().any(|o| o.size == size) {
                return Err(DashboardError::config(
                    &format!("windows[{i}]"),
                    format!("{w:?} is listed twice"),
                ));
            }
            windows.push(Window {
                name: w.clone(),
                size,
            });
        }
        let refresh = parse_duration(&self.refresh_interval)
            .map_err(|e| DashboardError::config("refresh_interval", e))?;
        if refresh < Duration::from_secs(1) {
            return Err(DashboardError::config(
                "refresh_interval",
                "must be at least 1s",
            ));
        }
        if self.max_days == 0 {
            return Err(DashboardError::config("max_days", "must be at least 1"));
        }
        let billing_view = match self.aggregate_schema.as_str() {
            "aggregate" => "public".to_string(),
            other => other.to_string(),
        } + ".billing_monthly_impressions";
        Ok(DashboardConfig {
            addr,
            tokens,
            aggregate_schema: self.aggregate_schema.clone(),
            analytics_schema: self.analytics_schema.clone(),
            billing_view,
            windows,
            refresh,
            max_days: self.max_days,
        })
    }
}

/// Checks that every offered window is one the topology's aggregate
/// computes (`aggregate_windows`, its `settings.windows[].size`), else
/// names the first that is not.
pub fn check_windows(
    config: &DashboardConfig,
    aggregate_windows: &[String],
) -> Result<(), DashboardError> {
    let computed: Vec<Duration> = aggregate_windows
        .iter()
        .filter_map(|s| parse_duration(s).ok())
        .collect();
    for (i, w) in config.windows.iter().enumerate() {
        if !computed.contains(&w.size) {
            return Err(DashboardError::config(
                &format!("windows[{i}]"),
                format!(
                    "{:?}: the aggregate computes no such window (its windows: {}); \
                     offer only those",
                    w.name,
                    aggregate_windows.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushflow_runtime::bearer::hash_token;

    const YAML: &str = r#"
addr: 127.0.0.1:18082
tokens:
  - {name: local-dev, sha256: "54c56849899fb199843a2c67f48f03bef51bbd4cd7d7e93769d600ae53144c10"}
  - {name: shop, sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", stores: [s1]}
aggregate_schema: agg_replay
analytics_schema: analytics
windows: [1h, 1m]
refresh_interval: 2s
max_days: 90
"#;

    #[test]
    fn parses_and_validates() {
        let s: DashboardSettings = serde_yaml::from_str(YAML).unwrap();
        let c = s.validate(|_| None).unwrap();
        assert_eq!(c.addr, "127.0.0.1:18082");
        assert_eq!(c.tokens.len(), 2);
        assert_eq!(c.billing_view, "agg_replay.billing_monthly_impressions");
        assert_eq!(c.refresh, Duration::from_secs(2));
        assert_eq!(c.max_days, 90);
        assert_eq!(c.window(None).unwrap().name, "1h");
        assert_eq!(c.window(Some("1m")).unwrap().size, Duration::from_secs(60));
        assert_eq!(c.window(Some("60m")).unwrap().name, "1h");
        let e = c.window(Some("5m")).unwrap_err();
        assert!(e.contains("1h, 1m"), "{e}");
        assert_eq!(c.totals_window().name, "1h");
        assert_eq!(c.totals_window().interval(), "3600 seconds");
        let dev = c
            .tokens
            .authenticate(Some("Bearer pushflow-dev-token"))
            .unwrap();
        assert_eq!(dev.check_store("any-store"), Ok(()));
        let shop = c.tokens.authenticate(Some("Bearer test")).unwrap();
        assert!(shop.check_store("s2").is_err());
        let d = DashboardSettings {
            tokens: s.tokens.clone(),
            ..Default::default()
        }
        .validate(|_| None)
        .unwrap();
        assert_eq!(d.billing_view, "public.billing_monthly_impressions");
        assert_eq!(d.addr, "127.0.0.1:8082");
    }

    #[test]
    fn env_overrides_addr_and_tokens() {
        let s = DashboardSettings::default();
        let c = s
            .validate(|k| match k {
                "PUSHFLOW_DASHBOARD_ADDR" => Some("127.0.0.1:9999".into()),
                "PUSHFLOW_DASHBOARD_TOKENS" => {
                    Some("dev:pushflow-dev-token; shop:shop-token-1:s1|s2".into())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(c.addr, "127.0.0.1:9999");
        assert_eq!(c.tokens.len(), 2);
        let e = s
            .validate(|k| (k == "PUSHFLOW_DASHBOARD_ADDR").then(|| "localhost".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PUSHFLOW_DASHBOARD_ADDR"), "{e}");
        let e = s
            .validate(|k| (k == "PUSHFLOW_DASHBOARD_TOKENS").then(|| "x:short".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PUSHFLOW_DASHBOARD_TOKENS"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let token = format!("{{name: a, sha256: \"{}\"}}", hash_token("secret-token"));
        for (yaml, field) in [
            ("addr: nowhere", "`addr`"),
            ("windows: []", "`windows`"),
            ("windows: [1h, soon]", "`windows[1]`"),
            ("windows: [1h, 60m]", "`windows[1]`"),
            ("windows: [1500ms]", "`windows[0]`"),
            ("refresh_interval: 10ms", "`refresh_interval`"),
            ("aggregate_schema: \"a; drop\"", "`aggregate_schema`"),
            ("analytics_schema: Analytics", "`analytics_schema`"),
            ("max_days: 0", "`max_days`"),
        ] {
            let s: DashboardSettings =
                serde_yaml::from_str(&format!("tokens: [{token}]\n{yaml}")).unwrap();
            let e = s.validate(|_| None).unwrap_err().to_string();
            assert!(e.contains(field), "{yaml}: {e}");
        }
        let e = DashboardSettings::default()
            .validate(|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`tokens`"), "{e}");
        let s: DashboardSettings =
            serde_yaml::from_str("tokens: [{name: a, sha256: \"00\"}]").unwrap();
        let e = s.validate(|_| None).unwrap_err().to_string();
        assert!(e.contains("tokens[0].sha256"), "{e}");
        let s: DashboardSettings = serde_yaml::from_str(&format!(
            "tokens: [{{name: a, sha256: \"{}\", stores: [\"\"]}}]",
            "0".repeat(64)
        ))
        .unwrap();
        let e = s.validate(|_| None).unwrap_err().to_string();
        assert!(e.contains("tokens[0].stores"), "{e}");
        let e = serde_yaml::from_str::<DashboardSettings>("adr: x").unwrap_err();
        assert!(e.to_string().contains("adr"), "{e}");
        let e = serde_yaml::from_str::<DashboardSettings>(
            "tokens: [{name: a, sha256: \"00\", topics: [\"*\"]}]",
        )
        .unwrap_err();
        assert!(e.to_string().contains("topics"), "{e}");
    }

    #[test]
    fn offered_windows_must_be_computed_by_the_aggregate() {
        let s: DashboardSettings = serde_yaml::from_str(YAML).unwrap();
        let c = s.validate(|_| None).unwrap();
        assert!(check_windows(&c, &["1m".into(), "60m".into()]).is_ok());
        let e = check_windows(&c, &["1m".into(), "1d".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`windows[0]`") && e.contains("1m, 1d"), "{e}");
    }
}

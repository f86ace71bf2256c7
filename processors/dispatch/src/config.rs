//! `settings:` of a `dispatch` component in `topology.yaml`.

use pushflow_runtime::component::ConfigError;
use pushflow_runtime::topology::{parse_duration, Pings};
use serde::Deserialize;
use std::time::Duration;

/// What `topology.yaml` says about dispatch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchSettings {
    /// VAPID `sub` claim: how the push service reaches the operator
    /// (`mailto:…` or `https://…`).
    pub vapid_subject: String,
    /// PEM file with the VAPID private key; `PUSHFLOW_VAPID_PRIVATE_KEY`
    /// (base64url raw P-256 scalar) or `PUSHFLOW_VAPID_PRIVATE_KEY_FILE`
    /// (a file holding that scalar) takes precedence.
    #[serde(default)]
    pub vapid_private_key_file: Option<String>,
    /// Lifetime of a VAPID JWT (reused per push-service origin), ≤ 24h.
    #[serde(default = "default_jwt_ttl")]
    pub vapid_jwt_ttl: String,
    /// Subscribers per record of the batches topic.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Requests in flight per push-service origin (per instance).
    #[serde(default = "default_concurrency")]
    pub concurrency_per_origin: usize,
    /// Timeout of every push request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
    /// Attempts per notification (429, 5xx, timeouts) before it fails as
    /// `retries_exhausted`.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    #[serde(default = "default_retry_base")]
    pub retry_base: String,
    /// Longest retry delay (and longest honoured `Retry-After`).
    #[serde(default = "default_retry_max")]
    pub retry_max: String,
    /// Superseded by `pings.token_ttl` of the topology (which the
    /// aggregate reads too, to know when a notification's pings can no
    /// longer come): still accepted only if it equals `pings.token_ttl`.
    #[serde(default)]
    pub ping_token_ttl: Option<String>,
    /// Batch records processed at once by one instance.
    #[serde(default = "default_parallel_batches")]
    pub parallel_batches: usize,
    /// Batch records per Kafka transaction (`parallel_batches` if that is
    /// more): each commit ends with a pause while the slowest batch
    /// finishes and the commit round-trips, so more records per
    /// transaction keep the sender busier. Unlike `parallel_batches` it
    /// does not widen what a crash can send twice (a push is recorded in
    /// Postgres within 50 ms of its answer, and skipped on the retry),
    /// only how much is re-read after one.
    #[serde(default = "default_batches_per_transaction")]
    pub batches_per_transaction: usize,
}

fn default_jwt_ttl() -> String {
    "12h".into()
}
fn default_batch_size() -> usize {
    500
}
fn default_concurrency() -> usize {
    64
}
fn default_request_timeout() -> String {
    "10s".into()
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_base() -> String {
    "500ms".into()
}
fn default_retry_max() -> String {
    "60s".into()
}
fn default_parallel_batches() -> usize {
    8
}
fn default_batches_per_transaction() -> usize {
    16
}

/// Settings with durations parsed and ranges checked.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The settings as written.
    pub raw: DispatchSettings,
    /// `vapid_jwt_ttl`.
    pub vapid_jwt_ttl: Duration,
    /// `request_timeout`.
    pub request_timeout: Duration,
    /// `retry_base`.
    pub retry_base: Duration,
    /// `retry_max`.
    pub retry_max: Duration,
    /// How long the ping token in each payload stays valid: the
    /// topology's `pings.token_ttl`.
    pub ping_token_ttl: Duration,
}

impl Checked {
    /// Batch records the batch loop takes per transaction.
    pub fn records_per_transaction(&self) -> usize {
        self.raw
            .batches_per_transaction
            .max(self.raw.parallel_batches)
    }
}

/// No subject (which [`DispatchSettings::check`] refuses) and the
/// defaults: what an entry without `settings:` gets.
impl Default for DispatchSettings {
    fn default() -> Self {
        DispatchSettings::with_subject("")
    }
}

impl DispatchSettings {
    /// Settings for tests and tools: defaults with this subject.
    pub fn with_subject(subject: &str) -> DispatchSettings {
        serde_yaml::from_str(&format!("vapid_subject: {subject:?}")).expect("defaults parse")
    }

    /// [`DispatchSettings::check_with`] the default `pings:` (tests and
    /// tools without a topology).
    pub fn check(self) -> Result<Checked, ConfigError> {
        self.check_with(&Pings::default())
    }

    /// Parses durations and checks ranges against the topology's
    /// `pings:`; the error names the field.
    pub fn check_with(self, pings: &Pings) -> Result<Checked, ConfigError> {
        let f = |field: &str, m: String| ConfigError::new(format!("settings.{field}"), m);
        if self.vapid_subject.is_empty() {
            return Err(f(
                "vapid_subject",
                "dispatch needs at least `vapid_subject: mailto:…` (how push services reach the operator, RFC 8292)".into(),
            ));
        }
        let d = |field: &str, v: &str| parse_duration(v).map_err(|m| f(field, m));
        if !(self.vapid_subject.starts_with("mailto:")
            || self.vapid_subject.starts_with("https://"))
        {
            return Err(f(
                "vapid_subject",
                format!(
                    "{:?} must start with mailto: or https:// (RFC 8292)",
                    self.vapid_subject
                ),
            ));
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(f("batch_size", "must be 1..=10000".into()));
        }
        if self.concurrency_per_origin == 0 {
            return Err(f("concurrency_per_origin", "must be at least 1".into()));
        }
        if self.parallel_batches == 0 {
            return Err(f("parallel_batches", "must be at least 1".into()));
        }
        if self.batches_per_transaction == 0 || self.batches_per_transaction > 1000 {
            return Err(f("batches_per_transaction", "must be 1..=1000".into()));
        }
        if self.max_attempts == 0 {
            return Err(f("max_attempts", "must be at least 1".into()));
        }
        let vapid_jwt_ttl = d("vapid_jwt_ttl", &self.vapid_jwt_ttl)?;
        if vapid_jwt_ttl > Duration::from_secs(24 * 3600)
            || vapid_jwt_ttl < Duration::from_secs(2 * 3600)
        {
            return Err(f(
                "vapid_jwt_ttl",
                "must be between 2h and 24h (RFC 8292 allows at most 24h)".into(),
            ));
        }
        if let Some(ttl) = &self.ping_token_ttl {
            if d("ping_token_ttl", ttl)? != pings.token_ttl {
                return Err(f(
                    "ping_token_ttl",
                    format!(
                        "{ttl:?} differs from `pings.token_ttl` ({:?}): set `pings.token_ttl` at the top of topology.yaml instead and remove this setting (the aggregate reads the same value to know how long a notification's pings can come)",
                        pings.token_ttl
                    ),
                ));
            }
        }
        Ok(Checked {
            request_timeout: d("request_timeout", &self.request_timeout)?,
            retry_base: d("retry_base", &self.retry_base)?,
            retry_max: d("retry_max", &self.retry_max)?,
            ping_token_ttl: pings.token_ttl,
            vapid_jwt_ttl,
            raw: self,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings() {
        let s: DispatchSettings = serde_yaml::from_str(
            "vapid_subject: mailto:ops@example.com\nbatch_size: 250\nrequest_timeout: 3s\nmax_attempts: 3\n",
        )
        .unwrap();
        assert_eq!(s.batch_size, 250);
        assert_eq!(s.concurrency_per_origin, 64);
        let c = s.check().unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.ping_token_ttl, Duration::from_secs(7 * 86400));
        assert!(serde_yaml::from_str::<DispatchSettings>(
            "vapid_subject: mailto:a\nbatchsize: 1\n"
        )
        .is_err());
        let e = DispatchSettings::with_subject("ops@example.com")
            .check()
            .unwrap_err();
        assert_eq!(e.field, "settings.vapid_subject");
        assert_eq!(
            DispatchSettings::default().check().unwrap_err().field,
            "settings.vapid_subject"
        );
        // The old `ping_token_ttl` is accepted only if it equals
        // `pings.token_ttl`.
        let mut s = DispatchSettings::with_subject("mailto:a@b");
        s.ping_token_ttl = Some("7d".into());
        assert!(s.clone().check().is_ok());
        let short = Pings {
            token_ttl: Duration::from_secs(3600),
            ..Pings::default()
        };
        assert_eq!(
            DispatchSettings::with_subject("mailto:a@b")
                .check_with(&short)
                .unwrap()
                .ping_token_ttl,
            Duration::from_secs(3600)
        );
        assert_eq!(
            s.clone().check_with(&short).unwrap_err().field,
            "settings.ping_token_ttl"
        );
        s.ping_token_ttl = Some("1d".into());
        let e = s.check().unwrap_err();
        assert_eq!(e.field, "settings.ping_token_ttl");
        assert!(e.message.contains("set `pings.token_ttl`"), "{e}");
        let mut s = DispatchSettings::with_subject("mailto:a@b");
        s.vapid_jwt_ttl = "48h".into();
        assert_eq!(
            s.check().unwrap_err().field,
            "settings.vapid_subject".replace("subject", "jwt_ttl")
        );
        // A transaction holds at least the batches in flight.
        let mut s = DispatchSettings::with_subject("mailto:a@b");
        assert_eq!(s.clone().check().unwrap().records_per_transaction(), 16);
        s.parallel_batches = 32;
        assert_eq!(s.clone().check().unwrap().records_per_transaction(), 32);
        s.batches_per_transaction = 0;
        assert_eq!(
            s.clone().check().unwrap_err().field,
            "settings.batches_per_transaction"
        );
        s.batches_per_transaction = 1;
        s.parallel_batches = 0;
        assert_eq!(s.check().unwrap_err().field, "settings.parallel_batches");
    }
}

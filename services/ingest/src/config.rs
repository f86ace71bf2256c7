//! What `topology.yaml` says about an `ingest` component, checked without
//! network I/O into an [`IngestConfig`] (the one file read is the VAPID
//! key file, [`crate::vapid`]).
//!
//! ```yaml
//! - name: ingest
//!   type: ingest
//!   outputs: [campaign.created, campaign.launched, subscription.created, ...]
//!   settings:
//!     max_body: 1MiB
//!     tokens:
//!       - {name: billing-svc, sha256: "<pushflow ingest hash-token TOKEN>", topics: [campaign.created]}
//!       - {name: shop-42-admin, sha256: "<…>", topics: [campaign.created, campaign.launched], stores: [shop-42]}
//!     allow_anonymous: false
//!     cors_origins: ["https://admin.example.com"]
//!     rate_limit: {per_second: 50, burst: 100}
//!     # Load balancers / reverse proxies (addresses or CIDR networks) whose
//!     # X-Forwarded-For names the real client for the rate limit; a
//!     # browser's own X-Forwarded-For is ignored. Default: none.
//!     trusted_proxies: ["10.0.0.0/8", "127.0.0.1", "::1"]
//!     produce_timeout: 5s
//! ```

use axum::http::HeaderValue;
use pushflow_runtime::bearer::check_stores;
use pushflow_runtime::topology::{parse_duration, parse_size};
use pushflow_schemas::Topic;
use serde::Deserialize;
use std::time::Duration;

use crate::auth::{TokenEntry, Tokens};
use crate::client_ip::TrustedProxies;
use crate::IngestError;

/// `settings:` of an `ingest` component.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Largest request body accepted (413 beyond), e.g. `1MiB`.
    #[serde(default = "default_max_body")]
    pub max_body: String,
    /// Bearer tokens allowed on `/v1/events`, stored as SHA-256 hashes.
    /// `PUSHFLOW_INGEST_TOKENS` replaces them when set.
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
    /// Serve `/v1/events` without a token when no token is configured.
    /// Without it, ingest refuses to start with no tokens.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Browser origins allowed to call `/v1/events` (`*` for any). Pings
    /// and subscriptions always allow any origin.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Per-client-IP limit on the public endpoints (pings, subscriptions).
    #[serde(default)]
    pub rate_limit: RateLimitSettings,
    /// Proxies in front of ingest (IP addresses or CIDR networks, e.g.
    /// `10.0.0.0/8`, `::1`): when the TCP peer is one, the client IP is
    /// taken from `X-Forwarded-For` (see [`crate::client_ip`]).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// How long a request waits for the broker's ack before a 503, e.g. `5s`.
    #[serde(default = "default_produce_timeout")]
    pub produce_timeout: String,
    /// The VAPID public key served at `/v1/vapid-public-key`
    /// (`PUSHFLOW_VAPID_PUBLIC_KEY` overrides it). Unneeded when ingest
    /// sees dispatch's private key, which it is then derived from
    /// ([`crate::vapid::public_key`]).
    #[serde(default)]
    pub vapid_public_key: Option<String>,
}

/// One bearer token as written in `tokens:`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Who holds it (logged, never the token).
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`pushflow ingest hash-token`).
    pub sha256: String,
    /// Topics it may write, or `["*"]` for all (never the billable ones,
    /// which enter only as signed pings).
    pub topics: Vec<String>,
    /// Stores whose records it may write (`store_id`), or `["*"]`;
    /// omitted: every store.
    #[serde(default)]
    pub stores: Vec<String>,
}

/// `rate_limit:`; `per_second: 0` turns the limit off.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Sustained requests per second per client IP.
    #[serde(default = "default_per_second")]
    pub per_second: f64,
    /// Requests a client may send at once before being limited.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_max_body() -> String {
    "1MiB".into()
}
fn default_produce_timeout() -> String {
    "5s".into()
}
fn default_per_second() -> f64 {
    50.0
}
fn default_burst() -> u32 {
    100
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            per_second: default_per_second(),
            burst: default_burst(),
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_body: default_max_body(),
            tokens: Vec::new(),
            allow_anonymous: false,
            cors_origins: Vec::new(),
            rate_limit: RateLimitSettings::default(),
            trusted_proxies: Vec::new(),
            produce_timeout: default_produce_timeout(),
            vapid_public_key: None,
        }
    }
}

/// Checked settings, ready to serve with.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest body, bytes.
    pub max_body: usize,
    /// Tokens for `/v1/events` (empty only with `allow_anonymous`).
    pub tokens: Tokens,
    /// No tokens and explicitly allowed: `/v1/events` is open.
    pub allow_anonymous: bool,
    /// CORS origins for `/v1/events` (`None` entry list = `*`).
    pub cors_origins: CorsOrigins,
    /// `None` when the rate limit is off.
    pub rate_limit: Option<RateLimitSettings>,
    /// Whose `X-Forwarded-For` names the client (empty: the TCP peer is).
    pub trusted_proxies: TrustedProxies,
    /// Bound on waiting for the broker.
    pub produce_timeout: Duration,
    /// The VAPID public key, if configured.
    pub vapid_public_key: Option<String>,
}

/// Which browser origins may call `/v1/events`.
#[derive(Debug, Clone, PartialEq)]
pub enum CorsOrigins {
    /// No CORS headers (server-to-server only).
    None,
    /// Any origin.
    Any,
    /// These origins.
    List(Vec<HeaderValue>),
}

impl IngestSettings {
    /// Parses a component's `settings:` (null means defaults).
    pub fn from_yaml(v: &serde_yaml::Value) -> Result<IngestSettings, IngestError> {
        if v.is_null() {
            return Ok(IngestSettings::default());
        }
        serde_yaml::from_value(v.clone())
            .map_err(|e| IngestError::config("settings", e.to_string()))
    }

    /// Checks the settings, applying `PUSHFLOW_INGEST_TOKENS` and the
    /// VAPID variables ([`crate::vapid::public_key`]) from `env`.
    pub fn validate(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<IngestConfig, IngestError> {
        let max_body =
            parse_size(&self.max_body).map_err(|e| IngestError::config("max_body", e))? as usize;
        let produce_timeout = parse_duration(&self.produce_timeout)
            .map_err(|e| IngestError::config("produce_timeout", e))?;
        if produce_timeout.is_zero() {
            return Err(IngestError::config(
                "produce_timeout",
                "must be more than 0s",
            ));
        }
        let tokens = match env("PUSHFLOW_INGEST_TOKENS").filter(|s| !s.trim().is_empty()) {
            Some(spec) => crate::auth::parse_env(&spec)
                .map_err(|e| IngestError::config("PUSHFLOW_INGEST_TOKENS", e))?,
            None => {
                let mut entries = Vec::new();
                for (i, t) in self.tokens.iter().enumerate() {
                    check_topics(&t.topics)
                        .map_err(|e| IngestError::config(&format!("tokens[{i}].topics"), e))?;
                    check_stores(&t.stores)
                        .map_err(|e| IngestError::config(&format!("tokens[{i}].stores"), e))?;
                    let e = TokenEntry::from_hash(&t.name, &t.sha256, &t.topics, &t.stores)
                        .map_err(|e| IngestError::config(&format!("tokens[{i}].sha256"), e))?;
                    entries.push(e);
                }
                Tokens::new(entries)
            }
        };
        if tokens.is_empty() && !self.allow_anonymous {
            return Err(IngestError::config(
                "tokens",
                "no tokens configured: /v1/events would be open to anyone; add tokens \
                 (sha256 from `pushflow ingest hash-token <TOKEN>`) or set PUSHFLOW_INGEST_TOKENS, \
                 or set `allow_anonymous: true` explicitly (local use only)",
            ));
        }
        let cors_origins = if self.cors_origins.is_empty() {
            CorsOrigins::None
        } else if self.cors_origins.iter().any(|o| o == "*") {
            CorsOrigins::Any
        } else {
            let mut list = Vec::new();
            for o in &self.cors_origins {
                if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                    return Err(IngestError::config(
                        "cors_origins",
                        format!("{o:?} is not an origin like https://shop.example.com (scheme and host, no path)"),
                    ));
                }
                list.push(
                    HeaderValue::from_str(o)
                        .map_err(|e| IngestError::config("cors_origins", e.to_string()))?,
                );
            }
            CorsOrigins::List(list)
        };
        let rl = self.rate_limit;
        if !(rl.per_second.is_finite() && rl.per_second >= 0.0) {
            return Err(IngestError::config(
                "rate_limit.per_second",
                "must be 0 (off) or a positive number",
            ));
        }
        if rl.per_second > 0.0 && rl.burst == 0 {
            return Err(IngestError::config(
                "rate_limit.burst",
                "must be at least 1",
            ));
        }
        let mut proxies = Vec::with_capacity(self.trusted_proxies.len());
        for (i, p) in self.trusted_proxies.iter().enumerate() {
            proxies.push(
                TrustedProxies::parse_entry(p)
                    .map_err(|e| IngestError::config(&format!("trusted_proxies[{i}]"), e))?,
            );
        }
        let vapid_public_key = crate::vapid::public_key(&env, self.vapid_public_key.as_deref())?;
        Ok(IngestConfig {
            max_body,
            tokens,
            allow_anonymous: self.allow_anonymous,
            cors_origins,
            rate_limit: (rl.per_second > 0.0).then_some(rl),
            trusted_proxies: TrustedProxies::new(proxies),
            produce_timeout,
            vapid_public_key,
        })
    }
}

/// Token scopes name catalogue topics or `*`.
pub(crate) fn check_topics(topics: &[String]) -> Result<(), String> {
    if topics.is_empty() {
        return Err("empty: list the topics this token may write, or \"*\"".into());
    }
    for t in topics {
        match Topic::by_name(t) {
            None if t != "*" => return Err(format!("{t:?} is not a topic of the catalogue")),
            Some(topic) if topic.is_billable() => {
                return Err(format!(
                    "{t:?} is billable and enters only as signed pings (POST /v1/pings): \
                     no token may write it; remove it"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
max_body: 64KiB
tokens:
  - {name: billing-svc, sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", topics: [campaign.created, campaign.launched]}
cors_origins: ["https://admin.example.com"]
rate_limit: {per_second: 10, burst: 20}
trusted_proxies: ["127.0.0.1/32", "10.0.0.0/8", "::1"]
produce_timeout: 2s
"#;

    #[test]
    fn parses_and_validates() {
        let s: IngestSettings = serde_yaml::from_str(YAML).unwrap();
        let c = s.validate(|_| None).unwrap();
        assert_eq!(c.max_body, 64 * 1024);
        assert_eq!(c.produce_timeout, Duration::from_secs(2));
        assert_eq!(c.rate_limit.unwrap().burst, 20);
        assert_eq!(c.tokens.len(), 1);
        assert!(matches!(c.cors_origins, CorsOrigins::List(ref l) if l.len() == 1));
        assert_eq!(c.trusted_proxies.networks().len(), 3);
        assert!(c.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(c.trusted_proxies.contains("::1".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn trusted_proxies_default_to_none_and_bad_entries_name_their_index() {
        let open = IngestSettings {
            allow_anonymous: true,
            ..Default::default()
        };
        assert!(open.validate(|_| None).unwrap().trusted_proxies.is_empty());
        for (yaml, field, hint) in [
            (
                "trusted_proxies: [\"10.0.0.0/8\", lb.internal]",
                "trusted_proxies[1]",
                "\"10.0.0.0/8\"",
            ),
            (
                "trusted_proxies: [\"10.0.0.0/33\"]",
                "trusted_proxies[0]",
                "CIDR network",
            ),
            (
                "trusted_proxies: [\"::1\", \"10.1.2.3/8\"]",
                "trusted_proxies[1]",
                "write the network \"10.0.0.0/8\"",
            ),
        ] {
            let s: IngestSettings =
                serde_yaml::from_str(&format!("allow_anonymous: true\n{yaml}")).unwrap();
            let e = s.validate(|_| None).unwrap_err().to_string();
            assert!(e.contains(&format!("`{field}`")), "{yaml}: {e}");
            assert!(e.contains(hint), "{yaml}: {e}");
        }
    }

    #[test]
    fn refuses_unknown_fields_and_open_events() {
        let e = serde_yaml::from_str::<IngestSettings>("max_bodyy: 1MiB").unwrap_err();
        assert!(e.to_string().contains("max_bodyy"), "{e}");
        let e = IngestSettings::default().validate(|_| None).unwrap_err();
        assert!(e.to_string().contains("allow_anonymous"), "{e}");
        let open = IngestSettings {
            allow_anonymous: true,
            ..Default::default()
        };
        assert!(open.validate(|_| None).unwrap().tokens.is_empty());
    }

    #[test]
    fn env_tokens_replace_settings_and_bad_values_name_the_field() {
        let s = IngestSettings::default();
        let c = s
            .validate(|k| {
                (k == "PUSHFLOW_INGEST_TOKENS").then(|| {
                    "dev:secret-1:*;svc:secret-2:campaign.created|campaign.launched".into()
                })
            })
            .unwrap();
        assert_eq!(c.tokens.len(), 2);
        let bad = IngestSettings {
            allow_anonymous: true,
            produce_timeout: "soon".into(),
            ..Default::default()
        };
        assert!(bad
            .validate(|_| None)
            .unwrap_err()
            .to_string()
            .contains("produce_timeout"));
        let bad_topic: IngestSettings =
            serde_yaml::from_str("tokens: [{name: a, sha256: \"00\", topics: [nope]}]").unwrap();
        assert!(bad_topic
            .validate(|_| None)
            .unwrap_err()
            .to_string()
            .contains("tokens[0].topics"));
        let billable: IngestSettings = serde_yaml::from_str(
            "tokens: [{name: a, sha256: \"00\", topics: [notification.delivered]}]",
        )
        .unwrap();
        let e = billable.validate(|_| None).unwrap_err().to_string();
        assert!(
            e.contains("tokens[0].topics") && e.contains("/v1/pings"),
            "{e}"
        );
        let scoped: IngestSettings = serde_yaml::from_str(&format!(
            "tokens: [{{name: a, sha256: \"{}\", topics: [\"*\"], stores: [s1, \"\"]}}]",
            "0".repeat(64)
        ))
        .unwrap();
        let e = scoped.validate(|_| None).unwrap_err().to_string();
        assert!(e.contains("tokens[0].stores"), "{e}");
    }
}

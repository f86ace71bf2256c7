//! Dependency probes: `/healthz` tells the truth about what a component
//! needs.
//!
//! A component names its dependencies ([`Dependency`]) once it runs; each
//! is then probed every [`INTERVAL`] (a probe that takes longer than
//! [`TIMEOUT`] fails), and the result is the check `<component>.<dependency>`
//! of the process's [`Health`]. So `/healthz` answers 503 naming the
//! unreachable dependency within about `INTERVAL + TIMEOUT` (3 s) of an
//! outage, and 200 again at the first probe after recovery. Probes are
//! cheap and read nothing a component owns: a metadata request to the
//! broker, `SELECT 1` on one kept connection to Postgres, `GET /subjects`
//! on the registry, a listing of the lake's root for an object store.

use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::http::Health;

/// How often each dependency is probed.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// How long one probe may take before it counts as failed.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// One thing a component cannot work without.
#[async_trait]
pub trait Probe: Send {
    /// The dependency's name in the check (`broker`, `postgres`, …).
    fn name(&self) -> &str;
    /// Whether it answers now; the error says what failed, naming where.
    async fn check(&mut self) -> Result<(), String>;
}

/// What a component depends on, probed from the topology's services.
pub enum Dependency {
    /// The Kafka brokers (`services.brokers`, with the `kafka:` pass-through).
    Broker,
    /// Postgres (`services.database_url`).
    Postgres,
    /// The schema registry (`services.registry_url`).
    Registry,
    /// Anything else, probed by the component's own [`Probe`].
    Other(Box<dyn Probe>),
}

impl Dependency {
    /// What a processor from Kafka into Postgres needs: the broker,
    /// Postgres and the registry.
    pub fn processor() -> Vec<Dependency> {
        vec![
            Dependency::Broker,
            Dependency::Postgres,
            Dependency::Registry,
        ]
    }
}

/// Starts probing `deps` of `component` until `shutdown`, reporting to
/// `health` under `<component>.<dependency>`.
pub fn watch(
    health: &Health,
    component: &str,
    services: &crate::topology::Services,
    kafka: &BTreeMap<String, String>,
    deps: Vec<Dependency>,
    shutdown: CancellationToken,
) {
    for dep in deps {
        let probe: Box<dyn Probe> = match dep {
            Dependency::Broker => match BrokerProbe::new(&services.brokers, kafka) {
                Ok(p) => Box::new(p),
                Err(e) => {
                    health.failing(&format!("{component}.broker"), e);
                    continue;
                }
            },
            Dependency::Postgres => Box::new(PostgresProbe::new(&services.database_url)),
            Dependency::Registry => Box::new(RegistryProbe::new(&services.registry_url)),
            Dependency::Other(p) => p,
        };
        spawn(health.clone(), component, probe, shutdown.clone());
    }
}

fn spawn(health: Health, component: &str, mut probe: Box<dyn Probe>, shutdown: CancellationToken) {
    let check = format!("{component}.{}", probe.name());
    let component = component.to_string();
    tokio::spawn(async move {
        let mut was_ok = None;
        loop {
            let result = match tokio::time::timeout(TIMEOUT, probe.check()).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "{} did not answer within {} s",
                    probe.name(),
                    TIMEOUT.as_secs()
                )),
            };
            let ok = result.is_ok();
            match result {
                Ok(()) => health.ok(&check),
                Err(e) => {
                    if was_ok != Some(false) {
                        tracing::warn!(component = %component, dependency = probe.name(), error = %e, "dependency unreachable");
                    }
                    health.failing(&check, e);
                }
            }
            if ok && was_ok == Some(false) {
                tracing::info!(component = %component, dependency = probe.name(), "dependency reachable again");
            }
            was_ok = Some(ok);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(INTERVAL) => {}
            }
        }
    });
}

/// A metadata request to the brokers, on one client kept for the probe.
struct BrokerProbe {
    brokers: String,
    client: Arc<BaseConsumer<Quiet>>,
}

/// The probe's client reports through `/healthz` and one WARN line per
/// outage; librdkafka's own log lines and errors would only repeat that.
struct Quiet;

impl ClientContext for Quiet {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _log_message: &str) {}
    fn error(&self, _error: KafkaError, _reason: &str) {}
}

impl ConsumerContext for Quiet {}

impl BrokerProbe {
    fn new(brokers: &str, kafka: &BTreeMap<String, String>) -> Result<BrokerProbe, String> {
        let mut config = ClientConfig::new();
        for (k, v) in kafka {
            config.set(k, v);
        }
        config
            .set("bootstrap.servers", brokers)
            // Reconnect fast after an outage, so recovery shows at once.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "500")
            .set("log_level", "3");
        let client: BaseConsumer<Quiet> = config
            .create_with_context(Quiet)
            .map_err(|e| format!("broker client for {brokers}: {e}"))?;
        Ok(BrokerProbe {
            brokers: brokers.to_string(),
            client: Arc::new(client),
        })
    }
}

#[async_trait]
impl Probe for BrokerProbe {
    fn name(&self) -> &str {
        "broker"
    }

    async fn check(&mut self) -> Result<(), String> {
        let client = self.client.clone();
        let wait = TIMEOUT - Duration::from_millis(200);
        let answer = tokio::task::spawn_blocking(move || {
            client.fetch_metadata(None, wait).map(|m| m.brokers().len())
        })
        .await
        .map_err(|e| format!("broker probe: {e}"))?;
        match answer {
            Ok(n) if n > 0 => Ok(()),
            Ok(_) => Err(format!("broker {} lists no brokers", self.brokers)),
            Err(e) => Err(format!("broker {} unreachable: {e}", self.brokers)),
        }
    }
}

/// `SELECT 1` on one connection kept for the probe (made again after it
/// breaks).
struct PostgresProbe {
    url: String,
    client: Option<tokio_postgres::Client>,
}

impl PostgresProbe {
    fn new(url: &str) -> PostgresProbe {
        PostgresProbe {
            url: url.to_string(),
            client: None,
        }
    }

    /// The URL without its password, for messages.
    fn shown(&self) -> String {
        redact(&self.url)
    }
}

#[async_trait]
impl Probe for PostgresProbe {
    fn name(&self) -> &str {
        "postgres"
    }

    async fn check(&mut self) -> Result<(), String> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("postgres {} unreachable: {e}", self.shown()))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.client = Some(client);
        }
        let client = self.client.as_ref().expect("connected above");
        match client.simple_query("SELECT 1").await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.client = None;
                Err(format!("postgres {} unreachable: {e}", self.shown()))
            }
        }
    }
}

/// `scheme://user:password@host…` → `scheme://user:***@host…`.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    match (rest.find('@'), rest.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!("{}{}:***{}", &url[..start], &rest[..colon], &rest[at..])
        }
        _ => url.to_string(),
    }
}

/// `GET <registry>/subjects`: any answer but a 5xx means it serves.
struct RegistryProbe {
    url: String,
    http: reqwest::Client,
}

impl RegistryProbe {
    fn new(url: &str) -> RegistryProbe {
        RegistryProbe {
            url: url.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }
}

#[async_trait]
impl Probe for RegistryProbe {
    fn name(&self) -> &str {
        "registry"
    }

    async fn check(&mut self) -> Result<(), String> {
        let r = self
            .http
            .get(format!("{}/subjects", self.url))
            .send()
            .await
            .map_err(|e| format!("registry {} unreachable: {e}", self.url))?;
        match r.status() {
            s if s.is_server_error() => Err(format!("registry {} answers {s}", self.url)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Flip(Arc<std::sync::atomic::AtomicBool>);

    #[async_trait]
    impl Probe for Flip {
        fn name(&self) -> &str {
            "thing"
        }
        async fn check(&mut self) -> Result<(), String> {
            match self.0.load(std::sync::atomic::Ordering::SeqCst) {
                true => Ok(()),
                false => Err("thing unreachable".into()),
            }
        }
    }

    #[test]
    fn messages_never_show_a_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/pushflow"),
            "postgres://app:***@db:5432/pushflow"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/pushflow"),
            "postgres://postgres@127.0.0.1:5432/pushflow"
        );
    }

    #[tokio::test]
    async fn a_failing_probe_fails_the_check_and_recovery_clears_it() {
        let health = Health::default();
        health.ok("c");
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stop = CancellationToken::new();
        let services = crate::topology::Services::default();
        watch(
            &health,
            "c",
            &services,
            &BTreeMap::new(),
            vec![Dependency::Other(Box::new(Flip(up.clone())))],
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(health.report().0);
        up.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(INTERVAL + Duration::from_millis(300)).await;
        let (ok, body) = health.report();
        assert!(!ok);
        assert_eq!(body["checks"]["c.thing"], "thing unreachable");
        up.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(INTERVAL + Duration::from_millis(300)).await;
        assert!(health.report().0);
        stop.cancel();
    }
}

//! `topology.yaml`: the services pushflow talks to, the topics it owns and
//! the components it runs.
//!
//! Loading is two steps, as every component's config is: [`Topology::load`]
//! parses with `deny_unknown_fields` and checks everything that needs no
//! network (names, references, durations, sizes, schema files), so that a
//! bad file fails before anything starts, naming the file, the entry and the
//! field. Environment variables (`PUSHFLOW_*`) then override `services`.

pub mod apply;
mod validate;

use serde::Deserialize;

use crate::component::ConfigError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use validate::{parse_duration, parse_size};

/// A topology file that failed to load or validate. Its `Display` names the
/// file, the entry and the field, and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {entry}: {message}")]
pub struct TopologyError {
    /// The topology file.
    pub file: String,
    /// The entry, e.g. `components[2] "aggregate"` or `topics[0] "campaign.created"`.
    pub entry: String,
    /// What is wrong and how to fix it, starting with the field.
    pub message: String,
}

impl TopologyError {
    /// An error about `field` of `entry`.
    pub fn field(file: &Path, entry: impl Into<String>, field: &str, msg: impl AsRef<str>) -> Self {
        TopologyError {
            file: file.display().to_string(),
            entry: entry.into(),
            message: format!("field `{field}`: {}", msg.as_ref()),
        }
    }
}

/// Where the outside services are, from `services:` then the environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Kafka bootstrap servers (`PUSHFLOW_BROKERS`).
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Postgres URL (`PUSHFLOW_DATABASE_URL`).
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Schema registry URL clients use (`PUSHFLOW_REGISTRY_URL`).
    #[serde(default = "default_registry_url")]
    pub registry_url: String,
    /// Where `pushflow registry` listens (`PUSHFLOW_REGISTRY_ADDR`).
    #[serde(default = "default_registry_addr")]
    pub registry_addr: String,
    /// Where `pushflow ingest` listens (`PUSHFLOW_INGEST_ADDR`).
    #[serde(default = "default_ingest_addr")]
    pub ingest_addr: String,
    /// Where `/healthz` and `/metrics` of the process are served (`PUSHFLOW_METRICS_ADDR`).
    #[serde(default = "default_metrics_addr")]
    pub metrics_addr: String,
    /// The audit lake (`PUSHFLOW_LAKE_URL`): `file://…` or `s3://bucket/prefix`.
    #[serde(default = "default_lake_url")]
    pub lake_url: String,
}

fn default_brokers() -> String {
    "127.0.0.1:9092".into()
}
fn default_database_url() -> String {
    "postgres://postgres@127.0.0.1:5432/pushflow".into()
}
fn default_registry_url() -> String {
    "http://127.0.0.1:8081".into()
}
fn default_registry_addr() -> String {
    "127.0.0.1:8081".into()
}
fn default_ingest_addr() -> String {
    "127.0.0.1:8080".into()
}
fn default_metrics_addr() -> String {
    "127.0.0.1:9464".into()
}
fn default_lake_url() -> String {
    "file://./data/lake".into()
}

impl Default for Services {
    fn default() -> Self {
        Services {
            brokers: default_brokers(),
            database_url: default_database_url(),
            registry_url: default_registry_url(),
            registry_addr: default_registry_addr(),
            ingest_addr: default_ingest_addr(),
            metrics_addr: default_metrics_addr(),
            lake_url: default_lake_url(),
        }
    }
}

/// The environment variables that override `services:`, with their field.
pub const ENV_OVERRIDES: [(&str, &str); 7] = [
    ("PUSHFLOW_BROKERS", "brokers"),
    ("PUSHFLOW_DATABASE_URL", "database_url"),
    ("PUSHFLOW_REGISTRY_URL", "registry_url"),
    ("PUSHFLOW_REGISTRY_ADDR", "registry_addr"),
    ("PUSHFLOW_INGEST_ADDR", "ingest_addr"),
    ("PUSHFLOW_METRICS_ADDR", "metrics_addr"),
    ("PUSHFLOW_LAKE_URL", "lake_url"),
];

impl Services {
    /// Applies `PUSHFLOW_*` variables from `lookup` (the process environment
    /// in production, a map in tests).
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        for (var, field) in ENV_OVERRIDES {
            if let Some(v) = lookup(var).filter(|v| !v.is_empty()) {
                *self.field_mut(field) = v;
            }
        }
    }

    fn field_mut(&mut self, field: &str) -> &mut String {
        match field {
            "brokers" => &mut self.brokers,
            "database_url" => &mut self.database_url,
            "registry_url" => &mut self.registry_url,
            "registry_addr" => &mut self.registry_addr,
            "ingest_addr" => &mut self.ingest_addr,
            "metrics_addr" => &mut self.metrics_addr,
            "lake_url" => &mut self.lake_url,
            _ => unreachable!("ENV_OVERRIDES names only Services fields"),
        }
    }
}

/// Kafka cleanup policy of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// Delete segments older than the retention.
    #[default]
    Delete,
    /// Keep the latest record per key.
    Compact,
}

impl CleanupPolicy {
    /// The value of Kafka's `cleanup.policy`.
    pub fn as_kafka(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
        }
    }
}

/// A topic as written in `topics:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor (1 locally, 3 in production).
    #[serde(default = "default_replication")]
    pub replication_factor: i16,
    /// Retention, e.g. `7d`, `12h`.
    #[serde(default = "default_retention")]
    pub retention: String,
    /// `delete` or `compact`.
    #[serde(default)]
    pub cleanup_policy: CleanupPolicy,
    /// Field of the value used as key.
    pub key: String,
    /// Schema file, relative to the topology file.
    pub schema: String,
    /// Largest record the broker accepts (`max.message.bytes`), e.g. `1MiB`.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: String,
}

fn default_max_message() -> String {
    "1MiB".into()
}

fn default_partitions() -> i32 {
    6
}
fn default_replication() -> i16 {
    1
}
fn default_retention() -> String {
    "7d".into()
}

/// A component as written in `components:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSpec {
    /// Unique name; also the default consumer group (`pushflow-<name>`).
    pub name: String,
    /// The component type, one of the binary's registry.
    #[serde(rename = "type")]
    pub kind: String,
    /// Topics it reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Topics it writes.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Consumer group; defaults to `pushflow-<name>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Type-specific settings, checked by the component's own `validate`.
    #[serde(default)]
    pub settings: serde_yaml::Value,
}

impl ComponentSpec {
    /// Parses `settings:` into a component's settings struct (which denies
    /// unknown fields); no `settings:` gives its defaults. The error names
    /// `settings`, serde's message the field inside.
    pub fn settings<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, ConfigError> {
        if self.settings.is_null() {
            return Ok(T::default());
        }
        serde_yaml::from_value(self.settings.clone())
            .map_err(|e| crate::component::ConfigError::new("settings", e.to_string()))
    }

    /// The consumer group this component uses.
    pub fn group_id(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("pushflow-{}", self.name))
    }

    /// Refuses the entry unless `inputs` lists each of `topics` (`who`
    /// names the component in the message).
    pub fn require_inputs(&self, who: &str, topics: &[impl AsRef<str>]) -> Result<(), ConfigError> {
        let listed = |t: &&_| self.inputs.iter().any(|l| l == AsRef::<str>::as_ref(*t));
        match topics.iter().find(|t| !listed(t)) {
            Some(t) => Err(ConfigError::new(
                "inputs",
                format!("{who} reads {:?}; add it to inputs", t.as_ref()),
            )),
            None => Ok(()),
        }
    }

    /// Refuses the entry unless `outputs` lists each of `topics`.
    pub fn require_outputs(
        &self,
        who: &str,
        topics: &[impl AsRef<str>],
    ) -> Result<(), ConfigError> {
        let listed = |t: &&_| self.outputs.iter().any(|l| l == AsRef::<str>::as_ref(*t));
        match topics.iter().find(|t| !listed(t)) {
            Some(t) => Err(ConfigError::new(
                "outputs",
                format!("{who} writes {:?}; add it to outputs", t.as_ref()),
            )),
            None => Ok(()),
        }
    }

    /// Refuses an entry with `outputs`: `who` writes only to `store`.
    pub fn require_no_outputs(&self, who: &str, store: &str) -> Result<(), ConfigError> {
        if self.outputs.is_empty() {
            return Ok(());
        }
        Err(ConfigError::new(
            "outputs",
            format!("{who} writes to {store} only; remove `outputs`"),
        ))
    }
}

/// `pings:` as written: how long the ping tokens dispatch mints stay
/// valid, and how far the clocks that judge them may disagree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingsSpec {
    /// Lifetime of a ping token (`exp = issued + token_ttl`), e.g. `7d`.
    #[serde(default = "default_token_ttl")]
    pub token_ttl: String,
    /// Clock skew allowed between dispatch (mints), ingest (refuses expired
    /// tokens) and the broker (stamps record times), e.g. `10m`.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: String,
}

fn default_token_ttl() -> String {
    "7d".into()
}
fn default_clock_skew() -> String {
    "10m".into()
}

impl Default for PingsSpec {
    fn default() -> Self {
        PingsSpec {
            token_ttl: default_token_ttl(),
            clock_skew: default_clock_skew(),
        }
    }
}

/// `pings:` checked: the one setting dispatch (which mints ping tokens)
/// and the aggregate (which forgets a notification's pings once no valid
/// token can bring another) both read, so they cannot disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pings {
    /// Lifetime of a ping token.
    pub token_ttl: Duration,
    /// Clock skew allowed between the machines that mint, check and stamp.
    pub clock_skew: Duration,
}

impl Default for Pings {
    /// `token_ttl: 7d`, `clock_skew: 10m`.
    fn default() -> Self {
        Pings {
            token_ttl: Duration::from_secs(7 * 86_400),
            clock_skew: Duration::from_secs(600),
        }
    }
}

impl Pings {
    /// How long after a notification's first ping (in Kafka record time) a
    /// repeat of it can still arrive: `token_ttl + clock_skew`. Ingest
    /// refuses expired tokens, so no ping of a notification is produced
    /// later than that.
    pub fn dedup_horizon(&self) -> Duration {
        self.token_ttl + self.clock_skew
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    #[serde(default)]
    services: Services,
    #[serde(default)]
    kafka: BTreeMap<String, String>,
    #[serde(default)]
    pings: PingsSpec,
    topics: Vec<TopicSpec>,
    #[serde(default)]
    components: Vec<ComponentSpec>,
}

/// A checked topic: durations parsed, schema file read.
#[derive(Debug, Clone)]
pub struct Topic {
    /// What the file said.
    pub spec: TopicSpec,
    /// `retention` parsed.
    pub retention: Duration,
    /// `max_message_bytes` parsed.
    pub max_message_bytes: u64,
    /// Where the schema file is.
    pub schema_path: PathBuf,
    /// The schema file's text.
    pub schema_text: String,
}

/// A loaded and checked topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The file it came from.
    pub path: PathBuf,
    /// Service addresses, after environment overrides.
    pub services: Services,
    /// librdkafka properties passed through to every client.
    pub kafka: BTreeMap<String, String>,
    /// `pings:` (token lifetime and clock skew; defaults when absent).
    pub pings: Pings,
    /// Topics, in file order.
    pub topics: Vec<Topic>,
    /// Components, in file order (their settings unchecked until the
    /// binary's registry validates them).
    pub components: Vec<ComponentSpec>,
}

impl Topology {
    /// Reads, parses and checks `path`; applies the process environment.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            file: path.display().to_string(),
            entry: "file".into(),
            message: format!("cannot read it: {e}"),
        })?;
        let mut t = Topology::parse(path, &text)?;
        t.services.apply_env(|k| std::env::var(k).ok());
        Ok(t)
    }

    /// Parses and checks `text` as if read from `path` (schema files are
    /// looked up beside `path`). No environment overrides.
    pub fn parse(path: &Path, text: &str) -> Result<Topology, TopologyError> {
        let file: TopologyFile = serde_yaml::from_str(text).map_err(|e| TopologyError {
            file: path.display().to_string(),
            entry: e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "file".into()),
            message: e.to_string(),
        })?;
        validate::validate(path, file)
    }

    /// A declared topic by name.
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.spec.name == name)
    }

    /// A component by name.
    pub fn component(&self, name: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.name == name)
    }
}

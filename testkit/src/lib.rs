//! Helpers for integration tests against the real services: the broker
//! from `PUSHFLOW_BROKERS`, Postgres from `PUSHFLOW_TEST_POSTGRES_URL`, and
//! a schema registry served in-process over real HTTP on its own database;
//! and, for tests that need a service to themselves or take one down, a
//! private Apache Kafka broker, Postgres server or moto S3 server; and
//! Debian's headless Chromium driven over the DevTools protocol
//! ([`browser`]). Beside them: kill -9 tests' child processes
//! ([`crash`]), topics written and read back independently of the
//! component under test ([`records`]), and small HTTP helpers ([`http`]).
//!
//! Every name a test creates (topics, groups, databases) is random, so
//! tests run in parallel and never see each other's data.

mod broker;
pub mod browser;
pub mod crash;
pub mod http;
mod moto;
mod postgres;
pub mod records;

pub use broker::PrivateBroker;
pub use moto::{s3_endpoint, Moto, S3_KEY, S3_REGION};
pub use postgres::PrivatePostgres;
pub use records::{producer, read_records, read_topic, LogEnds};

use pushflow_runtime::codec::Codec;
use pushflow_runtime::component::{Component, Context};
use pushflow_runtime::kafka::{Producer, RunOptions, StartAt};
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::{CancellationToken, RuntimeError};
use rand::Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The broker tests use (`PUSHFLOW_BROKERS`, default `127.0.0.1:9092`).
pub fn brokers() -> String {
    std::env::var("PUSHFLOW_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The Postgres server tests use, without a database name.
pub fn postgres_server() -> String {
    std::env::var("PUSHFLOW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A port nobody listens on now (127.0.0.1), for a server of the test's own.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Kills (SIGKILL) and reaps the child, if there is one.
pub fn kill(child: &mut Option<std::process::Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The bytes a hex string writes (test vectors of RFCs, as printed there).
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// `prefix` followed by a random suffix, e.g. for topic or group names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{:012x}",
        rand::rng().random::<u64>() & 0xffff_ffff_ffff
    )
}

/// A fresh (not yet created) database URL: (name, url). Components create
/// their database on connect; use [`create_database`] otherwise.
pub fn fresh_database(prefix: &str) -> (String, String) {
    let name = format!("{prefix}_{:016x}", rand::rng().random::<u64>());
    let url = format!("{}/{name}", postgres_server().trim_end_matches('/'));
    (name, url)
}

/// Creates database `name` on the test server.
pub async fn create_database(name: &str) {
    let url = format!("{}/postgres", postgres_server().trim_end_matches('/'));
    connect(&url)
        .await
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
}

/// A client of the (existing) database at `url`, its connection driven in
/// the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// Creates topics (name, partitions) on the test broker and waits until
/// their metadata is visible.
pub async fn create_topics(topics: &[(&str, i32)]) {
    create_topics_on(&brokers(), topics).await
}

/// [`create_topics`] on the broker at `brokers` (e.g. a [`PrivateBroker`]).
pub async fn create_topics_on(brokers: &str, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin
        .create_topics(&new, &opts)
        .await
        .expect("create topics")
    {
        if let Err((name, code)) = r {
            assert_eq!(
                code,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "creating {name}"
            );
        }
    }
    let names: Vec<String> = topics.iter().map(|(n, _)| n.to_string()).collect();
    let brokers = brokers.to_string();
    tokio::task::spawn_blocking(move || {
        pushflow_runtime::kafka::admin::wait_for_leaders(
            &brokers,
            &Default::default(),
            &names,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap()
    .expect("created topics get partition leaders");
}

/// Two instances of a component starting at once on a fresh database
/// `<schema>_migrate_<random>`: connects twice (the first connect creates
/// the database) and runs `migrate` for `schema` on both connections
/// together; both must succeed. Returns one of the clients and the
/// versions `<schema>.migrations` then holds, in order.
pub async fn migrate_twice_at_once<E: std::fmt::Debug>(
    schema: &str,
    migrate: impl AsyncFn(&mut tokio_postgres::Client, &str) -> Result<(), E>,
) -> (tokio_postgres::Client, Vec<i32>) {
    let (_, url) = fresh_database(&format!("{schema}_migrate"));
    let connect = async || {
        pushflow_runtime::postgres::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
    };
    drop(connect().await); // creates the database
    let (mut a, mut b) = (connect().await, connect().await);
    let (ra, rb) = tokio::join!(migrate(&mut a, schema), migrate(&mut b, schema));
    ra.expect("the first instance migrates");
    rb.expect("the second instance migrates");
    let versions = a
        .query(
            &format!("SELECT version FROM {schema}.migrations ORDER BY version"),
            &[],
        )
        .await
        .expect("read the migrations table")
        .iter()
        .map(|r| r.get(0))
        .collect();
    (a, versions)
}

/// Creates topics (name, partitions) as [`create_topics`] does, each with
/// its dead-letter topic `<name>.dlq` of one partition.
pub async fn create_topics_with_dead_letters(topics: &[(String, i32)]) {
    let dlqs: Vec<(String, i32)> = topics
        .iter()
        .map(|(t, _)| (format!("{t}.dlq"), 1))
        .collect();
    let all: Vec<(&str, i32)> = topics
        .iter()
        .chain(&dlqs)
        .map(|(t, p)| (t.as_str(), *p))
        .collect();
    create_topics(&all).await
}

/// What a component's integration test talks to besides its topics, fresh
/// for the test.
pub struct Services {
    /// An in-process schema registry ([`start_registry`]).
    pub registry: String,
    /// A database not yet created ([`fresh_database`]).
    pub database_url: String,
    /// A codec over that registry.
    pub codec: Arc<Codec>,
    /// A producer to the test broker ([`producer`]).
    pub producer: Producer,
}

impl Services {
    /// Starts a registry and names a database `<database_prefix>_<random>`.
    pub async fn start(database_prefix: &str) -> Services {
        let registry = start_registry().await;
        let (_, database_url) = fresh_database(database_prefix);
        Services {
            codec: Arc::new(Codec::for_registry(&registry).expect("a codec over the registry")),
            registry,
            database_url,
            producer: producer(),
        }
    }
}

/// librdkafka settings for a test's consumers: a 6 s session timeout, so a
/// group whose member was killed rebalances soon.
pub fn passthrough() -> BTreeMap<String, String> {
    BTreeMap::from([("session.timeout.ms".to_string(), "6000".to_string())])
}

/// What a test of a processor that keeps its offsets in Postgres (the
/// aggregate, analytics) works on besides its topics: an in-process
/// registry, a fresh database and the log ends of what the test wrote.
/// Serializable, for a crash test's child.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunWorld {
    /// The registry's URL ([`start_registry`]).
    pub registry: String,
    /// A database not yet created ([`fresh_database`]).
    pub database_url: String,
    /// What the test wrote so far.
    pub ends: LogEnds,
}

impl RunWorld {
    /// Starts a registry and names a database `<database_prefix>_<random>`.
    pub async fn start(database_prefix: &str) -> RunWorld {
        RunWorld {
            registry: start_registry().await,
            database_url: fresh_database(database_prefix).1,
            ends: LogEnds::default(),
        }
    }

    /// Options for a run named `name` with a fresh group of that name, over
    /// `inputs` from the beginning, stopping once everything noted in
    /// [`RunWorld::ends`] is committed.
    pub fn run_options<S>(&self, name: &str, inputs: Vec<String>, settings: S) -> RunOptions<S> {
        RunOptions {
            name: name.into(),
            brokers: brokers(),
            passthrough: passthrough(),
            group: unique(name),
            inputs,
            database_url: self.database_url.clone(),
            settings,
            codec: Arc::new(
                Codec::for_registry(&self.registry).expect("a codec over the registry"),
            ),
            start: StartAt::Beginning,
            stop_at: Some(self.ends.by_partition()),
            progress: None,
        }
    }
}

/// Runs `component` as `pushflow up` would, with `spec` its entry of
/// `topology`: (the token that stops it, its task).
pub fn run_component(
    component: impl Component + 'static,
    spec: ComponentSpec,
    topology: Topology,
) -> (CancellationToken, JoinHandle<Result<(), RuntimeError>>) {
    let shutdown = CancellationToken::new();
    let ctx = Context {
        topology: Arc::new(topology),
        spec,
        shutdown: shutdown.clone(),
        health: Default::default(),
    };
    (shutdown, tokio::spawn(Box::new(component).run(ctx)))
}

/// A schema registry served in-process on 127.0.0.1:0 over its own fresh
/// database; returns its base URL. It lives until the test's runtime ends.
pub async fn start_registry() -> String {
    let (_, db) = fresh_database("testkit_registry");
    let registry = pushflow_registry::connect(&db)
        .await
        .expect("registry connects to Postgres");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = registry.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A topology with the repository's topics and the given services,
/// for tests that drive components through the runtime's API.
pub fn topology_with(
    brokers: &str,
    registry_url: &str,
    database_url: &str,
) -> pushflow_runtime::topology::Topology {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topology.yaml");
    let mut t =
        pushflow_runtime::topology::Topology::load(&path).expect("repository topology loads");
    t.services.brokers = brokers.into();
    t.services.registry_url = registry_url.into();
    t.services.database_url = database_url.into();
    t
}

/// The repository's topology with services nobody listens on (for tests
/// that validate without I/O) and its component `name`.
pub fn repository_component(name: &str) -> (Topology, ComponentSpec) {
    let t = topology_with(
        "127.0.0.1:1",
        "http://127.0.0.1:1",
        "postgres://x@127.0.0.1:1/x",
    );
    let spec = t
        .component(name)
        .unwrap_or_else(|| panic!("topology.yaml has a component {name}"))
        .clone();
    (t, spec)
}

/// Runs `tests/python/<script>` with `args` and returns its stdout; panics
/// with its output when it fails (a missing package names itself).
pub fn python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("python3")
        .arg(python_script(script))
        .args(args)
        .output()
        .expect("run python3");
    python_stdout(script, out)
}

/// [`python`] without blocking the runtime (for a script that talks to a
/// server this test's runtime serves, such as [`start_registry`]'s); panics
/// when it has not finished within `limit`.
pub async fn python_async(script: &str, args: &[&str], limit: Duration) -> String {
    let run = tokio::process::Command::new("python3")
        .arg(python_script(script))
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {limit:?}"))
        .expect("run python3");
    python_stdout(script, out)
}

fn python_script(script: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/python")
        .join(script)
}

/// The stdout of a script that succeeded; panics with its output otherwise.
fn python_stdout(script: &str, out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Waits until consumer group `group` on `brokers` is stable with exactly
/// `members` members holding `partitions` partitions between them, as the
/// broker reports it (tests/python/group_state.py); panics after `within`.
pub fn wait_group_stable(
    brokers: &str,
    group: &str,
    members: usize,
    partitions: usize,
    within: Duration,
) {
    python(
        "group_state.py",
        &[
            brokers,
            group,
            &members.to_string(),
            &partitions.to_string(),
            &within.as_secs().to_string(),
        ],
    );
}

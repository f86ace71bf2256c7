//! Helpers for integration tests against the real services: the broker
//! from `PUSHFLOW_BROKERS`, Postgres from `PUSHFLOW_TEST_POSTGRES_URL`, and
//! a schema registry served in-process over real HTTP on its own database;
//! and, for tests that need a service to themselves or take one down, a
//! private Apache Kafka broker, Postgres server or moto S3 server; and
//! Debian's headless Chromium driven over the DevTools protocol
//! ([`browser`]).
//!
//! Every name a test creates (topics, groups, databases) is random, so
//! tests run in parallel and never see each other's data.

mod broker;
pub mod browser;
mod moto;
mod postgres;

pub use broker::PrivateBroker;
pub use moto::{s3_endpoint, Moto, S3_KEY, S3_REGION};
pub use postgres::PrivatePostgres;

use rand::Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use std::time::Duration;

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
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test Postgres server");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
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

/// Runs `tests/python/<script>` with `args` and returns its stdout; panics
/// with its output when it fails (a missing package names itself).
pub fn python(script: &str, args: &[&str]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/python")
        .join(script);
    let out = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("run python3");
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

//! `/healthz` tells the truth: `pushflow up` over a broker, a Postgres
//! server, an S3 server and a schema registry of the test's own; each is
//! taken down in turn. Within a few seconds `/healthz` answers 503 naming
//! the unreachable dependency for every component that needs it, and 200
//! again soon after it is back. The components keep running through each
//! outage (none fails for good).

use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How soon an outage must show in `/healthz`.
const NOTICED_WITHIN: Duration = Duration::from_secs(10);
/// How soon a recovery must show.
const RECOVERED_WITHIN: Duration = Duration::from_secs(60);

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A child process killed when the test ends, however it ends.
struct Killed(Option<Child>);

impl Killed {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn healthz(http: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let r = http.get(url).send().await.ok()?;
    let code = r.status().as_u16();
    Some((code, r.json().await.ok()?))
}

/// Polls `url` until `want` holds for its (status, body); the last answer.
async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    within: Duration,
    what: &str,
    want: impl Fn(u16, &Value) -> bool,
) -> Value {
    let started = Instant::now();
    let mut last = None;
    loop {
        if let Some((code, body)) = healthz(http, url).await {
            if want(code, &body) {
                return body;
            }
            last = Some((code, body));
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?}; last /healthz answer: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether check `name` is failing with a message containing `needle`.
fn failing(body: &Value, name: &str, needle: &str) -> bool {
    body["checks"][name]
        .as_str()
        .is_some_and(|m| m != "ok" && m.contains(needle))
}

fn spawn_registry(pushflow: &str, repo: &Path, database_url: &str, addr: &str) -> Killed {
    Killed(Some(
        Command::new(pushflow)
            .current_dir(repo)
            .arg("registry")
            .env("PUSHFLOW_DATABASE_URL", database_url)
            .env("PUSHFLOW_REGISTRY_ADDR", addr)
            .env("PUSHFLOW_METRICS_ADDR", free_addr())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_names_each_unreachable_dependency_and_recovers() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pushflow = env!("CARGO_BIN_EXE_pushflow");
    let mut broker = pushflow_testkit::PrivateBroker::start();
    let pg = pushflow_testkit::PrivatePostgres::start();
    let mut s3 = pushflow_testkit::Moto::start();
    let bucket = "health-lake";
    s3.create_bucket(bucket);
    let database_url = pg.url("pushflow");
    let registry_addr = free_addr();
    let mut registry = spawn_registry(pushflow, &repo, &database_url, &registry_addr);
    let metrics_addr = free_addr();
    let envs: Vec<(&str, String)> = vec![
        ("PUSHFLOW_BROKERS", broker.addr.clone()),
        ("PUSHFLOW_DATABASE_URL", database_url.clone()),
        ("PUSHFLOW_REGISTRY_URL", format!("http://{registry_addr}")),
        ("PUSHFLOW_METRICS_ADDR", metrics_addr.clone()),
        ("PUSHFLOW_INGEST_ADDR", free_addr()),
        ("PUSHFLOW_DASHBOARD_ADDR", free_addr()),
        ("PUSHFLOW_LAKE_URL", format!("s3://{bucket}/lake")),
        ("PUSHFLOW_ALLOW_INSECURE_PUSH", "1".into()),
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("AWS_ACCESS_KEY_ID", pushflow_testkit::S3_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", pushflow_testkit::S3_KEY.into()),
        ("AWS_REGION", pushflow_testkit::S3_REGION.into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ];
    let mut up = Killed(Some(
        Command::new(pushflow)
            .current_dir(&repo)
            .args(["up", "--skip", "registry", "--skip", "push-sim"])
            .envs(envs.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://{metrics_addr}/healthz");

    // Healthy, listing every component and each one's dependencies.
    let body = wait_for(
        &http,
        &url,
        Duration::from_secs(180),
        "pushflow up healthy",
        |code, _| code == 200,
    )
    .await;
    let checks = body["checks"].as_object().unwrap();
    for name in [
        "ingest",
        "dispatch",
        "aggregate",
        "lake",
        "ingest.broker",
        "ingest.registry",
        "dispatch.broker",
        "dispatch.postgres",
        "dispatch.registry",
        "aggregate.broker",
        "aggregate.postgres",
        "aggregate.registry",
        "lake.broker",
        "lake.registry",
        "lake.object-store",
    ] {
        assert_eq!(checks.get(name), Some(&Value::from("ok")), "{name}: {body}");
    }

    // The broker: every Kafka component names it.
    broker.stop();
    wait_for(&http, &url, NOTICED_WITHIN, "broker outage", |code, b| {
        code == 503
            && ["ingest", "dispatch", "aggregate", "lake"]
                .iter()
                .all(|c| failing(b, &format!("{c}.broker"), &broker.addr))
    })
    .await;
    broker.restart();
    wait_for(&http, &url, RECOVERED_WITHIN, "broker back", |code, _| {
        code == 200
    })
    .await;

    // Postgres: dispatch and aggregate name it (and the registry, which
    // stores schemas there, answers 5xx to the others meanwhile).
    pg.stop();
    wait_for(&http, &url, NOTICED_WITHIN, "Postgres outage", |code, b| {
        code == 503
            && ["dispatch", "aggregate"]
                .iter()
                .all(|c| failing(b, &format!("{c}.postgres"), &format!(":{}", pg.port)))
    })
    .await;
    pg.restart();
    wait_for(&http, &url, RECOVERED_WITHIN, "Postgres back", |code, _| {
        code == 200
    })
    .await;

    // The object store: the lake names it; back (with its bucket) it is ok.
    s3.stop();
    wait_for(&http, &url, NOTICED_WITHIN, "S3 outage", |code, b| {
        code == 503 && failing(b, "lake.object-store", "")
    })
    .await;
    s3.restart();
    s3.create_bucket(bucket);
    wait_for(&http, &url, RECOVERED_WITHIN, "S3 back", |code, _| {
        code == 200
    })
    .await;

    // The registry: every component that decodes or encodes names it.
    registry.kill();
    wait_for(&http, &url, NOTICED_WITHIN, "registry outage", |code, b| {
        code == 503
            && ["ingest", "dispatch", "aggregate", "lake"]
                .iter()
                .all(|c| failing(b, &format!("{c}.registry"), &registry_addr))
    })
    .await;
    registry = spawn_registry(pushflow, &repo, &database_url, &registry_addr);
    wait_for(&http, &url, RECOVERED_WITHIN, "registry back", |code, _| {
        code == 200
    })
    .await;

    // Every component still runs: `pushflow up` stops cleanly on SIGTERM.
    let child = up.0.take().unwrap();
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let started = Instant::now();
    while !waiter.is_finished() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("pushflow up did not stop within 60 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = waiter.join().unwrap();
    assert!(
        out.status.success(),
        "pushflow up exited with {}",
        out.status
    );
    drop(registry);
}

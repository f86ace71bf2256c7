//! `pushflow up` on the real broker and Postgres: it serves /healthz and
//! /metrics, runs the registry, applies the topology (a second apply
//! changes nothing), and stops cleanly on SIGTERM.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_applies_the_topology_serves_health_and_stops_on_sigterm() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (_, database_url) = pushflow_testkit::fresh_database("up_test");
    let registry_addr = free_addr();
    let metrics_addr = free_addr();
    let lake = std::env::temp_dir().join(pushflow_testkit::unique("lake"));
    let envs = [
        ("PUSHFLOW_BROKERS", pushflow_testkit::brokers()),
        ("PUSHFLOW_DATABASE_URL", database_url),
        ("PUSHFLOW_REGISTRY_ADDR", registry_addr.clone()),
        ("PUSHFLOW_REGISTRY_URL", format!("http://{registry_addr}")),
        ("PUSHFLOW_METRICS_ADDR", metrics_addr.clone()),
        ("PUSHFLOW_INGEST_ADDR", free_addr()),
        ("PUSHFLOW_DASHBOARD_ADDR", free_addr()),
        ("PUSHFLOW_LAKE_URL", format!("file://{}", lake.display())),
        ("PUSHFLOW_ALLOW_INSECURE_PUSH", "1".into()),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushflow"))
        .current_dir(&repo)
        .arg("up")
        .envs(envs.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut healthy = false;
    while start.elapsed() < Duration::from_secs(90) {
        if let Ok(r) = http
            .get(format!("http://{metrics_addr}/healthz"))
            .send()
            .await
        {
            if r.status().is_success() {
                let subjects: Vec<String> = match http
                    .get(format!("http://{registry_addr}/subjects"))
                    .send()
                    .await
                {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => vec![],
                };
                if pushflow_schemas::CATALOGUE
                    .iter()
                    .all(|t| subjects.contains(&t.subject()))
                {
                    healthy = true;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !healthy {
        let _ = child.kill();
        panic!("pushflow up did not become healthy with every schema registered within 90 s");
    }
    let metrics = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert!(metrics.status().is_success());

    // A second apply, against the running registry, changes nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_pushflow"))
        .current_dir(&repo)
        .args(["topology", "apply"])
        .envs(envs.iter().cloned())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("topic notification.delivered: unchanged"),
        "{stdout}"
    );
    assert!(
        stdout.contains("schema notification.delivered-value: unchanged"),
        "{stdout}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("topology already applied: nothing changed"),
        "{stdout}"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pushflow up did not stop within 60 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "pushflow up exited with {status} after SIGTERM"
    );
    let _ = std::fs::remove_dir_all(&lake);
}

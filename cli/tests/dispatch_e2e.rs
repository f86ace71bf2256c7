//! `pushflow bench dispatch-e2e` on the shared Apache Kafka and Postgres:
//! a launched campaign reaches every subscriber once, through the view,
//! the plan, `dispatch.batches` and push-sim, and every notification has
//! exactly one outcome event. The command itself fails when an outcome is
//! missing or repeated, or when push-sim saw another number of pushes; the
//! test reads its report to check the counts it printed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_launched_campaign_has_one_outcome_event_per_subscriber() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushflow"))
        .current_dir(repo)
        .args([
            "bench",
            "dispatch-e2e",
            "--notifications",
            "600",
            "--batch-size",
            "50",
            "--partitions",
            "3",
            "--direct",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pushflow bench dispatch-e2e");
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pushflow bench dispatch-e2e did not finish in 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        status.success(),
        "bench dispatch-e2e failed ({status}):\n{out}"
    );
    assert!(
        out.contains("600 outcome records for 600 notifications"),
        "{out}"
    );
    assert!(
        out.contains("\"accepted\":600"),
        "push-sim accepted every push: {out}"
    );
    assert!(
        out.contains("| postgres |") && out.contains("| kafka |"),
        "{out}"
    );
}

//! `pushflow bench peer`: pushflow's aggregate and the Kafka Streams peer
//! (peers/kafka-streams, Java, built with Maven on first use) on the same
//! records on the shared Apache Kafka, both checked against the ground
//! truth the peer's Python driver computes on its own (duplicates,
//! disorder, a month boundary, late and far-late pings). The command fails
//! when pushflow's tables differ from that truth; the test also wants the
//! peer exact under pushflow's lateness rule, so a broken comparison (which
//! would call both wrong) cannot pass either.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn pushflow_and_kafka_streams_are_both_exact_on_the_same_records() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushflow"))
        .current_dir(repo)
        .args(["bench", "peer", "--events", "6000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start pushflow bench peer");
    // Bounded: the Maven build of the peer on a fresh machine, its JVM and
    // both runs take well under this.
    let deadline = Instant::now() + Duration::from_secs(900);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pushflow bench peer did not finish in 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "bench peer failed ({status}):\n{out}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{out}"))
            .to_string()
    };
    let ours = line("pushflow aggregate");
    assert!(
        ours.contains("exact: yes (windows 0 wrong, months 0 wrong)"),
        "{out}"
    );
    assert!(
        ours.contains("(6000 records in"),
        "pushflow read every record: {out}"
    );
    let peer = line("Kafka Streams");
    assert!(peer.contains("exact: yes"), "{out}");
    assert!(
        peer.contains("(6000 records in"),
        "the peer read every record: {out}"
    );
}

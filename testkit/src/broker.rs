//! A private Apache Kafka broker for one test: its own JVM (one KRaft node,
//! `scripts/kafka-node`) on a free port with a throwaway log dir, so a test
//! that needs whole topics to itself (exact record counts under the real
//! topic names) shares them with no other test. Killed, and its log dir
//! removed, when dropped. Starting one takes about 5–10 s and ~370 MB.
//! [`PrivateBroker::stop`] and [`PrivateBroker::restart`] take it down and
//! bring it back on the same port and log dir (outage tests).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An Apache Kafka broker owned by the test.
pub struct PrivateBroker {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    /// `127.0.0.1:port`, for `bootstrap.servers`.
    pub addr: String,
}

impl PrivateBroker {
    /// Starts a broker through `scripts/kafka-node` (its jars fetched by
    /// `scripts/services up`, or here on first use) and waits until it
    /// answers a metadata request.
    pub fn start() -> PrivateBroker {
        let port = crate::free_port();
        let mut broker = PrivateBroker {
            child: None,
            dir: std::env::temp_dir().join(crate::unique("pushflow-kafka")),
            port,
            addr: format!("127.0.0.1:{port}"),
        };
        broker.restart();
        broker
    }

    /// Kills the broker (SIGKILL), keeping its log dir.
    pub fn stop(&mut self) {
        crate::kill(&mut self.child);
    }

    /// Starts the broker (again) on the same port and log dir, and waits
    /// until it answers a metadata request.
    pub fn restart(&mut self) {
        self.stop();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::temp_dir().join(format!(
                "{}.log",
                self.dir.file_name().unwrap().to_string_lossy()
            )))
            .expect("broker log file");
        let child = Command::new(root.join("scripts/kafka-node"))
            .arg("run")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start scripts/kafka-node (Java 17 and Maven needed; scripts/services up installs them)");
        self.child = Some(child);
        self.wait_until_serving(Duration::from_secs(90));
    }

    fn wait_until_serving(&self, within: Duration) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("log_level", "0")
            .create()
            .expect("metadata client");
        let started = Instant::now();
        while consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .map(|m| m.brokers().is_empty())
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < within,
                "Apache Kafka did not serve on {} within {within:?} (log: {}.log)",
                self.addr,
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! A private S3-compatible server for one test: moto (`pip install
//! 'moto[server]'`, tests/python/requirements.txt) on a free port.
//! [`Moto::stop`] kills it; [`Moto::restart`] starts it again on the same
//! port (moto keeps its buckets in memory: a restarted one is empty).
//! Killed when dropped.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto accepts any key; these are the ones tests pass.
pub const S3_KEY: &str = "test";
/// The region tests pass.
pub const S3_REGION: &str = "us-east-1";

/// A moto server owned by the test.
pub struct Moto {
    child: Option<Child>,
    /// The port on 127.0.0.1.
    pub port: u16,
}

impl Moto {
    /// Starts moto on a free port and waits until it listens.
    pub fn start() -> Moto {
        let port = crate::free_port();
        let mut m = Moto { child: None, port };
        m.restart();
        m
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (moto takes an unsigned PUT).
    pub fn create_bucket(&self, bucket: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        use std::io::{Read, Write};
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send to moto");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "moto refused to create bucket {bucket}: {answer}"
        );
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        crate::kill(&mut self.child);
    }

    /// Starts the server (again) on the same port; it comes back empty.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto (pip package moto[server], see tests/python/requirements.txt)");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The S3 server tests share — `PUSHFLOW_S3_ENDPOINT` (default
/// `http://127.0.0.1:9000`, `scripts/services up --s3`) when it answers —
/// else a [`Moto`] of the test's own: (endpoint, the private server to
/// keep alive while the test runs).
pub fn s3_endpoint() -> (String, Option<Moto>) {
    let configured =
        std::env::var("PUSHFLOW_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into());
    let hostport = configured
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if TcpStream::connect(&hostport).is_ok() {
        return (configured, None);
    }
    let m = Moto::start();
    (m.endpoint(), Some(m))
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

//! A private tansu broker for one test: its own process on a free port
//! with in-memory storage, so a test that needs whole topics to itself
//! (exact record counts under the real topic names) shares them with no
//! other test. Killed when dropped.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tansu broker owned by the test.
pub struct PrivateBroker {
    child: Child,
    /// `127.0.0.1:port`, for `bootstrap.servers`.
    pub addr: String,
}

impl PrivateBroker {
    /// Starts `tansu broker` (installed by `scripts/services`) on a free
    /// port and waits until it accepts connections.
    pub fn start() -> PrivateBroker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let child = Command::new(tansu_binary())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start `tansu broker` (run scripts/services up to install it)");
        let started = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        PrivateBroker { child, addr }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tansu` on the PATH, else the one `cargo install` put in ~/.cargo/bin.
fn tansu_binary() -> String {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("tansu").is_file()))
        .unwrap_or(false);
    if on_path {
        return "tansu".into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    format!("{home}/.cargo/bin/tansu")
}

//! A private Postgres server for one test (outage tests): its own cluster
//! (Debian's `initdb`, run as the `postgres` user) in a temp dir on a free
//! port, with `trust` for local connections. [`PrivatePostgres::stop`]
//! takes it down the hard way (`pg_ctl stop -m immediate`, like a crash),
//! [`PrivatePostgres::restart`] brings it back with its data. Stopped and
//! removed when dropped. Creating one takes about 2–4 s.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Postgres server owned by the test.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    /// `127.0.0.1:port`.
    pub port: u16,
}

/// The newest Debian Postgres binaries (`/usr/lib/postgresql/<v>/bin`).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's postgresql package (scripts/services up installs it)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let v = versions
        .last()
        .expect("a Postgres version under /usr/lib/postgresql");
    PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"))
}

/// Runs a Postgres tool as the `postgres` user (the server refuses root).
fn as_postgres(tool: &PathBuf, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} as postgres: {e}", tool.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivatePostgres {
    /// Creates and starts a cluster; the `postgres` user connects without
    /// a password on 127.0.0.1.
    pub fn start() -> PrivatePostgres {
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(crate::unique("pushflow-pg"));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let owned = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown the cluster dir");
        assert!(owned.success(), "chown postgres {}", dir.display());
        let pg = PrivatePostgres {
            bin: bin_dir(),
            dir,
            port,
        };
        let data = pg.data();
        as_postgres(
            &pg.bin.join("initdb"),
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        pg.restart();
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// `postgres://postgres@127.0.0.1:port/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server at once (no checkpoint: as after a crash).
    pub fn stop(&self) {
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "stop", "-m", "immediate", "-w"],
        );
    }

    /// Starts the server and waits until it accepts connections.
    pub fn restart(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-l", &log, "-o", &opts, "start", "-w"],
        );
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Postgres did not listen on {} (log {log})",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

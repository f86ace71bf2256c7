//! kill -9 tests: the test binary re-runs itself as a child process that
//! runs one ignored test (the component under test), and the parent kills
//! it with SIGKILL, so the crash is a real one.
//!
//! The parent passes the child its settings as JSON in an environment
//! variable ([`ChildTest::settings`]); the child's test reads them back
//! with [`child_settings`] and does nothing in an ordinary test run, where
//! the variable is unset.

use pushflow_runtime::kafka::RunOptions;
use pushflow_runtime::CancellationToken;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// In the child of a crash test: the settings the parent passed in `env`,
/// with tracing set up on stderr (`info,rdkafka=warn` unless `RUST_LOG`
/// says otherwise). `None` when `env` is unset: an ordinary test run, in
/// which the child's test should return at once.
pub fn child_settings<T: DeserializeOwned>(env: &str) -> Option<T> {
    let json = std::env::var(env).ok()?;
    pushflow_runtime::telemetry::init_tracing_at(false, "info,rdkafka=warn");
    eprintln!("child {} starting", std::process::id());
    Some(serde_json::from_str(&json).unwrap_or_else(|e| panic!("settings in {env}: {e}")))
}

/// A child process to start: this test binary, running its test `test`
/// alone (ignored tests included, output not captured), stdout discarded,
/// stderr inherited unless [`ChildTest::log_to`] or
/// [`ChildTest::command`] says otherwise.
pub struct ChildTest {
    command: Command,
    log: Option<PathBuf>,
}

impl ChildTest {
    /// The child that runs test `test` of this binary.
    pub fn new(test: &str) -> ChildTest {
        let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
        command
            .args(["--exact", test, "--nocapture", "--include-ignored"])
            .stdout(Stdio::null());
        ChildTest { command, log: None }
    }

    /// Passes `settings` as JSON in `env` (read back by [`child_settings`]).
    pub fn settings(mut self, env: &str, settings: &impl Serialize) -> ChildTest {
        let json = serde_json::to_string(settings).expect("child settings serialize");
        self.command.env(env, json);
        self
    }

    /// Appends the child's stderr to `<temp dir>/<file>`, which failure
    /// messages then name.
    pub fn log_to(mut self, file: &str) -> ChildTest {
        let path = std::env::temp_dir().join(file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        self.command.stderr(log);
        self.log = Some(path);
        self
    }

    /// The command, for more environment or another stderr.
    pub fn command(&mut self) -> &mut Command {
        &mut self.command
    }

    /// Starts the child.
    pub fn spawn(&mut self) -> CrashChild {
        let child = self.command.spawn().expect("re-exec the test binary");
        CrashChild {
            child: Some(child),
            log: self.log.clone(),
        }
    }
}

/// A running child of a crash test; killed (SIGKILL) and reaped when
/// dropped, so a failing test leaves no process behind.
pub struct CrashChild {
    child: Option<Child>,
    log: Option<PathBuf>,
}

impl CrashChild {
    /// ` (log: <file>)` when the child logs to a file, for messages.
    fn log_note(&self) -> String {
        self.log
            .as_ref()
            .map(|l| format!(" (log: {})", l.display()))
            .unwrap_or_default()
    }

    fn running(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child was killed or has exited")
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the child is running");
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
    }

    /// Panics when the child has exited already.
    pub fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.running().try_wait().expect("child status") {
            panic!("{what}: {status}{}", self.log_note());
        }
    }

    /// Waits until the child exits by itself; panics naming `what` after
    /// `within`.
    pub async fn wait_exit(&mut self, within: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.running().try_wait().expect("child status") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "{what}{}", self.log_note());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The child's stderr, when [`ChildTest::command`] piped it.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.running().stderr.take()
    }
}

impl Drop for CrashChild {
    fn drop(&mut self) {
        crate::kill(&mut self.child);
    }
}

/// The child's side of a processor's crash test: when this process is the
/// child (`env` set), runs the processor (`run`) on `options` of the
/// settings the parent passed, renamed `name`, to its end, and prints its
/// summary. Does nothing in an ordinary test run.
pub async fn run_child<T, S, Fut, R, E>(
    env: &str,
    name: &str,
    options: impl FnOnce(&T) -> RunOptions<S>,
    run: impl FnOnce(RunOptions<S>, CancellationToken) -> Fut,
) where
    T: DeserializeOwned,
    Fut: Future<Output = Result<R, E>>,
    R: Debug,
    E: Debug,
{
    let Some(settings) = child_settings::<T>(env) else {
        return;
    };
    let mut opts = options(&settings);
    opts.name = name.into();
    let summary = run(opts, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    eprintln!("child {} finished: {summary:?}", std::process::id());
}

/// A processor's crash test, the parent's side: kills four children
/// mid-run ([`kill_at_random_progress`], each given `within` to make
/// progress), checks that no kill came after the end, then runs one more
/// child, which must finish successfully within twice `within`. Returns
/// the progress at each kill.
pub async fn kill_mid_run_then_finish<F>(
    child: &mut ChildTest,
    total: i64,
    within: Duration,
    progress: impl FnMut() -> F,
) -> Vec<i64>
where
    F: Future<Output = i64>,
{
    let at_kills = kill_at_random_progress(child, 4, total, within, progress).await;
    eprintln!("killed at {at_kills:?} of {total}");
    assert!(
        at_kills.last() < Some(&total),
        "the kills all landed mid-run"
    );
    let mut last = child.spawn();
    let status = last
        .wait_exit(2 * within, "final child did not finish")
        .await;
    assert!(
        status.success(),
        "the final child failed: {status}{}",
        last.log_note()
    );
    at_kills
}

/// Kills children one after another, each at a random point of progress
/// so that every kill lands mid-run: a child from `child` runs until
/// `progress()` (of `total`, from 0) has moved a random step past where
/// the last one left it, and is then killed with SIGKILL; `kills` times.
/// Panics when a child exits by itself, or makes no progress for
/// `within`. Returns the progress at each kill.
pub async fn kill_at_random_progress<F>(
    child: &mut ChildTest,
    kills: i64,
    total: i64,
    within: Duration,
    mut progress: impl FnMut() -> F,
) -> Vec<i64>
where
    F: Future<Output = i64>,
{
    use rand::Rng;
    let mut done = 0;
    let mut at_kills = Vec::new();
    for round in 0..kills {
        let step = ((total - done) / (kills + 1 - round)).max(1);
        let target = done + rand::rng().random_range(1..=step);
        let mut running = child.spawn();
        let deadline = Instant::now() + within;
        loop {
            running.assert_running("child exited before the kill");
            done = progress().await;
            if done >= target {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "child made no progress{}",
                running.log_note()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        running.kill();
        done = progress().await;
        at_kills.push(done);
    }
    at_kills
}

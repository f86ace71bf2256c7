//! The processes a run's work happens in — pushflow itself (in the demo:
//! every component, the simulated browsers and push service), the Apache
//! Kafka broker and Postgres — read from `/proc`: CPU seconds and memory
//! per process group ([`snapshot`]), and for the demo a [`Sampler`] that
//! reads them once a second for CPU per phase and peak memory, so the
//! report names the next bottleneck.
//!
//! CPU is `utime + stime` of each process; for Postgres also `cutime +
//! cstime`, so backends that ended (counted into the postmaster when it
//! reaps them) are not lost. Memory is the proportional set size (PSS,
//! `/proc/<pid>/smaps_rollup`), summed over a group's processes, so
//! Postgres' shared buffers are counted once; pushflow's is its own peak
//! resident size (`VmHWM`) when that is higher.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// USER_HZ: the unit of the CPU times in `/proc/<pid>/stat`.
const TICKS_PER_SECOND: f64 = 100.0;

/// One group's figures in the report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ProcessFigures {
    /// `pushflow`, `kafka` or `postgres`.
    pub name: String,
    /// Processes seen in the group (at the last sample).
    pub processes: usize,
    /// Peak memory, MB (see the module doc).
    pub peak_mb: f64,
    /// CPU seconds per phase, in the report's phase order.
    pub cpu_seconds: Vec<(String, f64)>,
}

#[derive(Debug, Default)]
struct Group {
    processes: usize,
    cpu: f64,
    peak_bytes: u64,
    /// CPU at the end of each marked phase.
    marks: Vec<(String, f64)>,
}

/// Samples the groups until dropped or [`Sampler::finish`]ed.
pub struct Sampler {
    groups: Arc<Mutex<BTreeMap<&'static str, Group>>>,
    task: JoinHandle<()>,
}

/// Which group a process belongs to, if any.
fn group_of(pid: u32, me: u32) -> Option<&'static str> {
    if pid == me {
        return Some("pushflow");
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim() == "postgres" {
        return Some("postgres");
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let kafka = cmdline.split(|b| *b == 0).any(|arg| arg == b"kafka.Kafka");
    kafka.then_some("kafka")
}

/// CPU seconds of `pid` (with its reaped children for Postgres).
fn cpu_of(pid: u32, with_children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    stat_cpu(&stat, with_children)
}

/// CPU seconds in a `/proc/…/stat` line.
fn stat_cpu(stat: &str, with_children: bool) -> f64 {
    // After the command name in parentheses: state is field 0, utime 11,
    // stime 12, cutime 13, cstime 14.
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0);
    let own = at(11) + at(12);
    let children = if with_children { at(13) + at(14) } else { 0.0 };
    (own + children) / TICKS_PER_SECOND
}

/// CPU seconds process `pid` used so far (0 once it is gone).
pub fn cpu_seconds_of(pid: u32) -> f64 {
    cpu_of(pid, false)
}

/// CPU seconds this process used so far, threads that ended included.
pub fn own_cpu_seconds() -> f64 {
    cpu_of(std::process::id(), false)
}

/// CPU seconds the broker's JVM spent compiling its own code so far: its
/// JIT compiler threads (`C1 CompilerThread*`, `C2 CompilerThread*`,
/// whose names the kernel cuts to 15 bytes). A broker that has not yet run
/// a code path (transactions, say) compiles it while a benchmark runs; a
/// long-running production broker has done so long before.
pub fn broker_jit_cpu_seconds() -> f64 {
    let me = std::process::id();
    let mut total = 0.0;
    for pid in numbered(std::path::Path::new("/proc")) {
        if group_of(pid, me) != Some("kafka") {
            continue;
        }
        let tasks = std::path::PathBuf::from(format!("/proc/{pid}/task"));
        for tid in numbered(&tasks) {
            let stat =
                std::fs::read_to_string(tasks.join(format!("{tid}/stat"))).unwrap_or_default();
            // The thread's name is the stat line's field in parentheses.
            let name = stat.split_once('(').map_or("", |(_, r)| r);
            if name.starts_with("C1 CompilerThre") || name.starts_with("C2 CompilerThre") {
                total += stat_cpu(&stat, false);
            }
        }
    }
    total
}

/// The numeric entries of a `/proc` directory (process or thread ids).
fn numbered(dir: &std::path::Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// A `kB` field of a `/proc` status-like file, in bytes.
fn kb_field(text: &str, field: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Memory of `pid`: its PSS, or for pushflow its peak resident size when
/// higher.
fn memory_of(pid: u32, me: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let pss = kb_field(&rollup, "Pss:");
    if pid != me {
        return pss;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    pss.max(kb_field(&status, "VmHWM:"))
}

/// What a group of processes used so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    /// Processes in the group now.
    pub processes: usize,
    /// CPU seconds (see the module doc).
    pub cpu_seconds: f64,
    /// Memory now, bytes (see the module doc).
    pub memory_bytes: u64,
}

/// Every group's usage now: `pushflow` (this process), `kafka`, `postgres`.
pub fn snapshot() -> BTreeMap<&'static str, Usage> {
    let me = std::process::id();
    let mut now: BTreeMap<&'static str, Usage> = BTreeMap::new();
    for pid in numbered(std::path::Path::new("/proc")) {
        let Some(g) = group_of(pid, me) else {
            continue;
        };
        let u = now.entry(g).or_default();
        u.processes += 1;
        u.cpu_seconds += cpu_of(pid, g == "postgres");
        u.memory_bytes += memory_of(pid, me);
    }
    now
}

fn sample(groups: &Mutex<BTreeMap<&'static str, Group>>) {
    let now = snapshot();
    let mut groups = groups.lock().unwrap_or_else(|p| p.into_inner());
    for (name, u) in now {
        let g = groups.entry(name).or_default();
        g.processes = u.processes;
        // A process that ended takes its CPU with it; never go back.
        g.cpu = g.cpu.max(u.cpu_seconds);
        g.peak_bytes = g.peak_bytes.max(u.memory_bytes);
    }
}

impl Sampler {
    /// Starts sampling once a second.
    pub fn start() -> Sampler {
        let groups = Arc::new(Mutex::new(BTreeMap::new()));
        let g = groups.clone();
        let task = tokio::spawn(async move {
            loop {
                let g = g.clone();
                let _ = tokio::task::spawn_blocking(move || sample(&g)).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Sampler { groups, task }
    }

    /// Marks the end of phase `name` (samples now).
    pub fn mark(&self, name: &str) {
        sample(&self.groups);
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        for g in groups.values_mut() {
            let cpu = g.cpu;
            g.marks.push((name.to_string(), cpu));
        }
    }

    /// Stops sampling; the figures per group, CPU per marked phase.
    pub fn finish(self) -> Vec<ProcessFigures> {
        self.task.abort();
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .iter()
            .map(|(name, g)| {
                let mut before = g.marks.first().map(|(_, c)| *c).unwrap_or(0.0);
                let cpu_seconds = g
                    .marks
                    .iter()
                    .skip(1)
                    .map(|(phase, c)| {
                        let d = c - before;
                        before = *c;
                        (phase.clone(), d)
                    })
                    .collect();
                ProcessFigures {
                    name: name.to_string(),
                    processes: g.processes,
                    peak_mb: g.peak_bytes as f64 / 1e6,
                    cpu_seconds,
                }
            })
            .collect()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

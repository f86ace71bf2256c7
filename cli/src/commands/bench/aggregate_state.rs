//! The parts of `pushflow bench aggregate` about the dedup state and what
//! bounds the run: CPU per process (from `/proc/<pid>/stat`), memory per
//! pair of the in-memory structure (and the resident delta), and the time
//! to load a partition set's state from `dedup_log`.

use pushflow_aggregate::tally::{Dedup, Key, PingKind};
use pushflow_aggregate::{changelog, store, AggregateError};
use pushflow_runtime::kafka::PartitionKey;
use pushflow_runtime::postgres::pg;
use std::collections::HashMap;
use std::time::Instant;

/// CPU ticks (utime + stime) per process name, and of this process.
#[derive(Debug, Clone, Default)]
pub struct CpuSample {
    by_name: HashMap<String, u64>,
    own: u64,
}

fn ticks_of(stat: &str) -> Option<(String, u64)> {
    // pid (comm) state … field 14 utime, 15 stime (1-based).
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 if unknown).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

impl CpuSample {
    /// Every process's ticks now (those that ended meanwhile are lost:
    /// Postgres backends of the run are still connected when sampled).
    pub fn now() -> CpuSample {
        let mut by_name: HashMap<String, u64> = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                    continue;
                };
                if let Some((comm, t)) = ticks_of(&stat) {
                    *by_name.entry(comm).or_default() += t;
                }
            }
        }
        let own = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| ticks_of(&s))
            .map_or(0, |(_, t)| t);
        CpuSample { by_name, own }
    }

    /// Seconds of CPU since `before`: (postgres, java (the broker), this
    /// process, everything).
    pub fn since(&self, before: &CpuSample) -> CpuUse {
        let hz = clock_ticks();
        let d = |name: &str| {
            let a = before.by_name.get(name).copied().unwrap_or(0);
            let b = self.by_name.get(name).copied().unwrap_or(0);
            b.saturating_sub(a) as f64 / hz
        };
        let all: u64 = self.by_name.values().sum::<u64>();
        let all_before: u64 = before.by_name.values().sum::<u64>();
        CpuUse {
            postgres: d("postgres"),
            broker: d("java"),
            own: self.own.saturating_sub(before.own) as f64 / hz,
            all: all.saturating_sub(all_before) as f64 / hz,
        }
    }
}

/// CPU seconds of a run by process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// All `postgres` processes (the backends serving the run and the
    /// server's own: WAL writer, checkpointer).
    pub postgres: f64,
    /// The broker's JVM.
    pub broker: f64,
    /// This process (consume, decode, dedup, window, Postgres client).
    pub own: f64,
    /// Every process.
    pub all: f64,
}

impl CpuUse {
    /// One line: µs of CPU per event by process.
    pub fn per_event(&self, events: u64) -> String {
        let us = |s: f64| s * 1e6 / events.max(1) as f64;
        format!(
            "Postgres {:.2} µs/event, broker {:.2} µs/event, pushflow {:.2} µs/event (all processes {:.2})",
            us(self.postgres),
            us(self.broker),
            us(self.own),
            us(self.all)
        )
    }
}

/// Resident bytes of this process.
fn resident() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split(' ').nth(1).and_then(|p| p.parse::<usize>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn nid(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-{i:012}", i as u32)
}

/// Memory of the dedup structure for `n` distinct notifications (one
/// partition): its own count of heap bytes and the resident delta.
pub fn memory_line(n: usize) -> String {
    let before = resident();
    let mut d = Dedup::default();
    for i in 0..n {
        d.insert(Key::of(PingKind::Delivered, &nid(i)), 1_800_000_000);
    }
    let heap = d.heap_bytes();
    let rss = resident().saturating_sub(before);
    let line = format!(
        "    {n:>10} notifications: {:>7.1} MB heap ({:.1} bytes per pair), resident +{:.1} MB ({:.1} bytes per pair)\n",
        heap as f64 / 1e6,
        heap as f64 / n as f64,
        rss as f64 / 1e6,
        rss as f64 / n as f64
    );
    drop(d);
    line
}

/// Writes the state of `n` notifications into a fresh schema's
/// `dedup_log` (rows of 10 000 keys over `partitions` partitions, as the
/// live processor writes them), then times loading it; drops the schema.
pub async fn load_line(
    database_url: &str,
    schema: &str,
    n: usize,
    partitions: i32,
) -> Result<String, AggregateError> {
    let mut client = store::connect(database_url).await?;
    store::migrate(&mut client, schema).await?;
    let per_row = 10_000usize;
    let rows = n.div_ceil(per_row);
    let now_ms = pushflow_schemas::now_millis();
    let started = Instant::now();
    let mut i = 0usize;
    let mut chunk: Vec<(i32, i64, Vec<u8>, Vec<u8>)> = Vec::new();
    for row in 0..rows {
        let partition = (row as i32) % partitions;
        let next_offset = ((row as i64) / partitions as i64 + 1) * per_row as i64;
        let mut keys = Vec::with_capacity(16 * per_row);
        let mut secs = Vec::with_capacity(4 * per_row);
        for _ in 0..per_row.min(n - i) {
            keys.extend_from_slice(&Key::of(PingKind::Delivered, &nid(i)).to_bytes());
            secs.extend_from_slice(&((now_ms / 1000) as u32).to_be_bytes());
            i += 1;
        }
        chunk.push((partition, next_offset, keys, secs));
        if chunk.len() == 50 || row + 1 == rows {
            let t: Vec<&str> = chunk.iter().map(|_| "bench.delivered").collect();
            let p: Vec<i32> = chunk.iter().map(|c| c.0).collect();
            let nx: Vec<i64> = chunk.iter().map(|c| c.1).collect();
            let first: Vec<i64> = chunk.iter().map(|c| c.1 - per_row as i64).collect();
            let rec: Vec<i64> = chunk.iter().map(|_| now_ms).collect();
            let k: Vec<&[u8]> = chunk.iter().map(|c| c.2.as_slice()).collect();
            let sc: Vec<&[u8]> = chunk.iter().map(|c| c.3.as_slice()).collect();
            client
                .execute(
                    &format!("INSERT INTO {schema}.dedup_log SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[])"),
                    &[&t, &p, &first, &nx, &rec, &k, &sc],
                )
                .await
                .map_err(pg("bench: write dedup_log"))?;
            chunk.clear();
        }
    }
    client
        .execute(
            &format!(
                "INSERT INTO {schema}.offsets (topic, partition, next_offset, watermark_ms)
                 SELECT 'bench.delivered', partition, max(next_offset), 0 FROM {schema}.dedup_log GROUP BY partition"
            ),
            &[],
        )
        .await
        .map_err(pg("bench: write offsets"))?;
    let write_secs = started.elapsed().as_secs_f64();
    let parts: Vec<PartitionKey> = (0..partitions)
        .map(|p| PartitionKey::new("bench.delivered", p))
        .collect();
    let horizon = pushflow_runtime::topology::Pings::default()
        .dedup_horizon()
        .as_millis() as i64;
    let started = Instant::now();
    let loaded = changelog::load(&mut client, schema, &parts, horizon).await?;
    let load_secs = started.elapsed().as_secs_f64();
    let keys: usize = loaded.values().map(|l| l.dedup.len()).sum();
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .map_err(pg("bench: drop the load schema"))?;
    Ok(format!(
        "    load {keys} notifications ({rows} rows, {partitions} partitions) from dedup_log: {load_secs:.2} s ({:.0} keys/s; written in {write_secs:.1} s)\n",
        keys as f64 / load_secs.max(1e-9)
    ))
}

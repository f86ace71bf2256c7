//! The sink's [`Handler`]: decode with the writer schema, buffer per
//! (partition, hour bucket, schema id), write Parquet objects, report what
//! is durable. Records whose fields are all primitives are read by
//! [`crate::decode`] straight from their bytes into the column builders;
//! others through apache-avro's generic reader.
//!
//! Exactly-once files, by resuming after what is already written: every
//! file name carries its first and last offset
//! (`<topic>+<partition>+<first>+<last>+s<schema id>.parquet`). Within one
//! (partition, hour, schema) bucket files are written in offset order, so
//! the objects present always hold a prefix of that bucket's records. The
//! first time a bucket is touched after an assignment its folder is listed
//! and the highest last offset of this partition's files is remembered; a
//! replayed record at or below it is skipped (it is already in the lake).
//! So a crash between upload and commit, which replays records with
//! different batching, never writes a record twice, and a file never
//! overlaps another. Objects appear atomically (local: rename; S3: a
//! single PUT or a completed multipart upload), so there are no partial
//! files. We chose this over offset-aligned roll boundaries because it keeps
//! the idle flush (quiet topics land within `flush_idle`) and size-based
//! rolling, which offset blocks cannot, at the cost of one LIST per bucket
//! touched after an assignment.
//!
//! The offset reported durable for a partition is the first offset still
//! buffered (or not yet uploaded), so nothing is committed before its file.
//!
//! Each event once: the listing of an hour also reads back the `event_id`
//! column of the partition's files there; a record whose id the lake
//! already holds (in its hour or the one before) is dropped and counted
//! (`pushflow_lake_duplicates_dropped_total`), see [`super::ids`].

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use pushflow_runtime::codec::{wire, CodecError, SchemaResolver};
use pushflow_runtime::kafka::{DeadLetters, Durable, Handler, PartitionKey, Position, Record};
use pushflow_runtime::RuntimeError;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::config::Settings;
use super::files::{BucketKey, OpenFile, Row, Sealed, Upload, HOUR_MS};
use super::ids::{read_back, EventIds};
use crate::columns::Layout;
use crate::decode::{recycle, Cell, Decoder};
use crate::lake::{bucket_of, partition_dir, table_name, FileName, Lake};
use crate::LakeError;

/// Counters shared with tests and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records handed to the sink.
    pub records_in: AtomicU64,
    /// Rows in uploaded files.
    pub rows_written: AtomicU64,
    /// Files uploaded.
    pub files_written: AtomicU64,
    /// Records sent to the DLQ.
    pub dead_letters: AtomicU64,
    /// Replayed records skipped because a file already holds them.
    pub skipped: AtomicU64,
    /// Records dropped because the lake already holds their `event_id`
    /// (a producer sent the event twice).
    pub duplicates: AtomicU64,
    /// Files uploaded as multipart uploads (also in `files_written`).
    pub multipart_files: AtomicU64,
    /// Upload attempts that failed (the store was unreachable or failing;
    /// the file stays sealed and is uploaded again later).
    pub upload_failures: AtomicU64,
}

struct WriterSchema {
    reader: GenericDatumReader<'static>,
    /// The fast path, when every field is a primitive.
    decoder: Option<Decoder>,
    layout: Arc<Layout>,
}

#[derive(Default)]
struct PartState {
    /// Next offset to accept (records below were handled).
    seen: i64,
    open: HashMap<BucketKey, OpenFile>,
    /// Highest last offset in the lake per bucket (after listing).
    written: HashMap<BucketKey, i64>,
    listed: HashSet<i64>,
    /// The event ids in the lake (or buffered for it) per listed hour.
    ids: EventIds,
    /// When each listed hour was last written or checked.
    touched: HashMap<i64, Instant>,
}

/// A listed hour untouched this long, with nothing of it buffered, is
/// forgotten (its offsets and ids are read again if it comes back).
const HOUR_IDLE: std::time::Duration = std::time::Duration::from_secs(600);

impl PartState {
    /// Forgets the hours untouched for [`HOUR_IDLE`] of which nothing is
    /// buffered (`busy`: hours with an open or sealed, unwritten file).
    fn forget_idle_hours(&mut self, busy: &HashSet<i64>) {
        let idle: Vec<i64> = self
            .touched
            .iter()
            .filter(|(h, at)| at.elapsed() >= HOUR_IDLE && !busy.contains(*h))
            .map(|(h, _)| *h)
            .collect();
        for h in idle {
            self.touched.remove(&h);
            self.listed.remove(&h);
            self.written.retain(|k, _| k.0 != h);
            self.ids.forget(h);
        }
    }
}

/// The Parquet sink's consumer-loop handler.
pub struct SinkHandler {
    component: String,
    lake: Lake,
    settings: Settings,
    resolver: Arc<dyn SchemaResolver>,
    schemas: HashMap<u32, Arc<WriterSchema>>,
    dlq: Option<DeadLetters>,
    parts: HashMap<(String, i32), PartState>,
    sealed: VecDeque<Sealed>,
    stats: Arc<Stats>,
    /// The decoder's cell buffer, kept between records.
    cells: Vec<Cell<'static>>,
    /// The time the current batch or tick started.
    now: Instant,
}

impl SinkHandler {
    /// A handler writing to `lake`; bad records go to `dlq` (without one
    /// they fail the batch, for unit tests).
    pub fn new(
        component: &str,
        lake: Lake,
        settings: Settings,
        resolver: Arc<dyn SchemaResolver>,
        dlq: Option<DeadLetters>,
    ) -> SinkHandler {
        SinkHandler {
            component: component.to_string(),
            lake,
            settings,
            resolver,
            schemas: HashMap::new(),
            dlq,
            parts: HashMap::new(),
            sealed: VecDeque::new(),
            stats: Arc::new(Stats::default()),
            cells: Vec::new(),
            now: Instant::now(),
        }
    }

    /// The shared counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Counts into `stats` from now on (a component's counters).
    pub fn share_stats(&mut self, stats: Arc<Stats>) {
        self.stats = stats;
    }

    async fn writer_schema(&mut self, id: u32) -> Result<Arc<WriterSchema>, CodecError> {
        if let Some(w) = self.schemas.get(&id) {
            return Ok(w.clone());
        }
        let text = self.resolver.schema_text(id).await?;
        let bad = |e: String| CodecError::BadSchema { id, message: e };
        let schema = Schema::parse_str(&text).map_err(|e| bad(e.to_string()))?;
        let layout = Layout::of(&schema).map_err(|e| bad(e.to_string()))?;
        // Leaked once per schema id (a handful per topic over a process's
        // life) so the reader can borrow it for 'static.
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let reader = GenericDatumReader::builder(schema)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let w = Arc::new(WriterSchema {
            reader,
            decoder: Decoder::of(schema),
            layout: Arc::new(layout),
        });
        self.schemas.insert(id, w.clone());
        Ok(w)
    }

    async fn dead_letter(&mut self, r: &Record, reason: &str) -> Result<(), LakeError> {
        let Some(dlq) = &self.dlq else {
            return Err(LakeError::Schema(format!(
                "bad record and no DLQ: {reason}"
            )));
        };
        dlq.send(r, reason).await?;
        self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Highest last offset of this partition's files in the bucket's
    /// folder, and the event ids they hold.
    async fn load_written(
        &mut self,
        topic: &str,
        partition: i32,
        hour_index: i64,
    ) -> Result<(), LakeError> {
        let (dt, hour) = bucket_of(hour_index * HOUR_MS);
        let dir = partition_dir(&table_name(topic), &dt, hour);
        let found: Vec<(FileName, Path, u64)> = self
            .lake
            .store
            .list(Some(&dir))
            .try_filter_map(|m| async move {
                Ok(m.location
                    .filename()
                    .and_then(FileName::parse)
                    .filter(|f| f.topic == topic && f.partition == partition)
                    .map(|f| (f, m.location.clone(), m.size)))
            })
            .try_collect()
            .await?;
        let files = found
            .iter()
            .map(|(_, p, size)| (p.clone(), *size))
            .collect();
        let ids = read_back(&self.lake.store, files).await?;
        let st = self
            .parts
            .entry((topic.to_string(), partition))
            .or_default();
        for (f, _, _) in found {
            let e = st
                .written
                .entry((hour_index, f.schema_id))
                .or_insert(f.last);
            *e = (*e).max(f.last);
        }
        let n = ids.len();
        st.ids.extend(hour_index, ids);
        st.listed.insert(hour_index);
        tracing::debug!(component = %self.component, topic, partition, dt, hour, written = ?st.written, ids = n, "bucket listed");
        Ok(())
    }

    fn seal(&mut self, f: OpenFile) -> Result<(), LakeError> {
        self.sealed.push_back(f.seal()?);
        Ok(())
    }

    /// Uploads sealed files in order; stops at the first failure (kept for
    /// the next attempt).
    async fn upload_sealed(&mut self) -> Result<(), LakeError> {
        while let Some(s) = self.sealed.front() {
            let started = Instant::now();
            let how = match s.upload(self.lake.store.as_ref(), &self.settings).await {
                Ok(how) => how,
                Err(e) => {
                    self.stats.upload_failures.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("pushflow_lake_upload_failures_total", "component" => self.component.clone())
                        .increment(1);
                    return Err(e);
                }
            };
            let s = self.sealed.pop_front().expect("front exists");
            let parts = match how {
                Upload::Put => 1,
                Upload::Multipart(n) => {
                    self.stats.multipart_files.fetch_add(1, Ordering::Relaxed);
                    n
                }
            };
            tracing::debug!(component = %self.component, path = %s.path, rows = s.rows, bytes = s.bytes.len(), parts, ms = started.elapsed().as_millis() as u64, "file written");
            self.stats.rows_written.fetch_add(s.rows, Ordering::Relaxed);
            self.stats.files_written.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("pushflow_records_out_total", "component" => self.component.clone())
                .increment(s.rows);
            if let Some(st) = self
                .parts
                .get_mut(&(s.name.topic.clone(), s.name.partition))
            {
                let e = st.written.entry(s.key).or_insert(s.name.last);
                *e = (*e).max(s.name.last);
            }
        }
        Ok(())
    }

    /// Seals the files that received nothing for `flush_idle` (all when `all`).
    fn seal_idle(&mut self, all: bool) -> Result<(), LakeError> {
        let idle = self.settings.flush_idle;
        let mut out = Vec::new();
        for st in self.parts.values_mut() {
            let keys: Vec<BucketKey> = st
                .open
                .iter()
                .filter(|(_, f)| all || f.last_append.elapsed() >= idle)
                .map(|(k, _)| *k)
                .collect();
            out.extend(keys.into_iter().filter_map(|k| st.open.remove(&k)));
        }
        out.sort_by_key(|f| (f.partition, f.first));
        for f in out {
            self.seal(f)?;
        }
        Ok(())
    }

    /// Forgets idle hours of every partition (bounds the memory of the
    /// event-id index; see [`PartState::forget_idle_hours`]).
    fn forget_idle_hours(&mut self) {
        for ((topic, partition), st) in self.parts.iter_mut() {
            let busy: HashSet<i64> = st
                .open
                .keys()
                .map(|k| k.0)
                .chain(
                    self.sealed
                        .iter()
                        .filter(|s| s.name.partition == *partition && s.name.topic == *topic)
                        .map(|s| s.key.0),
                )
                .collect();
            st.forget_idle_hours(&busy);
        }
        let held: usize = self.parts.values().map(|st| st.ids.len()).sum();
        metrics::gauge!("pushflow_lake_event_ids_held", "component" => self.component.clone())
            .set(held as f64);
    }

    /// The durable position of every partition seen.
    fn positions(&self) -> Durable {
        let positions = self
            .parts
            .iter()
            .map(|((topic, partition), st)| {
                let open = st.open.values().map(|f| f.first);
                let sealed = self
                    .sealed
                    .iter()
                    .filter(|s| s.name.partition == *partition && s.name.topic == *topic)
                    .map(|s| s.name.first);
                Position {
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset: open.chain(sealed).min().unwrap_or(st.seen).min(st.seen),
                }
            })
            .collect();
        Durable::UpTo(positions)
    }

    async fn process_record(&mut self, r: &Record) -> Result<(), LakeError> {
        let key = (r.topic.clone(), r.partition);
        let component = &self.component;
        let seen = self.parts.entry(key.clone()).or_insert_with(|| {
            tracing::info!(component = %component, topic = %r.topic, partition = r.partition, offset = r.offset, "partition starts");
            PartState {
                seen: r.offset,
                ..PartState::default()
            }
        });
        if r.offset < seen.seen {
            return Ok(()); // handed again after a failed attempt
        }
        let bytes = r.payload.as_deref().unwrap_or_default();
        let found = match wire::split(bytes) {
            Ok((id, body)) => self.writer_schema(id).await.map(|w| (id, w, body)),
            Err(e) => Err(e),
        };
        let (id, w, mut body) = match found {
            Ok(f) => f,
            Err(e) if e.is_retryable() => return Err(LakeError::Runtime(e.into())),
            Err(e) => {
                return self
                    .skip(r, &format!("cannot decode for the lake: {e}"))
                    .await
            }
        };
        // Primitive records: straight from the bytes into borrowed cells;
        // the others through apache-avro's generic reader.
        let mut cells = recycle(std::mem::take(&mut self.cells));
        let mut value = Value::Null;
        let read = match &w.decoder {
            Some(d) => d.read(&mut body, &mut cells),
            None => match pushflow_runtime::codec::read_datum(&w.reader, &mut body) {
                Ok(v) => {
                    value = v;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
        };
        let read = read.and_then(|()| match body.len() {
            0 => Ok(()),
            n => Err(format!("{n} bytes left over after the record")),
        });
        let result = match read {
            Ok(()) => {
                let row = match &w.decoder {
                    Some(d) => Row::Cells(d, &cells),
                    None => Row::Value(&value),
                };
                self.place(r, id, &w, &row).await
            }
            Err(message) => {
                let e = CodecError::BadBody {
                    topic: r.topic.clone(),
                    id,
                    message,
                };
                self.skip(r, &format!("cannot decode for the lake: {e}"))
                    .await
            }
        };
        self.cells = recycle(cells);
        result
    }

    /// Sends `r` to the DLQ and goes past it.
    async fn skip(&mut self, r: &Record, reason: &str) -> Result<(), LakeError> {
        self.dead_letter(r, reason).await?;
        if let Some(st) = self.parts.get_mut(&(r.topic.clone(), r.partition)) {
            st.seen = r.offset + 1;
        }
        Ok(())
    }

    /// Puts a decoded record into its hour's file (or skips it when the
    /// lake already holds it).
    async fn place(
        &mut self,
        r: &Record,
        id: u32,
        w: &WriterSchema,
        row: &Row<'_, '_>,
    ) -> Result<(), LakeError> {
        let key = (r.topic.clone(), r.partition);
        let Some(event_ms) = row.event_time(&w.layout) else {
            let why = "no occurred_at timestamp-millis field: the lake partitions by event time; add it to the schema";
            return self.skip(r, why).await;
        };
        let hour_index = event_ms.div_euclid(HOUR_MS);
        // This hour and the one before: a copy of an event may come an
        // hour later in event time (see `ids`).
        for h in [hour_index - 1, hour_index] {
            if !self.parts[&key].listed.contains(&h) {
                self.load_written(&r.topic, r.partition, h).await?;
            }
        }
        let bkey: BucketKey = (hour_index, id);
        let event_key = row.event_key(&w.layout);
        let st = self.parts.get_mut(&key).expect("inserted");
        let now = self.now;
        st.touched.insert(hour_index - 1, now);
        st.touched.insert(hour_index, now);
        if st.written.get(&bkey).is_some_and(|last| r.offset <= *last) {
            st.seen = r.offset + 1;
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if event_key.is_some_and(|k| st.ids.holds(hour_index, k)) {
            st.seen = r.offset + 1;
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("pushflow_lake_duplicates_dropped_total", "component" => self.component.clone())
                .increment(1);
            tracing::debug!(component = %self.component, topic = %r.topic, partition = r.partition, offset = r.offset, "dropped a second copy of an event");
            return Ok(());
        }
        let s = &self.settings;
        let roll = st.open.get(&bkey).is_some_and(|f| {
            f.rows >= s.max_records
                || f.size() >= s.file_size
                || event_ms.saturating_sub(f.first_event_ms) >= s.roll_interval.as_millis() as i64
        });
        if roll {
            let f = st.open.remove(&bkey).expect("checked");
            self.seal(f)?;
        }
        let st = self.parts.get_mut(&key).expect("inserted");
        if !st.open.contains_key(&bkey) {
            let f = OpenFile::new(&self.settings, r, bkey, w.layout.clone(), event_ms)?;
            self.parts
                .get_mut(&key)
                .expect("inserted")
                .open
                .insert(bkey, f);
        }
        let st = self.parts.get_mut(&key).expect("inserted");
        let f = st.open.get_mut(&bkey).expect("inserted");
        match f.append(row, r.offset) {
            Ok(()) => {
                if let Some(k) = event_key {
                    st.ids.insert(hour_index, k);
                }
            }
            Err(e) if matches!(e, LakeError::Schema(_)) => {
                self.dead_letter(r, &format!("does not fit the Parquet columns: {e}"))
                    .await?;
            }
            Err(e) => return Err(e),
        }
        self.parts.get_mut(&key).expect("inserted").seen = r.offset + 1;
        Ok(())
    }

    fn err(&self, e: LakeError) -> RuntimeError {
        if e.is_retryable() {
            tracing::warn!(component = %self.component, error = %e, "lake write failed; will retry");
        }
        e.into_runtime(&self.component)
    }
}

#[async_trait]
impl Handler for SinkHandler {
    async fn assigned(
        &mut self,
        partitions: &[PartitionKey],
    ) -> Result<Vec<Position>, RuntimeError> {
        for p in partitions {
            self.parts.remove(&(p.topic.clone(), p.partition));
        }
        Ok(Vec::new())
    }

    async fn revoked(&mut self, partitions: &[PartitionKey]) -> Result<(), RuntimeError> {
        for p in partitions {
            self.parts.remove(&(p.topic.clone(), p.partition));
        }
        self.sealed.retain(|s| {
            !partitions
                .iter()
                .any(|p| p.topic == s.name.topic && p.partition == s.name.partition)
        });
        Ok(())
    }

    async fn process(&mut self, batch: &[Record]) -> Result<Durable, RuntimeError> {
        self.now = Instant::now();
        self.stats
            .records_in
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.upload_sealed().await.map_err(|e| self.err(e))?;
        for r in batch {
            self.process_record(r).await.map_err(|e| self.err(e))?;
        }
        self.upload_sealed().await.map_err(|e| self.err(e))?;
        Ok(self.positions())
    }

    async fn tick(&mut self) -> Result<Durable, RuntimeError> {
        // The loop does not retry tick errors: a failing store is logged
        // here and retried at the next tick; nothing unwritten is reported.
        self.now = Instant::now();
        self.forget_idle_hours();
        let result = match self.seal_idle(false) {
            Ok(()) => self.upload_sealed().await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            if !e.is_retryable() {
                return Err(self.err(e));
            }
            let _ = self.err(e);
        }
        Ok(self.positions())
    }

    async fn close(&mut self) -> Result<Durable, RuntimeError> {
        let result = match self.seal_idle(true) {
            Ok(()) => self.upload_sealed().await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(component = %self.component, error = %e, "could not write the last files at shutdown; their records will be read again");
        }
        Ok(self.positions())
    }
}

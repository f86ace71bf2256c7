//! One Parquet file of the sink: built in memory (typed builders → Parquet
//! writer), sealed with its offsets in its name and key-value metadata,
//! then uploaded in one atomic step (a PUT, or a multipart upload that only
//! appears when completed).

use apache_avro::types::Value;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, UploadPart};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use pushflow_runtime::kafka::Record;
use std::sync::Arc;
use std::time::Instant;

use super::config::Settings;
use crate::columns::{Batcher, Layout};
use crate::decode::{Cell, Decoder};
use crate::lake::{bucket_of, partition_dir, table_name, FileName};
use crate::LakeError;

/// (hours since the epoch of the event time, writer schema id).
pub(super) type BucketKey = (i64, u32);

/// Milliseconds per hour bucket.
pub(super) const HOUR_MS: i64 = 3_600_000;
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Rows buffered in the typed builders before they go to the Parquet writer.
const ARROW_BATCH: usize = 8192;

/// A decoded record: cells from the fast decoder, or a generic value.
pub(super) enum Row<'r, 'a> {
    /// Read by this decoder.
    Cells(&'r Decoder, &'r [Cell<'a>]),
    /// Read by apache-avro's generic reader.
    Value(&'r Value),
}

impl Row<'_, '_> {
    /// The record's `occurred_at` (timestamp-millis or long), if it has one.
    pub(super) fn event_time(&self, layout: &Layout) -> Option<i64> {
        match self {
            Row::Cells(d, cells) => d.event_time(cells),
            Row::Value(v) => match layout.event_time.and_then(|i| record_field(v, i)) {
                Some(Value::TimestampMillis(t) | Value::Long(t)) => Some(*t),
                _ => None,
            },
        }
    }
}

impl Row<'_, '_> {
    /// The key of the record's `event_id` (see [`super::ids`]), if it has one.
    pub(super) fn event_key(&self, layout: &Layout) -> Option<u128> {
        let i = layout.event_id?;
        match self {
            Row::Cells(_, cells) => match cells.get(i)? {
                Cell::Uuid(u) => Some(u.as_u128()),
                Cell::Str(s) => Some(super::ids::key_of(s)),
                _ => None,
            },
            Row::Value(v) => match record_field(v, i)? {
                Value::Uuid(u) => Some(u.as_u128()),
                Value::String(s) => Some(super::ids::key_of(s)),
                _ => None,
            },
        }
    }
}

fn record_field(v: &Value, i: usize) -> Option<&Value> {
    match v {
        Value::Record(fields) => fields.get(i).map(|(_, v)| match v {
            Value::Union(_, inner) => inner.as_ref(),
            other => other,
        }),
        _ => None,
    }
}

/// A file being filled.
pub(super) struct OpenFile {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) key: BucketKey,
    pub(super) first: i64,
    pub(super) last: i64,
    pub(super) first_event_ms: i64,
    pub(super) rows: u64,
    pub(super) last_append: Instant,
    batcher: Batcher,
    writer: ArrowWriter<Vec<u8>>,
}

impl OpenFile {
    /// An empty file whose first record will be `r`.
    pub(super) fn new(
        settings: &Settings,
        r: &Record,
        key: BucketKey,
        layout: Arc<Layout>,
        event_ms: i64,
    ) -> Result<OpenFile, LakeError> {
        let props = WriterProperties::builder()
            .set_compression(settings.compression)
            .set_max_row_group_row_count(Some(settings.row_group_size))
            .set_created_by("pushflow s3-parquet".to_string())
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), layout.schema.clone(), Some(props))?;
        Ok(OpenFile {
            topic: r.topic.clone(),
            partition: r.partition,
            key,
            first: r.offset,
            last: r.offset,
            first_event_ms: event_ms,
            rows: 0,
            last_append: Instant::now(),
            batcher: Batcher::new(layout),
            writer,
        })
    }

    /// Encoded size so far (bytes written plus the row group in progress).
    pub(super) fn size(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    /// Appends the record at `offset`; on error nothing is appended.
    pub(super) fn append(&mut self, row: &Row<'_, '_>, offset: i64) -> Result<(), LakeError> {
        match row {
            Row::Cells(_, cells) => self.batcher.append_cells(cells)?,
            Row::Value(v) => self.batcher.append(v)?,
        }
        self.rows += 1;
        self.last = offset;
        self.last_append = Instant::now();
        if self.batcher.rows() >= ARROW_BATCH {
            self.drain()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), LakeError> {
        if self.batcher.rows() > 0 {
            let batch = self.batcher.finish()?;
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    /// Finishes the Parquet bytes (footer with the offsets as key-value
    /// metadata) and names the object.
    pub(super) fn seal(mut self) -> Result<Sealed, LakeError> {
        self.drain()?;
        let name = FileName {
            topic: self.topic.clone(),
            partition: self.partition,
            first: self.first,
            last: self.last,
            schema_id: self.key.1,
        };
        for (k, v) in [
            ("pushflow.topic", self.topic.clone()),
            ("pushflow.partition", self.partition.to_string()),
            ("pushflow.first_offset", self.first.to_string()),
            ("pushflow.last_offset", self.last.to_string()),
            ("pushflow.schema_id", self.key.1.to_string()),
        ] {
            self.writer
                .append_key_value_metadata(KeyValue::new(k.to_string(), v));
        }
        let bytes = self.writer.into_inner()?;
        let (dt, hour) = bucket_of(self.key.0 * HOUR_MS);
        let path = partition_dir(&table_name(&self.topic), &dt, hour).join(name.render());
        Ok(Sealed {
            name,
            path,
            key: self.key,
            rows: self.rows,
            bytes: Bytes::from(bytes),
        })
    }
}

/// A finished file waiting for its upload.
pub(super) struct Sealed {
    pub(super) name: FileName,
    pub(super) path: Path,
    pub(super) key: BucketKey,
    pub(super) rows: u64,
    /// The whole file (cheap to clone: every attempt shares it).
    pub(super) bytes: Bytes,
}

/// How a file went up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Upload {
    /// One PUT.
    Put,
    /// A multipart upload of this many parts.
    Multipart(usize),
}

impl Sealed {
    /// Writes the object; it appears whole or not at all: one PUT up to
    /// `multipart_threshold` bytes, above it a multipart upload of
    /// `part_size` parts (slices of the sealed bytes, no copy), which the
    /// store only shows once completed. A failed multipart upload is
    /// aborted (best effort) so that its parts do not linger; the next
    /// attempt starts a new one under the same name.
    pub(super) async fn upload(
        &self,
        store: &dyn ObjectStore,
        settings: &Settings,
    ) -> Result<Upload, LakeError> {
        let len = self.bytes.len();
        if len as u64 <= settings.multipart_threshold {
            store
                .put(&self.path, PutPayload::from(self.bytes.clone()))
                .await?;
            return Ok(Upload::Put);
        }
        let part_size = usize::try_from(settings.part_size).unwrap_or(usize::MAX);
        let mut upload = store.put_multipart(&self.path).await?;
        // Part numbers follow the order of `put_part` calls; the requests
        // themselves run when polled, a few at a time.
        let parts: Vec<UploadPart> = (0..len)
            .step_by(part_size)
            .map(|start| {
                let end = start.saturating_add(part_size).min(len);
                upload.put_part(PutPayload::from(self.bytes.slice(start..end)))
            })
            .collect();
        let n = parts.len();
        let sent = futures::stream::iter(parts)
            .buffer_unordered(PARTS_IN_FLIGHT)
            .try_collect::<()>()
            .await;
        let result = match sent {
            Ok(()) => upload.complete().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            if let Err(abort) = upload.abort().await {
                tracing::debug!(path = %self.path, error = %abort, "could not abort the failed multipart upload");
            }
            return Err(e.into());
        }
        Ok(Upload::Multipart(n))
    }
}

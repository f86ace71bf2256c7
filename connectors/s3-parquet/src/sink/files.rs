//! One Parquet file of the sink: built in memory (typed builders → Parquet
//! writer), sealed with its offsets in its name and key-value metadata,
//! then uploaded in one atomic step (a PUT, or a multipart upload that only
//! appears when completed).

use apache_avro::types::Value;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use pushflow_runtime::kafka::Record;
use std::sync::Arc;
use std::time::Instant;

use super::config::Settings;
use crate::columns::{Batcher, Layout};
use crate::lake::{bucket_of, partition_dir, table_name, FileName};
use crate::LakeError;

/// (hours since the epoch of the event time, writer schema id).
pub(super) type BucketKey = (i64, u32);

/// Milliseconds per hour bucket.
pub(super) const HOUR_MS: i64 = 3_600_000;
/// Objects above this size go up as multipart uploads.
const MULTIPART_ABOVE: usize = 16 * 1024 * 1024;
/// Part size of multipart uploads.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Rows buffered in the typed builders before they go to the Parquet writer.
const ARROW_BATCH: usize = 8192;

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
    pub(super) fn append(&mut self, value: &Value, offset: i64) -> Result<(), LakeError> {
        self.batcher.append(value)?;
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
            bytes,
        })
    }
}

/// A finished file waiting for its upload.
pub(super) struct Sealed {
    pub(super) name: FileName,
    pub(super) path: Path,
    pub(super) key: BucketKey,
    pub(super) rows: u64,
    pub(super) bytes: Vec<u8>,
}

impl Sealed {
    /// Writes the object; it appears whole or not at all.
    pub(super) async fn upload(&self, store: &dyn ObjectStore) -> Result<(), LakeError> {
        if self.bytes.len() > MULTIPART_ABOVE {
            let upload = store.put_multipart(&self.path).await?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            w.write(&self.bytes);
            w.finish().await?;
        } else {
            let payload = PutPayload::from(bytes::Bytes::from(self.bytes.clone()));
            store.put(&self.path, payload).await?;
        }
        Ok(())
    }
}

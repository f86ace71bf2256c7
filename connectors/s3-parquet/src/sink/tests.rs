//! The handler against an in-memory object store that fails on demand.

use super::config::{Settings, SinkConfig};
use super::writer::SinkHandler;
use crate::lake::{FileName, Lake};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{LogicalType, TimeUnit, Type};
use pushflow_runtime::codec::{Codec, InMemoryResolver};
use pushflow_runtime::kafka::{Durable, Handler, Record};
use pushflow_schemas::NotificationDelivered;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Fails the next `fail` puts with a retryable error, and the next
/// `parts.fail` parts of multipart uploads.
#[derive(Debug, Default)]
struct Flaky {
    inner: InMemory,
    fail: AtomicU32,
    parts: Arc<PartFaults>,
}

/// What happened to multipart uploads.
#[derive(Debug, Default)]
struct PartFaults {
    /// Parts still to fail.
    fail: AtomicU32,
    /// Parts stored.
    stored: AtomicU32,
    /// Uploads aborted.
    aborted: AtomicU32,
    /// Uploads completed.
    completed: AtomicU32,
}

#[derive(Debug)]
struct FlakyUpload {
    inner: Box<dyn MultipartUpload>,
    faults: Arc<PartFaults>,
}

#[async_trait]
impl MultipartUpload for FlakyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let failing = self
            .faults
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Box::pin(async {
                Err(object_store::Error::Generic {
                    store: "flaky",
                    source: "connection reset".into(),
                })
            });
        }
        let faults = self.faults.clone();
        let part = self.inner.put_part(data);
        Box::pin(async move {
            part.await?;
            faults.stored.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let r = self.inner.complete().await?;
        self.faults.completed.fetch_add(1, Ordering::SeqCst);
        Ok(r)
    }
    async fn abort(&mut self) -> object_store::Result<()> {
        self.faults.aborted.fetch_add(1, Ordering::SeqCst);
        self.inner.abort().await
    }
}

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flaky")
    }
}

#[async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.fail.load(Ordering::SeqCst) > 0 {
            self.fail.fetch_sub(1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "connection refused".into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FlakyUpload {
            inner,
            faults: self.parts.clone(),
        }))
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

const T0: i64 = 1_767_229_000_000; // 2026-01-01T00:56:40Z

async fn records(n: i64) -> (Arc<InMemoryResolver>, Vec<Record>) {
    let resolver = Arc::new(InMemoryResolver::new());
    let codec = Codec::new(resolver.clone());
    let mut out = Vec::new();
    for i in 0..n {
        let e = NotificationDelivered {
            event_id: format!("00000000-0000-4000-8000-{i:012}"),
            occurred_at: T0 + i * 60_000, // one a minute: crosses 01:00
            store_id: "s".into(),
            notification_id: format!("n-{i}"),
            campaign_id: "c".into(),
        };
        out.push(Record {
            topic: "notification.delivered".into(),
            partition: 0,
            offset: 100 + i,
            key: None,
            payload: Some(codec.encode(&e).await.unwrap()),
            timestamp_ms: None,
            headers: vec![],
        });
    }
    (resolver, out)
}

/// The values of string column `i`.
fn strings(batch: &arrow::record_batch::RecordBatch, i: usize) -> Vec<String> {
    let c = batch
        .column(i)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    c.iter().map(|s| s.unwrap().to_string()).collect()
}

fn handler(store: Arc<dyn ObjectStore>, resolver: Arc<InMemoryResolver>) -> SinkHandler {
    handler_with(store, resolver, |_| {})
}

fn handler_with(
    store: Arc<dyn ObjectStore>,
    resolver: Arc<InMemoryResolver>,
    tune: impl FnOnce(&mut Settings),
) -> SinkHandler {
    let lake = Lake {
        store: store.clone(),
        root_store: store,
        root_url: url::Url::parse("memory:///").unwrap(),
        url: url::Url::parse("memory:///").unwrap(),
    };
    let config = SinkConfig {
        max_records: 3,
        flush_idle: "0s".into(),
        ..SinkConfig::default()
    };
    let mut settings = config.validate().unwrap();
    tune(&mut settings);
    SinkHandler::new("lake", lake, settings, resolver, None)
}

/// (file names, event ids in all files).
async fn read_lake(store: &dyn ObjectStore) -> (Vec<FileName>, Vec<String>) {
    let metas: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
    let (mut names, mut ids) = (Vec::new(), Vec::new());
    for m in metas {
        names.push(FileName::parse(m.location.filename().unwrap()).unwrap());
        let bytes: Bytes = store.get(&m.location).await.unwrap().bytes().await.unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let col = b.metadata().file_metadata().schema_descr().column(1);
        assert_eq!(col.physical_type(), Type::INT64);
        assert_eq!(
            col.logical_type_ref(),
            Some(&LogicalType::timestamp(true, TimeUnit::MILLIS))
        );
        for batch in b.build().unwrap() {
            ids.extend(strings(&batch.unwrap(), 0));
        }
    }
    (names, ids)
}

#[tokio::test]
async fn retries_a_failing_store_then_skips_a_replay() {
    let (resolver, batch) = records(10).await;
    let mem = Arc::new(Flaky {
        fail: AtomicU32::new(2),
        ..Flaky::default()
    });
    let mut h = handler(mem.clone(), resolver.clone());
    // The consumer loop hands the same batch again after a retryable error.
    let mut attempts = 0;
    let durable = loop {
        attempts += 1;
        match h.process(&batch).await {
            Ok(d) => break d,
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    };
    assert!(
        attempts >= 2,
        "the store failed, so process must have failed first"
    );
    // Files of 3 records roll; the last open file holds back the commit.
    let Durable::UpTo(p) = durable else {
        panic!("{durable:?}")
    };
    assert!(p[0].next_offset < 110, "{p:?}");
    let Durable::UpTo(p) = h.close().await.unwrap() else {
        panic!()
    };
    assert_eq!(p[0].next_offset, 110);
    let (names, mut ids) = read_lake(mem.as_ref()).await;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "every record exactly once");
    // Records of 00:56..00:59 and 01:00..01:05 are in their own hours.
    assert!(names.iter().all(|n| n.first >= 100 && n.last <= 109));

    // A crash before the commit: a new handler replays from offset 100,
    // in other batches; nothing is written twice.
    let mut again = handler(mem.clone(), resolver);
    for chunk in batch.chunks(4) {
        again.process(chunk).await.unwrap();
    }
    let Durable::UpTo(p) = again.close().await.unwrap() else {
        panic!()
    };
    assert_eq!(p[0].next_offset, 110);
    assert_eq!(again.stats().skipped.load(Ordering::Relaxed), 10);
    let (names2, ids2) = read_lake(mem.as_ref()).await;
    assert_eq!(names2.len(), names.len());
    assert_eq!(ids2.len(), 10);
}

#[tokio::test]
async fn a_bad_record_without_a_dlq_fails_for_good() {
    let (resolver, mut batch) = records(1).await;
    batch[0].payload = Some(b"{\"json\": true}".to_vec());
    let mut h = handler(Arc::new(InMemory::new()), resolver);
    let e = h.process(&batch).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("wrong magic byte"), "{e}");
}

#[tokio::test]
async fn uploads_large_files_in_parts_and_aborts_a_failed_upload() {
    let (resolver, batch) = records(10).await;
    let mem = Arc::new(Flaky::default());
    mem.parts.fail.store(1, Ordering::SeqCst);
    // Tiny parts (S3 wants 5 MiB; the in-memory store takes any size):
    // every file is above the threshold and goes up in several parts.
    let mut h = handler_with(mem.clone(), resolver, |s| {
        s.multipart_threshold = 256;
        s.part_size = 512;
    });
    let mut attempts = 0;
    loop {
        attempts += 1;
        match h.process(&batch).await {
            Ok(_) => break,
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
    assert_eq!(attempts, 2, "one failed part fails the first attempt");
    h.close().await.unwrap();
    let faults = &mem.parts;
    assert_eq!(
        faults.aborted.load(Ordering::SeqCst),
        1,
        "the failed upload is aborted"
    );
    let stats = h.stats();
    let files = stats.files_written.load(Ordering::Relaxed);
    assert!(files >= 3, "{files} files");
    assert_eq!(stats.multipart_files.load(Ordering::Relaxed), files);
    assert_eq!(stats.upload_failures.load(Ordering::Relaxed), 1);
    assert_eq!(faults.completed.load(Ordering::SeqCst) as u64, files);
    assert!(
        faults.stored.load(Ordering::SeqCst) as u64 >= 2 * files,
        "several parts per file"
    );
    // Every file reads back whole; every record is there once.
    let (names, mut ids) = read_lake(mem.as_ref()).await;
    assert_eq!(names.len() as u64, files);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10);
}

#[tokio::test]
async fn writes_records_with_nested_fields_through_the_generic_reader() {
    // An array field: no fast decoder, apache-avro's reader, a JSON column.
    let schema_text = r#"{"type": "record", "name": "Batch", "fields": [
        {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "ids", "type": {"type": "array", "items": "string"}}
    ]}"#;
    let schema = apache_avro::Schema::parse_str(schema_text).unwrap();
    assert!(crate::decode::Decoder::of(&schema).is_none());
    let resolver = Arc::new(InMemoryResolver::new());
    resolver.insert(77, schema_text);
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap();
    let batch: Vec<Record> = (0..4i64)
        .map(|i| {
            use apache_avro::types::Value;
            let v = Value::Record(vec![
                (
                    "event_id".into(),
                    Value::Uuid(apache_avro::Uuid::from_u128(i as u128)),
                ),
                ("occurred_at".into(), Value::TimestampMillis(T0 + i)),
                (
                    "ids".into(),
                    Value::Array(vec![
                        Value::String(format!("s{i}")),
                        Value::String("t".into()),
                    ]),
                ),
            ]);
            let body = writer.write_value_to_vec(v).unwrap();
            Record {
                topic: "dispatch.batch".into(),
                partition: 0,
                offset: i,
                key: None,
                payload: Some(pushflow_runtime::codec::wire::frame(77, &body)),
                timestamp_ms: None,
                headers: vec![],
            }
        })
        .collect();
    let mem = Arc::new(InMemory::new());
    let mut h = handler(mem.clone(), resolver);
    h.process(&batch).await.unwrap();
    h.close().await.unwrap();
    assert_eq!(h.stats().rows_written.load(Ordering::Relaxed), 4);
    let metas: Vec<ObjectMeta> = mem.list(None).try_collect().await.unwrap();
    let mut json = Vec::new();
    for m in metas {
        let bytes: Bytes = mem.get(&m.location).await.unwrap().bytes().await.unwrap();
        for b in ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
        {
            json.extend(strings(&b.unwrap(), 2));
        }
    }
    json.sort();
    assert_eq!(json[0], r#"["s0","t"]"#);
    assert_eq!(json.len(), 4);
}

/// A record of `e` at `offset` on partition 0, encoded like `records`.
async fn record_of(
    resolver: &Arc<InMemoryResolver>,
    e: &NotificationDelivered,
    offset: i64,
) -> Record {
    Record {
        topic: "notification.delivered".into(),
        partition: 0,
        offset,
        key: None,
        payload: Some(Codec::new(resolver.clone()).encode(e).await.unwrap()),
        timestamp_ms: None,
        headers: vec![],
    }
}

fn delivered(i: i64, occurred_at: i64) -> NotificationDelivered {
    NotificationDelivered {
        event_id: format!("00000000-0000-4000-8000-{i:012}"),
        occurred_at,
        store_id: "s".into(),
        notification_id: format!("n-{i}"),
        campaign_id: "c".into(),
    }
}

#[tokio::test]
async fn a_second_copy_of_an_event_is_dropped_also_after_a_restart() {
    let (resolver, mut batch) = records(6).await; // offsets 100..105
                                                  // The producer sends event 1 again (same event time), event 2 again
                                                  // with a later event time in the next hour (ingest filled occurred_at
                                                  // in on the retry), then a new event.
    batch.push(record_of(&resolver, &delivered(1, T0 + 60_000), 106).await);
    batch.push(record_of(&resolver, &delivered(2, T0 + 120_000 + 3_600_000), 107).await);
    batch.push(record_of(&resolver, &delivered(6, T0 + 360_000), 108).await);
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut h = handler(mem.clone(), resolver.clone());
    h.process(&batch[..4]).await.unwrap();
    h.process(&batch[4..]).await.unwrap();
    let Durable::UpTo(p) = h.close().await.unwrap() else {
        panic!()
    };
    assert_eq!(p[0].next_offset, 109);
    assert_eq!(h.stats().duplicates.load(Ordering::Relaxed), 2);
    let (_, ids) = read_lake(mem.as_ref()).await;
    assert_eq!(ids.len(), 7, "{ids:?}");

    // A restart (nothing in memory) and a third copy of event 0: the ids
    // are read back from the lake; the replayed records are skipped by
    // offset (8: every one at or below its hour's last written offset)
    // but for 106, an hour-00 copy past hour 00's last file, which is
    // dropped again by its id, as is the new copy at 109.
    let mut again = handler(mem.clone(), resolver.clone());
    let mut replay = batch.clone();
    replay.push(record_of(&resolver, &delivered(0, T0), 109).await);
    again.process(&replay).await.unwrap();
    again.close().await.unwrap();
    assert_eq!(again.stats().skipped.load(Ordering::Relaxed), 8);
    assert_eq!(again.stats().duplicates.load(Ordering::Relaxed), 2);
    let (_, mut ids) = read_lake(mem.as_ref()).await;
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((n, ids.len()), (7, 7), "each event_id once");
}

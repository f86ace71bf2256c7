//! The handler against an in-memory object store that fails on demand.

use super::config::SinkConfig;
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
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{LogicalType, TimeUnit, Type};
use pushflow_runtime::codec::{Codec, InMemoryResolver};
use pushflow_runtime::kafka::{Durable, Handler, Record};
use pushflow_schemas::NotificationDelivered;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Fails the next `fail` puts with a retryable error.
#[derive(Debug)]
struct Flaky {
    inner: InMemory,
    fail: AtomicU32,
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
        self.inner.put_multipart_opts(location, opts).await
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

fn handler(store: Arc<dyn ObjectStore>, resolver: Arc<InMemoryResolver>) -> SinkHandler {
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
    SinkHandler::new("lake", lake, config.validate().unwrap(), resolver, None)
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
            let batch = batch.unwrap();
            let c = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            ids.extend(c.iter().map(|s| s.unwrap().to_string()));
        }
    }
    (names, ids)
}

#[tokio::test]
async fn retries_a_failing_store_then_skips_a_replay() {
    let (resolver, batch) = records(10).await;
    let mem = Arc::new(Flaky {
        inner: InMemory::new(),
        fail: AtomicU32::new(2),
    });
    let mut h = handler(mem.clone(), resolver.clone());
    // The consumer loop hands the same batch again after a retryable error.
    let mut attempts = 0;
    let durable = loop {
        attempts += 1;
        match h.process(batch.clone()).await {
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
        again.process(chunk.to_vec()).await.unwrap();
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
    let e = h.process(batch).await.unwrap_err();
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("wrong magic byte"), "{e}");
}

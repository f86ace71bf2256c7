//! The lake's event-id index: "the lake holds each `event_id` once, even
//! when a producer sent it twice" (DESIGN.md).
//!
//! A producer that retries (a client re-posting a batch after a 503, with
//! the same `event_id`s) puts a second copy of an event on the topic at a
//! later offset. Both copies carry the same key, so they are in the same
//! partition, and the same event time, or (when ingest filled
//! `occurred_at` in) a later one. The sink keeps, per partition and hour of
//! event time, the ids of the events it has put in the lake, and drops a
//! record whose id is already in its hour or the hour before. So a copy is
//! dropped when its event time lies in the same or the next hour as the
//! first one's: always when the producer sets `occurred_at`, and for
//! retries within an hour when ingest sets it.
//!
//! The index survives a crash because it is the lake: the first time an
//! hour is touched after an assignment, the `event_id` column of that
//! partition's files in the hour's folder is read back (one ranged GET
//! per file, 8 at a time). Ids are kept as 128-bit keys: the UUID itself
//! (no collision possible) or, for an id that is not a UUID, a 128-bit
//! SipHash (two events collide with probability ~2^-128 per pair). Memory:
//! 16 bytes per id plus the hash table's slack (about 20–36 bytes per event
//! of an hour held); an hour's ids are dropped once the partition's
//! newest hour is two hours past it and nothing of it is still buffered.

use arrow::array::{Array, AsArray};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryFutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use crate::LakeError;

/// Files read back at once when an hour is loaded.
const READS_IN_FLIGHT: usize = 8;

/// The event ids of one partition, per hour of event time.
#[derive(Debug, Default)]
pub(super) struct EventIds {
    hours: HashMap<i64, HashSet<u128>>,
}

impl EventIds {
    /// Whether `id` was put in the lake in `hour` or the hour before.
    pub(super) fn holds(&self, hour: i64, id: u128) -> bool {
        [hour, hour - 1]
            .iter()
            .any(|h| self.hours.get(h).is_some_and(|s| s.contains(&id)))
    }

    /// Records that `id` goes to the lake in `hour`.
    pub(super) fn insert(&mut self, hour: i64, id: u128) {
        self.hours.entry(hour).or_default().insert(id);
    }

    /// Adds ids read back from the lake for `hour` (creating the hour even
    /// when there are none).
    pub(super) fn extend(&mut self, hour: i64, ids: impl IntoIterator<Item = u128>) {
        self.hours.entry(hour).or_default().extend(ids);
    }

    /// Forgets `hour`.
    pub(super) fn forget(&mut self, hour: i64) {
        self.hours.remove(&hour);
    }

    /// Ids held, over all hours.
    pub(super) fn len(&self) -> usize {
        self.hours.values().map(HashSet::len).sum()
    }
}

/// The 128-bit key of an event id: the UUID's value, or a SipHash of the
/// text when it is not a UUID.
pub(super) fn key_of(event_id: &str) -> u128 {
    match apache_avro::Uuid::try_parse(event_id) {
        Ok(u) => u.as_u128(),
        Err(_) => {
            let half = |salt: u8| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                salt.hash(&mut h);
                event_id.hash(&mut h);
                h.finish() as u128
            };
            (half(0) << 64) | half(1)
        }
    }
}

/// The keys of the `event_id` column of the files at `paths` (with their
/// sizes); files without such a column give none.
pub(super) async fn read_back(
    store: &Arc<dyn ObjectStore>,
    paths: Vec<(Path, u64)>,
) -> Result<Vec<u128>, LakeError> {
    let per_file = futures::stream::iter(paths)
        .map(|(path, size)| read_file(store.clone(), path, size))
        .buffer_unordered(READS_IN_FLIGHT)
        .try_collect::<Vec<Vec<u128>>>()
        .await?;
    Ok(per_file.into_iter().flatten().collect())
}

async fn read_file(
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
) -> Result<Vec<u128>, LakeError> {
    let reader = Ranged { store, path, size };
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let Some(column) = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == "event_id")
    else {
        return Ok(Vec::new());
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
    let mut batches = builder.with_projection(mask).build()?;
    let mut out = Vec::new();
    while let Some(batch) = batches.try_next().await? {
        let col = batch.column(0);
        let Some(strings) = col.as_string_opt::<i32>() else {
            return Err(LakeError::Schema(format!(
                "event_id is a {} column, not text",
                col.data_type()
            )));
        };
        out.extend(strings.iter().flatten().map(key_of));
    }
    Ok(out)
}

/// A lake file read by ranged GETs: the footer (its size is known from
/// the listing), then the pages of the one column asked for.
struct Ranged {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for Ranged {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(external)
            .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_its_own_key_and_other_text_is_hashed() {
        let u = "00000000-0000-4000-8000-000000000007";
        assert_eq!(key_of(u), 0x0000_0000_0000_4000_8000_0000_0000_0007);
        assert_eq!(key_of(&u.to_uppercase()), key_of(u));
        assert_ne!(key_of("order-1"), key_of("order-2"));
        assert_eq!(key_of("order-1"), key_of("order-1"));
    }

    #[test]
    fn an_id_is_held_in_its_hour_and_the_next_one() {
        let mut ids = EventIds::default();
        ids.insert(10, 1);
        assert!(ids.holds(10, 1));
        assert!(ids.holds(11, 1), "a retry an hour later in event time");
        assert!(!ids.holds(12, 1));
        assert!(!ids.holds(9, 1));
        ids.forget(10);
        assert!(!ids.holds(10, 1));
        assert_eq!(ids.len(), 0);
    }
}

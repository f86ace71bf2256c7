//! Where the lake lives and how its objects are named.
//!
//! Layout (DESIGN.md): `<lake>/events/<table>/dt=YYYY-MM-DD/hour=HH/<file>`
//! with `<table>` the topic with `.` as `_` and the partition from the
//! record's event time (`occurred_at`) in UTC. A file is named
//! `<topic>+<partition>+<first offset>+<last offset>+s<schema id>.parquet`
//! (offsets zero-padded to 20 digits), so a name says exactly which records
//! it holds.

use chrono::{DateTime, Utc};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use std::sync::Arc;
use url::Url;

use crate::LakeError;

/// An opened lake: the object store rooted at the lake and its URL.
#[derive(Clone)]
pub struct Lake {
    /// The store, rooted at the lake (paths start with `events/`).
    pub store: Arc<dyn ObjectStore>,
    /// The unprefixed store (for DataFusion, registered under `root_url`).
    pub root_store: Arc<dyn ObjectStore>,
    /// Root of the store as a URL (`file:///` or `s3://bucket/`).
    pub root_url: Url,
    /// The lake's own URL (`file:///abs/path/` or `s3://bucket/prefix/`).
    pub url: Url,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lake({})", self.url)
    }
}

impl Lake {
    /// Opens `url` (`file://…`, a plain path, or `s3://bucket/prefix`); S3
    /// settings come from the `AWS_*` environment variables, then from
    /// `options` (keys such as `aws_endpoint`, `aws_access_key_id`).
    /// Plain HTTP endpoints are allowed (S3-compatible servers). A local
    /// lake's folder is created.
    pub fn open(url: &str, options: &[(&str, &str)]) -> Result<Lake, LakeError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::Config(format!("lake URL {url:?} has no bucket")));
            }
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(true);
            if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                b = b.with_endpoint(endpoint);
            }
            for (k, v) in options {
                let key = k.parse().map_err(|e: object_store::Error| {
                    LakeError::Config(format!("S3 option {k:?}: {e}"))
                })?;
                b = b.with_config(key, *v);
            }
            if std::env::var("AWS_REGION").is_err()
                && std::env::var("AWS_DEFAULT_REGION").is_err()
                && !options.iter().any(|(k, _)| k.contains("region"))
            {
                b = b.with_region("us-east-1");
            }
            let root: Arc<dyn ObjectStore> = Arc::new(b.build()?);
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                root.clone()
            } else {
                Arc::new(PrefixStore::new(root.clone(), prefix))
            };
            let root_url = Url::parse(&format!("s3://{bucket}/")).map_err(bad_url(url))?;
            let lake_url = if prefix.is_empty() {
                root_url.clone()
            } else {
                Url::parse(&format!("s3://{bucket}/{prefix}/")).map_err(bad_url(url))?
            };
            return Ok(Lake {
                store,
                root_store: root,
                root_url,
                url: lake_url,
            });
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() || url.contains("://") && !url.starts_with("file://") {
            return Err(LakeError::Config(format!(
                "lake URL {url:?}: use file://PATH or s3://BUCKET/PREFIX"
            )));
        }
        let path = std::path::Path::new(path);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| LakeError::Config(format!("no working directory: {e}")))?
                .join(path)
        };
        std::fs::create_dir_all(&abs).map_err(|e| {
            LakeError::Config(format!("cannot create the lake folder {abs:?}: {e}"))
        })?;
        let abs = abs
            .canonicalize()
            .map_err(|e| LakeError::Config(format!("lake folder {abs:?}: {e}")))?;
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&abs)?);
        let lake_url = Url::from_directory_path(&abs)
            .map_err(|()| LakeError::Config(format!("lake folder {abs:?} is not a URL")))?;
        Ok(Lake {
            store,
            root_store: Arc::new(LocalFileSystem::new()),
            root_url: Url::parse("file:///").map_err(bad_url(url))?,
            url: lake_url,
        })
    }

    /// The URL of a table's folder (ends with `/`).
    pub fn table_url(&self, table: &str) -> String {
        format!("{}events/{table}/", self.url)
    }
}

fn bad_url(url: &str) -> impl Fn(url::ParseError) -> LakeError + '_ {
    move |e| LakeError::Config(format!("lake URL {url:?}: {e}"))
}

/// The table of a topic: `.` becomes `_`.
pub fn table_name(topic: &str) -> String {
    topic.replace(['.', '-'], "_")
}

/// The hour bucket of an event time: (`YYYY-MM-DD`, hour).
pub fn bucket_of(occurred_at_ms: i64) -> (String, u32) {
    let t: DateTime<Utc> = DateTime::from_timestamp_millis(occurred_at_ms).unwrap_or_default();
    (
        t.format("%Y-%m-%d").to_string(),
        t.format("%H").to_string().parse().unwrap_or(0),
    )
}

/// The folder of one hour bucket of a table.
pub fn partition_dir(table: &str, dt: &str, hour: u32) -> Path {
    Path::from(format!("events/{table}/dt={dt}/hour={hour:02}"))
}

/// What a file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// First offset in the file.
    pub first: i64,
    /// Last offset in the file.
    pub last: i64,
    /// Writer schema id of every record in it.
    pub schema_id: u32,
}

impl FileName {
    /// `<topic>+<partition>+<first>+<last>+s<schema id>.parquet`.
    pub fn render(&self) -> String {
        format!(
            "{}+{}+{:020}+{:020}+s{}.parquet",
            self.topic, self.partition, self.first, self.last, self.schema_id
        )
    }

    /// Parses a rendered name (the last path segment); `None` for foreign files.
    pub fn parse(name: &str) -> Option<FileName> {
        let stem = name.strip_suffix(".parquet")?;
        let mut it = stem.rsplitn(5, '+');
        let schema_id = it.next()?.strip_prefix('s')?.parse().ok()?;
        let last = it.next()?.parse().ok()?;
        let first = it.next()?.parse().ok()?;
        let partition = it.next()?.parse().ok()?;
        let topic = it.next()?.to_string();
        Some(FileName {
            topic,
            partition,
            first,
            last,
            schema_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_offset() {
        let n = FileName {
            topic: "notification.delivered".into(),
            partition: 3,
            first: 120,
            last: 345,
            schema_id: 7,
        };
        let s = n.render();
        assert_eq!(
            s,
            "notification.delivered+3+00000000000000000120+00000000000000000345+s7.parquet"
        );
        assert_eq!(FileName::parse(&s), Some(n));
        assert_eq!(FileName::parse("other.parquet"), None);
    }

    #[test]
    fn buckets_by_utc_event_time() {
        // 2026-01-01T00:59:59.999Z and one ms later.
        assert_eq!(bucket_of(1_767_229_199_999), ("2026-01-01".into(), 0));
        assert_eq!(bucket_of(1_767_229_200_000), ("2026-01-01".into(), 1));
        assert_eq!(
            partition_dir("notification_delivered", "2026-01-01", 1).as_ref(),
            "events/notification_delivered/dt=2026-01-01/hour=01"
        );
        assert_eq!(
            table_name("notification.delivered"),
            "notification_delivered"
        );
    }

    #[test]
    fn opens_a_relative_local_lake() {
        let dir = std::env::temp_dir().join(format!("pf-lake-{}", std::process::id()));
        let lake = Lake::open(&format!("file://{}", dir.display()), &[]).unwrap();
        assert!(dir.is_dir());
        assert!(lake.table_url("t").ends_with("/events/t/"));
        assert!(Lake::open("ftp://x", &[]).is_err());
    }
}

//! What `topology.yaml` says about an `s3-parquet` component.

use parquet::basic::{Compression, ZstdLevel};
use pushflow_runtime::component::ConfigError;
use pushflow_runtime::topology::{parse_duration, parse_size};
use serde::Deserialize;
use std::time::Duration;

/// The `settings:` of an `s3-parquet` component. Every field has a default
/// suited to Athena / Trino (large files, large row groups).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Roll a file once its encoded size reaches this (e.g. `128MiB`).
    #[serde(default = "default_file_size")]
    pub file_size: String,
    /// Rows per Parquet row group.
    #[serde(default = "default_row_group_size")]
    pub row_group_size: usize,
    /// Roll a file once it holds this many records.
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// Roll a file once its records' event times span this interval
    /// (record time, not wall-clock; files never span an hour anyway).
    #[serde(default = "default_roll_interval")]
    pub roll_interval: String,
    /// Write a file that received nothing for this long, so a quiet topic
    /// still lands (and its offsets commit) within this delay.
    #[serde(default = "default_flush_idle")]
    pub flush_idle: String,
    /// `zstd` (default), `snappy` or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Largest batch of records taken from Kafka at once.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Files larger than this go up as S3 multipart uploads (in parts of
    /// `part_size`); smaller ones as one PUT.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: String,
    /// Part size of multipart uploads (S3: at least 5 MiB, at most 5 GiB).
    #[serde(default = "default_part_size")]
    pub part_size: String,
}

fn default_file_size() -> String {
    "128MiB".to_string()
}
fn default_row_group_size() -> usize {
    1_048_576
}
fn default_max_records() -> u64 {
    10_000_000
}
fn default_roll_interval() -> String {
    "1h".to_string()
}
fn default_flush_idle() -> String {
    "30s".to_string()
}
fn default_compression() -> String {
    "zstd".to_string()
}
fn default_max_batch() -> usize {
    5000
}
fn default_multipart_threshold() -> String {
    "16MiB".to_string()
}
fn default_part_size() -> String {
    "8MiB".to_string()
}

/// The smallest part S3 accepts (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest part, and the largest single PUT, S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            file_size: default_file_size(),
            row_group_size: default_row_group_size(),
            max_records: default_max_records(),
            roll_interval: default_roll_interval(),
            flush_idle: default_flush_idle(),
            compression: default_compression(),
            max_batch: default_max_batch(),
            multipart_threshold: default_multipart_threshold(),
            part_size: default_part_size(),
        }
    }
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bytes.
    pub file_size: u64,
    /// Rows.
    pub row_group_size: usize,
    /// Records.
    pub max_records: u64,
    /// Event-time span of a file.
    pub roll_interval: Duration,
    /// Idle flush delay.
    pub flush_idle: Duration,
    /// Parquet codec.
    pub compression: Compression,
    /// Consumer batch.
    pub max_batch: usize,
    /// Bytes above which a file is uploaded in parts.
    pub multipart_threshold: u64,
    /// Bytes per part of a multipart upload.
    pub part_size: u64,
}

impl SinkConfig {
    /// Checks the values; errors are (field, message).
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let field = |f: &'static str| move |m: String| ConfigError::new(format!("settings.{f}"), m);
        let file_size = parse_size(&self.file_size).map_err(field("file_size"))?;
        let compression = match self.compression.as_str() {
            "zstd" => Compression::ZSTD(ZstdLevel::default()),
            "snappy" => Compression::SNAPPY,
            "none" => Compression::UNCOMPRESSED,
            other => {
                return Err(field("compression")(format!(
                    "unknown compression {other:?}: use zstd, snappy or none"
                )))
            }
        };
        if self.row_group_size == 0
            || self.max_records == 0
            || self.max_batch == 0
            || file_size == 0
        {
            return Err(ConfigError::new(
                "settings",
                "file_size, row_group_size, max_records and max_batch must be above 0",
            ));
        }
        let multipart_threshold =
            parse_size(&self.multipart_threshold).map_err(field("multipart_threshold"))?;
        if multipart_threshold == 0 || multipart_threshold > MAX_PART_SIZE {
            return Err(field("multipart_threshold")(format!(
                "{:?}: use a size above 0 and at most 5GiB (S3's largest single PUT)",
                self.multipart_threshold
            )));
        }
        let part_size = parse_size(&self.part_size).map_err(field("part_size"))?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(field("part_size")(format!(
                "{:?}: S3 parts are 5MiB to 5GiB",
                self.part_size
            )));
        }
        Ok(Settings {
            file_size,
            row_group_size: self.row_group_size,
            max_records: self.max_records,
            roll_interval: parse_duration(&self.roll_interval).map_err(field("roll_interval"))?,
            flush_idle: parse_duration(&self.flush_idle).map_err(field("flush_idle"))?,
            compression,
            max_batch: self.max_batch,
            multipart_threshold,
            part_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_refuses_unknown_fields() {
        let c: SinkConfig = serde_yaml::from_str(
            "file_size: 64MiB\nrow_group_size: 100000\nmax_records: 500\nroll_interval: 10m\nflush_idle: 5s\ncompression: snappy\n",
        )
        .unwrap();
        let s = c.validate().unwrap();
        assert_eq!(s.file_size, 64 * 1024 * 1024);
        assert_eq!(s.max_records, 500);
        assert_eq!(s.flush_idle, Duration::from_secs(5));
        assert_eq!(s.roll_interval, Duration::from_secs(600));
        assert_eq!(s.compression, Compression::SNAPPY);
        let d = SinkConfig::default().validate().unwrap();
        assert_eq!(d.file_size, 128 * 1024 * 1024);
        assert!(serde_yaml::from_str::<SinkConfig>("file_sise: 1MiB").is_err());
        let bad = SinkConfig {
            compression: "lz5".into(),
            ..SinkConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "settings.compression");
        assert_eq!(d.multipart_threshold, 16 * 1024 * 1024);
        assert_eq!(d.part_size, 8 * 1024 * 1024);
        let small_parts: SinkConfig =
            serde_yaml::from_str("multipart_threshold: 6MiB\npart_size: 5MiB\n").unwrap();
        let s = small_parts.validate().unwrap();
        assert_eq!((s.multipart_threshold, s.part_size), (6 << 20, 5 << 20));
        for (k, v) in [
            ("part_size", "4MiB"),
            ("part_size", "6GiB"),
            ("multipart_threshold", "6GiB"),
        ] {
            let c: SinkConfig = serde_yaml::from_str(&format!("{k}: {v}")).unwrap();
            assert_eq!(
                c.validate().unwrap_err().field,
                format!("settings.{k}"),
                "{k}: {v}"
            );
        }
    }
}

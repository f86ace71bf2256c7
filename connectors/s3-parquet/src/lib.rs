//! The audit lake: the exactly-once Parquet sink (`s3-parquet`), its
//! layout, the Athena / Trino DDL (`pushflow lake ddl`), SQL over the lake
//! with DataFusion (`pushflow query`, feature `query`, on by default);
//! the commands and the sink's benchmark (`pushflow bench sink`) are in
//! the binary, calling this library.
//!
//! Guarantee: every record of the input topics lands in exactly one
//! Parquet file of `<lake>/events/<table>/dt=…/hour=…/`, or in
//! `<topic>.dlq` when it cannot be decoded; offsets are committed only
//! after the file is written. See [`sink`] for how crashes are handled.

pub mod columns;
pub mod ddl;
pub mod decode;
mod error;
pub mod format;
pub mod lake;
#[cfg(feature = "query")]
pub mod query;
pub mod sink;

pub use error::LakeError;
pub use lake::Lake;
pub use sink::{S3ParquetSink, SinkConfig};

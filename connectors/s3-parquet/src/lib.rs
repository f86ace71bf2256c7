//! The exactly-once Parquet sink of the audit lake (being written).

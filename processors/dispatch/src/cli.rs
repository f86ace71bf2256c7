//! Command-line entry points the `pushflow` binary calls.

pub use crate::bench::{run as bench, BenchArgs};

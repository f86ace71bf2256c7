//! The event catalogue: one Avro schema per topic of DESIGN.md, embedded
//! from `schemas/*.avsc`, and a typed Rust struct for each event.
//!
//! Guarantee: the structs and the `.avsc` files cannot drift apart — the
//! tests in [`catalogue`] encode a sample of every struct against its schema
//! and compare the field lists name by name.
//!
//! Everything above this crate (codec, processors, connectors) names topics
//! through [`Topic`], never through string literals.

pub mod catalogue;
pub mod events;

pub use catalogue::{PingKind, Topic, BILLABLE, CATALOGUE};
pub use events::*;

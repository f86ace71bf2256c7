//! The properties pushflow's fuzz targets check, one module per target.
//!
//! Each module is also compiled, by `#[path]`, into a workspace test that
//! replays `fuzz/corpus/<target>/` on stable Rust (so CI checks every kept
//! input without libFuzzer): `runtime/tests/fuzz_corpus.rs` (wire, token,
//! topology), `connectors/s3-parquet/tests/fuzz_corpus.rs` (wire, lake),
//! `services/ingest/tests/fuzz_corpus.rs` (events) and
//! `cli/tests/fuzz_corpus.rs` (topology, settings). The modules name
//! each other through the crate root (`crate::wire`), so every includer
//! mounts them at its root under these names.
//!
//! A check panics (the fuzzer's crash) when a property fails; it returns
//! normally both when the input is accepted and when it is refused the
//! way the running system refuses it.

pub mod corpus;
pub mod events;
pub mod lake;
pub mod seeds;
pub mod settings;
pub mod token;
pub mod topology;
pub mod typed;
pub mod wire;

/// The binary's component registry (`type:` → validate), compiled in as
/// it is so the topology target checks the settings `pushflow topology
/// check` checks.
#[path = "../../cli/src/components/mod.rs"]
pub mod components;

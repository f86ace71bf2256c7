//! Subcommands. Each calls its component's library; the argument structs
//! and what the command prints live here, with the binary.

pub mod bench;
pub mod billing;
pub mod ingest;
pub mod lake;
pub mod push_sim;
pub mod replay;
pub mod serve_alone;
pub mod topology;
pub mod up;

use pushflow_runtime::topology::Topology;
use std::path::Path;

use crate::Failure;

/// Loads and validates the topology and every component's settings.
pub fn load(path: &Path) -> Result<(Topology, Vec<crate::components::Validated>), Failure> {
    let t = Topology::load(path).map_err(|e| Failure::Config(e.to_string()))?;
    let v = crate::components::validate_all(&t).map_err(|e| Failure::Config(e.to_string()))?;
    Ok((t, v))
}

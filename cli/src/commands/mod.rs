//! Subcommands.

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

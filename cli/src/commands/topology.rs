//! `pushflow topology check|apply`.

use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Failure;

/// Topology subcommands.
#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Validate the topology without touching the network; exit 2 with a
    /// message naming the file, entry and field when it is wrong.
    Check {
        /// The file to check (default: --topology).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Create the topics on the broker and register the schemas; a second
    /// run changes nothing and says so.
    Apply {
        /// The file to apply (default: --topology).
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// Runs a topology subcommand.
pub async fn run(default: &Path, cmd: TopologyCommand) -> Result<(), Failure> {
    match cmd {
        TopologyCommand::Check { file } => {
            let path = file.unwrap_or_else(|| default.to_path_buf());
            let (t, components) = super::load(&path)?;
            println!(
                "{}: ok ({} topics, {} components: {})",
                path.display(),
                t.topics.len(),
                components.len(),
                components
                    .iter()
                    .map(|c| format!("{} ({})", c.spec.name, c.spec.kind))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        TopologyCommand::Apply { file } => {
            let path = file.unwrap_or_else(|| default.to_path_buf());
            let (t, _) = super::load(&path)?;
            let report =
                pushflow_runtime::topology::apply::apply_patiently(&t, Duration::from_secs(20))
                    .await?;
            println!("{report}");
            Ok(())
        }
    }
}

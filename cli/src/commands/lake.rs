//! The lake's subcommands: `pushflow lake ddl` and `pushflow query`.

use clap::{Args, Subcommand};
use pushflow_runtime::topology::Topology;
use pushflow_s3_parquet::format::Format;
use pushflow_s3_parquet::LakeError;
use std::path::Path;

/// `pushflow lake …`
#[derive(Debug, Clone, Subcommand)]
pub enum LakeCommand {
    /// Print the Athena / Glue `CREATE EXTERNAL TABLE` (partition
    /// projection on dt and hour) and the Trino (Hive connector)
    /// `CREATE TABLE` of every table of the lake.
    Ddl(DdlArgs),
}

/// `pushflow lake ddl`
#[derive(Debug, Clone, Args)]
pub struct DdlArgs {
    /// Where the lake is, as Athena / Trino see it (default: the
    /// topology's lake URL when it is s3://…).
    #[arg(long)]
    pub location: Option<String>,
}

/// `pushflow query`
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The SQL, e.g. "SELECT dt, count(*) FROM notification_delivered GROUP BY dt".
    pub sql: String,
    /// Output: table, csv or json.
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// The lake (default: PUSHFLOW_LAKE_URL / the topology's lake_url).
    #[arg(long)]
    pub lake: Option<String>,
}

/// The topology if it loads; else `None` (the commands then use the
/// environment and defaults).
fn topology(path: &Path) -> Option<Topology> {
    Topology::load(path).ok()
}

fn lake_url(path: &Path) -> String {
    topology(path)
        .map(|t| t.services.lake_url)
        .or_else(|| std::env::var("PUSHFLOW_LAKE_URL").ok())
        .unwrap_or_else(|| "file://./data/lake".into())
}

/// The lake component's input topics, or every catalogue topic.
fn lake_topics(path: &Path) -> Vec<String> {
    topology(path)
        .and_then(|t| {
            t.components
                .iter()
                .find(|c| c.kind == "s3-parquet")
                .map(|c| c.inputs.clone())
        })
        .unwrap_or_else(|| {
            pushflow_schemas::CATALOGUE
                .iter()
                .map(|t| t.name.to_string())
                .collect()
        })
}

/// Runs `pushflow lake …`, printing to stdout.
pub async fn lake(path: &Path, cmd: &LakeCommand) -> Result<(), LakeError> {
    match cmd {
        LakeCommand::Ddl(args) => {
            let location = match &args.location {
                Some(l) => l.clone(),
                None => {
                    let url = lake_url(path);
                    if !url.starts_with("s3://") {
                        return Err(LakeError::Config(format!(
                            "the lake is {url}, not on S3: pass --location s3://bucket/prefix"
                        )));
                    }
                    url
                }
            };
            if !location.starts_with("s3://") {
                return Err(LakeError::Config(format!(
                    "--location {location:?}: use s3://bucket/prefix"
                )));
            }
            print!(
                "{}",
                pushflow_s3_parquet::ddl::ddl(&lake_topics(path), &location)?
            );
            Ok(())
        }
    }
}

/// Runs `pushflow query`, printing the result.
#[cfg(feature = "query")]
pub async fn query(path: &Path, args: &QueryArgs) -> Result<(), LakeError> {
    let url = args.lake.clone().unwrap_or_else(|| lake_url(path));
    println!(
        "{}",
        pushflow_s3_parquet::query::run(&url, &args.sql, args.format).await?
    );
    Ok(())
}

/// `pushflow query` in a build without DataFusion: says how to get it.
#[cfg(not(feature = "query"))]
pub async fn query(_path: &Path, _args: &QueryArgs) -> Result<(), LakeError> {
    Err(LakeError::Config(WITHOUT_QUERY.into()))
}

/// What a build without the `query` feature answers to `pushflow query`.
pub const WITHOUT_QUERY: &str = "this pushflow was built without the `query` feature \
     (DataFusion; scripts/up leaves it out to build faster): build it with \
     `cargo build --release --bin pushflow` (default features), or query the \
     lake with Trino, Athena or duckdb (see `pushflow lake ddl`)";

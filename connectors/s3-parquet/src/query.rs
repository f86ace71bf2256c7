//! `pushflow query`: SQL over the lake with DataFusion.
//!
//! Every table folder under `<lake>/events/` (and every catalogue topic)
//! becomes a table named like `notification_delivered`, with the Hive
//! partition columns `dt` (string, `YYYY-MM-DD`) and `hour` (int), so
//! `WHERE dt = '2026-01-01' AND hour = 7` reads only that folder. The
//! schema is merged from the files' own schemas, so files written before
//! and after a schema gained a column are read together (the missing
//! values are null). A catalogue topic without files yet is an empty table.

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use object_store::path::Path;
use std::collections::BTreeSet;
use std::sync::Arc;

pub use crate::format::Format;

use crate::columns::Layout;
use crate::lake::{table_name, Lake};
use crate::LakeError;

fn partition_cols() -> Vec<(String, DataType)> {
    vec![
        ("dt".to_string(), DataType::Utf8),
        ("hour".to_string(), DataType::Int32),
    ]
}

/// The table folders present under `events/`.
async fn tables_present(lake: &Lake) -> Result<BTreeSet<String>, LakeError> {
    let listing = lake
        .store
        .list_with_delimiter(Some(&Path::from("events")))
        .await;
    let listing = match listing {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(BTreeSet::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect())
}

async fn has_files(lake: &Lake, table: &str) -> Result<bool, LakeError> {
    use futures::StreamExt;
    let prefix = Path::from(format!("events/{table}"));
    let mut s = lake.store.list(Some(&prefix));
    while let Some(m) = s.next().await {
        if m?.location.as_ref().ends_with(".parquet") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A DataFusion session with every lake table registered.
pub async fn context(lake: &Lake) -> Result<SessionContext, LakeError> {
    let ctx = SessionContext::new();
    ctx.register_object_store(&lake.root_url, lake.root_store.clone());
    let mut tables = tables_present(lake).await?;
    for t in pushflow_schemas::CATALOGUE {
        tables.insert(table_name(t.name));
    }
    for table in tables {
        if has_files(lake, &table).await? {
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(partition_cols());
            let url = ListingTableUrl::parse(lake.table_url(&table))?;
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .infer_schema(&ctx.state())
                .await?;
            ctx.register_table(&table, Arc::new(ListingTable::try_new(config)?))?;
        } else if let Some(topic) = pushflow_schemas::CATALOGUE
            .iter()
            .find(|t| table_name(t.name) == table)
        {
            let layout = Layout::of(topic.schema())?;
            let mut fields: Vec<Field> = layout
                .schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            for (name, dt) in partition_cols() {
                fields.push(Field::new(name, dt, false));
            }
            let schema = Arc::new(Schema::new(fields));
            ctx.register_table(&table, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
        }
    }
    Ok(ctx)
}

/// Runs `sql` over the lake and returns the result batches.
pub async fn query(lake: &Lake, sql: &str) -> Result<Vec<RecordBatch>, LakeError> {
    let ctx = context(lake).await?;
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// Renders batches as `format`.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, LakeError> {
    match format {
        Format::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)?.to_string()),
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(Vec::new());
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            let out = w.into_inner();
            Ok(if out.is_empty() {
                "[]".into()
            } else {
                String::from_utf8_lossy(&out).into_owned()
            })
        }
    }
}

/// `pushflow query`: opens `lake_url`, runs `sql`, renders the result.
pub async fn run(lake_url: &str, sql: &str, format: Format) -> Result<String, LakeError> {
    let lake = Lake::open(lake_url, &[])?;
    render(&query(&lake, sql).await?, format)
}

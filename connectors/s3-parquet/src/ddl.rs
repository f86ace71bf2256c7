//! `pushflow lake ddl`: the lake's tables for Athena / Glue (with partition
//! projection, so no crawler or `MSCK REPAIR` is needed) and for Trino's
//! Hive connector.

use arrow::datatypes::{DataType, TimeUnit};
use pushflow_schemas::Topic;

use crate::columns::Layout;
use crate::lake::table_name;
use crate::LakeError;

fn athena_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int32 => "int",
        DataType::Int64 => "bigint",
        DataType::Float32 => "float",
        DataType::Float64 => "double",
        DataType::Boolean => "boolean",
        DataType::Timestamp(TimeUnit::Millisecond, _) => "timestamp",
        DataType::Binary => "binary",
        _ => "string",
    }
}

fn trino_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        DataType::Float32 => "real",
        DataType::Float64 => "double",
        DataType::Boolean => "boolean",
        DataType::Timestamp(TimeUnit::Millisecond, _) => "timestamp(3)",
        DataType::Binary => "varbinary",
        _ => "varchar",
    }
}

fn layout(topic: &Topic) -> Result<Layout, LakeError> {
    Layout::of(topic.schema())
}

fn table_location(location: &str, table: &str) -> String {
    format!("{}/events/{table}/", location.trim_end_matches('/'))
}

/// The Athena / Glue `CREATE EXTERNAL TABLE` of a topic, partitions
/// projected (dt: dates from 2024-01-01 to now, hour: 00..23).
pub fn athena(topic: &Topic, location: &str) -> Result<String, LakeError> {
    let table = table_name(topic.name);
    let loc = table_location(location, &table);
    let cols: Vec<String> = layout(topic)?
        .schema
        .fields()
        .iter()
        .map(|f| format!("  `{}` {}", f.name(), athena_type(f.data_type())))
        .collect();
    let template = format!("{loc}dt=${{dt}}/hour=${{hour}}/");
    let props = [
        ("projection.enabled", "true"),
        ("projection.dt.type", "date"),
        ("projection.dt.format", "yyyy-MM-dd"),
        ("projection.dt.range", "2024-01-01,NOW"),
        ("projection.dt.interval", "1"),
        ("projection.dt.interval.unit", "DAYS"),
        ("projection.hour.type", "integer"),
        ("projection.hour.range", "0,23"),
        ("projection.hour.digits", "2"),
        ("storage.location.template", template.as_str()),
    ];
    let props: Vec<String> = props
        .iter()
        .map(|(k, v)| format!("  '{k}'='{v}'"))
        .collect();
    Ok(format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS `{table}` (\n{cols}\n)\n\
         PARTITIONED BY (`dt` string, `hour` int)\n\
         STORED AS PARQUET\n\
         LOCATION '{loc}'\n\
         TBLPROPERTIES (\n{props}\n);",
        cols = cols.join(",\n"),
        props = props.join(",\n")
    ))
}

/// The Trino (Hive connector) `CREATE TABLE` of a topic; partition
/// columns come last, as the Hive connector requires. After creating it,
/// `CALL system.sync_partition_metadata(schema, table, 'ADD')` registers
/// the partitions present.
pub fn trino(topic: &Topic, location: &str) -> Result<String, LakeError> {
    let table = table_name(topic.name);
    let loc = table_location(location, &table);
    let mut cols: Vec<String> = layout(topic)?
        .schema
        .fields()
        .iter()
        .map(|f| format!("  \"{}\" {}", f.name(), trino_type(f.data_type())))
        .collect();
    cols.push("  \"dt\" varchar".into());
    cols.push("  \"hour\" integer".into());
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS \"{table}\" (\n{cols}\n)\nWITH (\n  format = 'PARQUET',\n  external_location = '{loc}',\n  partitioned_by = ARRAY['dt', 'hour']\n);",
        cols = cols.join(",\n")
    ))
}

/// Both dialects for every catalogue topic in `topics`, as one script with
/// `--` section comments.
pub fn ddl(topics: &[String], location: &str) -> Result<String, LakeError> {
    let topics: Vec<&Topic> = topics
        .iter()
        .map(|t| {
            Topic::by_name(t)
                .ok_or_else(|| LakeError::Config(format!("{t:?} is not a catalogue topic")))
        })
        .collect::<Result<_, _>>()?;
    let mut out =
        String::from("-- Athena / AWS Glue (partition projection: no crawler, no MSCK REPAIR)\n");
    for t in &topics {
        out.push_str(&athena(t, location)?);
        out.push_str("\n\n");
    }
    out.push_str("-- Trino, Hive connector (then: CALL system.sync_partition_metadata('<schema>', '<table>', 'ADD'))\n");
    for t in &topics {
        out.push_str(&trino(t, location)?);
        out.push_str("\n\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn athena_ddl_projects_partitions() {
        let t = Topic::by_name("notification.failed").unwrap();
        let s = athena(t, "s3://lake/prod/").unwrap();
        assert!(s.contains("`occurred_at` timestamp"), "{s}");
        assert!(s.contains("`status_code` int"), "{s}");
        assert!(
            s.contains("LOCATION 's3://lake/prod/events/notification_failed/'"),
            "{s}"
        );
        assert!(s.contains("'storage.location.template'='s3://lake/prod/events/notification_failed/dt=${dt}/hour=${hour}/'"), "{s}");
        let tr = trino(t, "s3://lake/prod").unwrap();
        assert!(tr.contains("partitioned_by = ARRAY['dt', 'hour']"), "{tr}");
        assert!(tr.trim_end().ends_with(");"));
    }
}

//! `pushflow lake ddl`: the lake's tables for Athena / Glue (with partition
//! projection, so no crawler or `MSCK REPAIR` is needed) and for Trino's
//! Hive connector (a script that, run in order, creates the schema and the
//! tables and registers the partitions present).

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

/// The Trino catalog the printed DDL uses: the Hive catalog of
/// `deploy/trino/catalog/lake.properties`.
pub const TRINO_CATALOG: &str = "lake";

/// The Trino schema the printed DDL creates and puts the tables in.
pub const TRINO_SCHEMA: &str = "pushflow";

/// `"a"."b"…`: Trino identifiers, quoted.
fn trino_name(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// A Trino string literal.
fn trino_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The Trino (Hive connector) `CREATE SCHEMA` the tables live in.
pub fn trino_schema(catalog: &str, schema: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {};",
        trino_name(&[catalog, schema])
    )
}

/// The Trino (Hive connector) `CREATE TABLE` of a topic, in
/// `catalog.schema`; partition columns come last, as the Hive connector
/// requires. The table is external (`external_location`): dropping it
/// leaves the lake alone.
pub fn trino(
    topic: &Topic,
    location: &str,
    catalog: &str,
    schema: &str,
) -> Result<String, LakeError> {
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
        "CREATE TABLE IF NOT EXISTS {name} (\n{cols}\n)\nWITH (\n  format = 'PARQUET',\n  external_location = {loc},\n  partitioned_by = ARRAY['dt', 'hour']\n);",
        name = trino_name(&[catalog, schema, &table]),
        loc = trino_string(&loc),
        cols = cols.join(",\n")
    ))
}

/// The Trino (Hive connector) call that registers a table's partitions
/// (`dt=…/hour=…` folders) in the metastore: those present are added, those
/// gone are dropped. Run it again as new hours arrive.
pub fn trino_sync_partitions(topic: &Topic, catalog: &str, schema: &str) -> String {
    format!(
        "CALL {}.system.sync_partition_metadata({}, {}, 'FULL');",
        trino_name(&[catalog]),
        trino_string(schema),
        trino_string(&table_name(topic.name))
    )
}

fn catalogue_topics(topics: &[String]) -> Result<Vec<&'static Topic>, LakeError> {
    topics
        .iter()
        .map(|t| {
            Topic::by_name(t)
                .ok_or_else(|| LakeError::Config(format!("{t:?} is not a catalogue topic")))
        })
        .collect()
}

/// The Trino script for `topics` in `catalog.schema`: `CREATE SCHEMA`, then
/// each table's `CREATE TABLE` followed by its partition sync. Every
/// statement ends with `;` and is separated from the next by a blank line;
/// lines starting with `--` are comments.
pub fn trino_script(
    topics: &[String],
    location: &str,
    catalog: &str,
    schema: &str,
) -> Result<String, LakeError> {
    let topics = catalogue_topics(topics)?;
    let mut out = format!(
        "-- Trino, Hive connector (catalog {catalog}, as in deploy/trino/catalog/lake.properties).\n\
         -- Run the statements in order: the schema, then each table and its partitions;\n\
         -- run the CALLs again to register the hours written since.\n"
    );
    out.push_str(&trino_schema(catalog, schema));
    out.push_str("\n\n");
    for t in &topics {
        out.push_str(&trino(t, location, catalog, schema)?);
        out.push_str("\n\n");
        out.push_str(&trino_sync_partitions(t, catalog, schema));
        out.push_str("\n\n");
    }
    Ok(out)
}

/// Both dialects for every catalogue topic in `topics`, as one script with
/// `--` section comments: Athena / Glue first, then the Trino script (in
/// [`TRINO_CATALOG`].[`TRINO_SCHEMA`]).
pub fn ddl(topics: &[String], location: &str) -> Result<String, LakeError> {
    let catalogue = catalogue_topics(topics)?;
    let mut out =
        String::from("-- Athena / AWS Glue (partition projection: no crawler, no MSCK REPAIR)\n");
    for t in &catalogue {
        out.push_str(&athena(t, location)?);
        out.push_str("\n\n");
    }
    out.push_str(&trino_script(
        topics,
        location,
        TRINO_CATALOG,
        TRINO_SCHEMA,
    )?);
    Ok(out)
}

/// The statements of a script such as [`ddl`] prints, in order: comment
/// lines dropped, split at a `;` that ends a line (how a client that sends
/// one statement at a time, such as Trino's HTTP API, runs it).
pub fn statements(script: &str) -> Vec<String> {
    let text: String = script
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
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
        let tr = trino(t, "s3://lake/prod", "lake", "pushflow").unwrap();
        assert!(tr.contains("partitioned_by = ARRAY['dt', 'hour']"), "{tr}");
        assert!(tr.trim_end().ends_with(");"));
    }

    #[test]
    fn trino_script_creates_the_schema_then_each_table_and_its_partitions() {
        let topics: Vec<String> = ["campaign.created", "notification.delivered"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        let all = ddl(&topics, "s3://lake/prod/").unwrap();
        let (athena_part, trino_part) = all.split_at(all.find("-- Trino").unwrap());
        assert_eq!(statements(athena_part).len(), 2, "{athena_part}");
        let st = statements(trino_part);
        assert_eq!(st.len(), 1 + 2 * 2, "{trino_part}");
        assert_eq!(st[0], "CREATE SCHEMA IF NOT EXISTS \"lake\".\"pushflow\"");
        for (i, table) in ["campaign_created", "notification_delivered"]
            .iter()
            .enumerate()
        {
            let create = &st[1 + 2 * i];
            assert!(
                create.starts_with(&format!(
                    "CREATE TABLE IF NOT EXISTS \"lake\".\"pushflow\".\"{table}\" ("
                )),
                "{create}"
            );
            assert!(
                create.contains(&format!(
                    "external_location = 's3://lake/prod/events/{table}/'"
                )),
                "{create}"
            );
            assert!(create.contains("\"occurred_at\" timestamp(3)"), "{create}");
            assert!(
                create.contains("  \"dt\" varchar,\n  \"hour\" integer\n)"),
                "partition columns last: {create}"
            );
            assert_eq!(
                st[2 + 2 * i],
                format!(
                    "CALL \"lake\".system.sync_partition_metadata('pushflow', '{table}', 'FULL')"
                )
            );
        }
        let other = trino_script(&topics[..1], "s3://b/p", "hive", "o'neil").unwrap();
        assert!(
            other.contains("CREATE SCHEMA IF NOT EXISTS \"hive\".\"o'neil\";"),
            "{other}"
        );
        assert!(
            other.contains("sync_partition_metadata('o''neil', 'campaign_created', 'FULL');"),
            "{other}"
        );
        assert!(trino_script(&["nope".into()], "s3://b", "lake", "x").is_err());
    }
}

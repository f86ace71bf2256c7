//! The generated DDL parses back with sqlglot (athena and trino dialects),
//! with the partition projection and locations we meant.

mod common;

use pushflow_s3_parquet::ddl;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn ddl_parses_back_in_athena_and_trino() {
    let topics: Vec<String> = pushflow_schemas::CATALOGUE
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    let text = ddl::ddl(&topics, "s3://acme-lake/prod").unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python/lake_ddl_check.py");
    let mut child = Command::new("python3")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sqlglot refused the DDL:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{v:#}");
    let tables = pushflow_schemas::CATALOGUE.len();
    assert_eq!(v["athena"].as_array().unwrap().len(), tables);
    assert_eq!(v["trino"].as_array().unwrap().len(), tables);
    let athena = v["athena"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[0] == "notification_delivered")
        .unwrap();
    let p = &athena[1];
    assert_eq!(p["projection.enabled"], "'true'", "{p}");
    assert_eq!(p["projection.dt.type"], "'date'");
    assert_eq!(p["projection.dt.format"], "'yyyy-MM-dd'");
    assert_eq!(p["projection.hour.type"], "'integer'");
    assert_eq!(p["projection.hour.range"], "'0,23'");
    assert_eq!(p["projection.hour.digits"], "'2'");
    assert_eq!(
        p["storage.location.template"],
        "'s3://acme-lake/prod/events/notification_delivered/dt=${dt}/hour=${hour}/'"
    );
    let trino = v["trino"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[0] == "notification_delivered")
        .unwrap();
    let cols: Vec<&str> = trino[2]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cols.last(), Some(&"hour"));
    assert_eq!(
        trino[1]["external_location"], "'s3://acme-lake/prod/events/notification_delivered/'",
        "{}",
        trino[1]
    );
    let parts = trino[1]["PartitionedByProperty"].as_str().unwrap();
    assert!(
        parts.contains("'dt'") && parts.contains("'hour'"),
        "{}",
        trino[1]
    );
    assert!(
        trino[1]["FileFormatProperty"]
            .as_str()
            .unwrap()
            .contains("PARQUET"),
        "{}",
        trino[1]
    );
    let parts = p["PartitionedByProperty"].as_str().unwrap();
    assert!(parts.contains("dt") && parts.contains("hour"), "{p}");
    assert!(
        p["LocationProperty"]
            .as_str()
            .unwrap()
            .contains("s3://acme-lake/prod/events/notification_delivered/"),
        "{p}"
    );
}

//! `pushflow topology check` refuses every kind of bad topology with exit
//! code 2 and a message naming the file, the entry and the field.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes `yaml` beside the repository's schemas (so schema paths resolve)
/// and runs `pushflow topology check --file` on it: (exit code, stderr, file).
fn check(yaml: &str) -> (i32, String, String) {
    let name = format!(
        "test-topology-{}.yaml",
        std::process::id() as u64 * 1000 + rand_suffix()
    );
    let path = repo().join(&name);
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pushflow"))
        .args(["topology", "check", "--file"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
        path.display().to_string(),
    )
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

const TOPICS: &str = "topics:\n  - name: campaign.launched\n    key: campaign_id\n    schema: schemas/campaign.launched.avsc\n";

fn refused(yaml: &str, expected_tail: &str) {
    let (code, stderr, file) = check(yaml);
    assert_eq!(code, 2, "exit code for:\n{yaml}\nstderr: {stderr}");
    let expected = format!("error: {file}: {expected_tail}");
    assert_eq!(stderr.trim_end(), expected, "for:\n{yaml}");
}

#[test]
fn the_repository_topology_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_pushflow"))
        .current_dir(repo())
        .args(["topology", "check"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("topology.yaml: ok ("), "{stdout}");
}

#[test]
fn unknown_component_type() {
    let (code, stderr, _) = check(&format!(
        "{TOPICS}components:\n  - name: agg\n    type: agregate\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(": components[0] \"agg\": field `type`: unknown component type \"agregate\"; known types: registry"),
        "{stderr}"
    );
}

#[test]
fn undeclared_topic() {
    refused(
        &format!("{TOPICS}components:\n  - name: reg\n    type: registry\n    outputs: [campaign.lunched]\n"),
        "components[0] \"reg\": field `outputs`: topic \"campaign.lunched\" is not declared under `topics:`; declare it or fix the name",
    );
}

#[test]
fn missing_schema_file() {
    let (code, stderr, _) = check("topics:\n  - name: campaign.launched\n    key: campaign_id\n    schema: schemas/missing.avsc\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains(": topics[0] \"campaign.launched\": field `schema`: schema file ")
            && stderr.contains("schemas/missing.avsc cannot be read (No such file or directory (os error 2)); paths are relative to the topology file"),
        "{stderr}"
    );
}

#[test]
fn duplicate_names() {
    refused(
        &format!("{TOPICS}components:\n  - name: r\n    type: registry\n  - name: r\n    type: registry\n"),
        "components[1] \"r\": field `name`: duplicate component name \"r\": names must be unique",
    );
    refused(
        &format!("{TOPICS}{}", TOPICS.trim_start_matches("topics:\n")),
        "topics[1] \"campaign.launched\": field `name`: duplicate topic name \"campaign.launched\": each topic is declared once",
    );
}

#[test]
fn bad_duration_and_size() {
    let (code, stderr, _) = check(&format!("{TOPICS}    retention: 3 weeks-ish\n"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            ": topics[0] \"campaign.launched\": field `retention`: bad duration \"3 weeks-ish\""
        ),
        "{stderr}"
    );
    let (code, stderr, _) = check(&format!("{TOPICS}    max_message_bytes: huge\n"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            ": topics[0] \"campaign.launched\": field `max_message_bytes`: bad size \"huge\""
        ),
        "{stderr}"
    );
}

#[test]
fn misspelled_keys() {
    let (code, stderr, _) = check(&format!("{TOPICS}    partitons: 3\n"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("topics[0]: unknown field `partitons`, expected one of"),
        "{stderr}"
    );
    let (code, stderr, _) = check(&format!(
        "{TOPICS}components:\n  - name: r\n    tpye: registry\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("components[0]: unknown field `tpye`"),
        "{stderr}"
    );
    let (code, stderr, _) = check(&format!(
        "{TOPICS}components:\n  - name: r\n    type: registry\n    settings: {{listen: x}}\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains(": components[0] \"r\": field `settings`: unknown field `listen`"),
        "{stderr}"
    );
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["topology", "--help"],
        vec!["topology", "check", "--help"],
        vec!["topology", "apply", "--help"],
        vec!["registry", "--help"],
        vec!["run", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pushflow"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage: pushflow"),
            "{args:?}"
        );
    }
}

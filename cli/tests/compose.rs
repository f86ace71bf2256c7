//! docker-compose.yml cannot run here (no Docker engine), so check what
//! can be checked: it parses, it has every service pushflow needs, and its
//! pushflow settings use the variables topology.yaml documents, pointing at
//! the compose services' own names and ports.

use pushflow_runtime::topology::ENV_OVERRIDES;
use serde_yaml::Value;
use std::path::Path;

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn compose_names_every_service_and_wires_pushflow_consistently() {
    let compose = load("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    for s in [
        "kafka",
        "schema-registry",
        "postgres",
        "minio",
        "trino",
        "pushflow",
    ] {
        assert!(
            services.contains_key(s),
            "docker-compose.yml lacks service {s}"
        );
    }
    let pf = &compose["services"]["pushflow"];
    assert_eq!(pf["build"].as_str(), Some("."));
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../Dockerfile")
        .exists());
    let env = pf["environment"]
        .as_mapping()
        .expect("pushflow environment");
    let get = |k: &str| {
        env.get(k)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{k} unset"))
            .to_string()
    };
    // Every variable topology.yaml's services can be overridden by is set.
    for (var, _) in ENV_OVERRIDES {
        get(var);
    }
    // …and each points at a compose service on the port that service serves.
    let port_of = |svc: &str| -> Vec<String> {
        let s = &compose["services"][svc];
        let mut ports: Vec<String> = s["ports"]
            .as_sequence()
            .map(|p| {
                p.iter()
                    .filter_map(|x| x.as_str())
                    .map(|x| x.rsplit(':').next().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(l) = s["environment"]["KAFKA_LISTENERS"].as_str() {
            ports.extend(
                l.split(',')
                    .map(|x| x.rsplit(':').next().unwrap().to_string()),
            );
        }
        ports
    };
    let brokers = get("PUSHFLOW_BROKERS");
    let (host, port) = brokers.split_once(':').unwrap();
    assert_eq!(host, "kafka");
    assert!(
        port_of("kafka").contains(&port.to_string()),
        "kafka does not listen on {port}"
    );
    let reg = get("PUSHFLOW_REGISTRY_URL");
    assert!(reg.starts_with("http://schema-registry:"));
    assert!(port_of("schema-registry").contains(&reg.rsplit(':').next().unwrap().to_string()));
    assert!(get("PUSHFLOW_DATABASE_URL").starts_with("postgres://postgres@postgres:5432/"));
    assert!(get("PUSHFLOW_LAKE_URL").starts_with("s3://lake"));
    assert_eq!(get("AWS_ENDPOINT_URL"), "http://minio:9000");
    // The published ports are the ones pushflow listens on.
    let published = port_of("pushflow");
    for var in ["PUSHFLOW_INGEST_ADDR", "PUSHFLOW_METRICS_ADDR"] {
        let p = get(var).rsplit(':').next().unwrap().to_string();
        assert!(published.contains(&p), "{var} port {p} is not published");
    }
    // pushflow skips its own registry only because Confluent's is there.
    let cmd: Vec<&str> = pf["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(cmd, ["up", "--skip", "registry"]);
    let topology = load("topology.yaml");
    assert!(
        topology["components"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|c| c["name"].as_str() == Some("registry")),
        "--skip registry names a component of topology.yaml"
    );
    // The Trino catalog mounted into the container exists.
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/trino/catalog/lake.properties")
        .exists());
}

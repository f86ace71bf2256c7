//! docker-compose.yml cannot run here (no Docker engine), so check what
//! can be checked: it parses, it has every service pushflow needs, its
//! pushflow settings use the variables topology.yaml documents, pointing at
//! the compose services' own names and ports, every healthcheck uses only
//! what its image has, the Kafka node runs with the test broker's settings,
//! the VAPID key pair is made once and kept, the push simulator stays out
//! and the Trino tables come from `pushflow lake ddl`. The shell steps that
//! can run on this machine (dash, like the pushflow image) are run.

use pushflow_runtime::topology::ENV_OVERRIDES;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load(name: &str) -> Value {
    serde_yaml::from_str(&read(name)).unwrap()
}

fn compose() -> Value {
    load("docker-compose.yml")
}

fn services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone()))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The script of an `entrypoint: [/bin/sh, -c, <script>]`, with compose's
/// `$$` escape undone (what the shell in the container runs).
fn script(svc: &Value) -> String {
    let e = strings(&svc["entrypoint"]);
    assert_eq!(
        e[..2],
        ["/bin/sh", "-c"],
        "entrypoint is a /bin/sh -c script"
    );
    e[2].replace("$$", "$")
}

/// `(volume or host path, container path, read-only)` of each mount.
fn mounts(svc: &Value) -> Vec<(String, String, bool)> {
    strings(&svc["volumes"])
        .iter()
        .map(|m| {
            let parts: Vec<&str> = m.split(':').collect();
            (
                parts[0].to_string(),
                parts[1].to_string(),
                parts.get(2) == Some(&"ro"),
            )
        })
        .collect()
}

/// The named volume mounted at `dir`, if any.
fn named_volume_at(compose: &Value, svc: &Value, dir: &str) -> Option<(String, bool)> {
    let declared = compose["volumes"].as_mapping().expect("top-level volumes");
    mounts(svc)
        .into_iter()
        .find(|(source, target, _)| {
            target == dir && declared.contains_key(Value::String(source.clone()))
        })
        .map(|(source, _, ro)| (source, ro))
}

fn environment(svc: &Value) -> BTreeMap<String, String> {
    svc["environment"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                    };
                    (k.as_str().unwrap().to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What `depends_on` asks of each service: `service_healthy`, ….
fn conditions(svc: &Value) -> BTreeMap<String, String> {
    svc["depends_on"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let c = v["condition"].as_str().expect("a condition");
                    (k.as_str().unwrap().to_string(), c.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `script` with the machine's /bin/sh (dash on Debian, as in the
/// pushflow image), `pushflow` on the PATH being the one just built.
fn sh(script: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_pushflow")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    Command::new("/bin/sh")
        .args(["-c", script])
        .env("PATH", path)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn tmp_dir(what: &str) -> PathBuf {
    // Tests run side by side: each call gets a folder of its own.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!(
        "pushflow-compose-{what}-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The port of a `host:port` or `scheme://host:port` address.
fn port(addr: &str) -> String {
    addr.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string()
}

/// The container ports a service publishes.
fn published(svc: &Value) -> Vec<String> {
    strings(&svc["ports"]).iter().map(|p| port(p)).collect()
}

/// `key=value` lines of a Java properties file.
fn properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        let previous = out.insert(k.trim().to_string(), v.trim().to_string());
        assert!(previous.is_none(), "{k} set twice");
    }
    out
}

/// The Kafka node's settings as its entrypoint writes them, with the
/// mounted deploy/kafka/server.properties in place of the mount.
fn kafka_settings(kafka: &Value) -> (String, BTreeMap<String, String>) {
    let mount = mounts(kafka)
        .into_iter()
        .find(|(source, _, _)| source == "./deploy/kafka/server.properties")
        .expect("kafka mounts deploy/kafka/server.properties");
    assert!(mount.2, "read-only");
    let script = script(kafka);
    // The `{ cat …; echo …; } > FILE` block writing the broker's settings.
    let start = script.find("{\n").expect("a { … } > FILE block");
    let end = start + script[start..].find("\n}").expect("closing }") + 2;
    let rest = &script[end..];
    let target = rest
        .trim_start()
        .strip_prefix('>')
        .expect("} > FILE")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let out = tmp_dir("kafka").join("server.properties");
    let block = script[start..end].replace(
        &mount.1,
        repo()
            .join("deploy/kafka/server.properties")
            .to_str()
            .unwrap(),
    );
    let run = sh(&format!("{block} > {}", out.display()));
    assert!(run.status.success(), "{run:?}");
    let written = properties(&std::fs::read_to_string(&out).unwrap());
    (target, written)
}

#[test]
fn compose_names_every_service_and_wires_pushflow_consistently() {
    let compose = compose();
    let services = services(&compose);
    for s in [
        "kafka",
        "schema-registry",
        "postgres",
        "minio",
        "minio-init",
        "trino",
        "trino-init",
        "lake-ddl",
        "vapid-keys",
        "pushflow",
    ] {
        assert!(
            services.contains_key(s),
            "docker-compose.yml lacks service {s}"
        );
    }
    let pf = &services["pushflow"];
    assert!(repo().join("Dockerfile").exists());
    // Every service on the pushflow image builds it from the Dockerfile
    // and never pulls a same-named image from a registry.
    for (name, s) in &services {
        if s["image"].as_str() == pf["image"].as_str() {
            assert_eq!(s["build"].as_str(), Some("."), "{name}: build: .");
            assert_eq!(s["pull_policy"].as_str(), Some("build"), "{name}");
        }
    }
    let env = environment(pf);
    let get = |k: &str| env.get(k).unwrap_or_else(|| panic!("{k} unset")).clone();
    // Every variable topology.yaml's services can be overridden by is set.
    for (var, _) in ENV_OVERRIDES {
        get(var);
    }
    // …and each points at a compose service on the port that service serves.
    let (_, kafka) = kafka_settings(&services["kafka"]);
    let brokers = get("PUSHFLOW_BROKERS");
    let (host, broker_port) = brokers.split_once(':').unwrap();
    assert_eq!(host, "kafka");
    assert!(
        kafka["listeners"].contains(&format!("PLAINTEXT://:{broker_port}")),
        "kafka does not listen on {broker_port}: {}",
        kafka["listeners"]
    );
    assert_eq!(
        kafka["advertised.listeners"],
        format!("PLAINTEXT://kafka:{broker_port}")
    );
    assert_eq!(
        environment(&services["schema-registry"])["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"],
        format!("PLAINTEXT://{brokers}")
    );
    let reg = get("PUSHFLOW_REGISTRY_URL");
    assert!(reg.starts_with("http://schema-registry:"));
    assert!(published(&services["schema-registry"]).contains(&port(&reg)));
    assert!(get("PUSHFLOW_DATABASE_URL").starts_with("postgres://postgres@postgres:5432/"));
    assert!(get("PUSHFLOW_LAKE_URL").starts_with("s3://lake"));
    assert_eq!(get("AWS_ENDPOINT_URL"), "http://minio:9000");
    // The published ports are the ones pushflow listens on.
    for var in ["PUSHFLOW_INGEST_ADDR", "PUSHFLOW_METRICS_ADDR"] {
        let p = port(&get(var));
        assert!(
            published(pf).contains(&p),
            "{var} port {p} is not published"
        );
    }
    // A dependency's condition is one it can meet.
    for (name, s) in &services {
        for (on, condition) in conditions(s) {
            let target = services
                .get(&on)
                .unwrap_or_else(|| panic!("{name} depends on unknown {on}"));
            match condition.as_str() {
                "service_healthy" => assert!(
                    target["healthcheck"]["test"].is_sequence(),
                    "{name} waits for {on} to be healthy, which has no healthcheck"
                ),
                "service_completed_successfully" => assert!(
                    target["restart"].is_null(),
                    "{name} waits for {on} to finish, which is restarted"
                ),
                other => panic!("{name}: depends_on {on}: condition {other}"),
            }
        }
    }
    // Scripts escape every `$` from compose's interpolation (`$$`).
    for (name, s) in &services {
        for part in strings(&s["entrypoint"])
            .into_iter()
            .chain(strings(&s["command"]))
        {
            assert!(
                !part.replace("$$", "").contains('$'),
                "{name}: a lone $ in {part:?} is interpolated by compose; write $$"
            );
        }
    }
}

/// What /bin/sh is in an image.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shell {
    /// No /bin/sh: only exec-form (`CMD`) healthchecks.
    None,
    /// dash or busybox ash: POSIX only, no `/dev/tcp`, `[[`, `<<<`.
    Posix,
    /// bash.
    Bash,
}

/// An image (by name before the tag, or `build: .` for pushflow's own),
/// its /bin/sh and the programs known to be in it.
struct Image {
    name: &'static str,
    shell: Shell,
    programs: &'static [&'static str],
}

/// What each image of docker-compose.yml has, as its Dockerfile installs
/// it (upstream Dockerfiles at the pinned versions; for pushflow, the
/// Dockerfile here, checked below).
const IMAGES: &[Image] = &[
    // eclipse-temurin:21-jre-alpine + bash: busybox sh, Kafka's scripts.
    Image {
        name: "apache/kafka",
        shell: Shell::Posix,
        programs: &[
            "/opt/kafka/bin/kafka-broker-api-versions.sh",
            "/opt/kafka/bin/kafka-storage.sh",
            "/opt/kafka/bin/kafka-server-start.sh",
            "bash",
            "cat",
        ],
    },
    // confluentinc/cp-base-new (UBI 8 minimal), which installs curl.
    Image {
        name: "confluentinc/cp-schema-registry",
        shell: Shell::Bash,
        programs: &["curl"],
    },
    // Debian with the PostgreSQL client programs.
    Image {
        name: "postgres",
        shell: Shell::Bash,
        programs: &["pg_isready", "psql"],
    },
    // UBI 9 micro with minio and mc only: no curl in every release.
    Image {
        name: "minio/minio",
        shell: Shell::Bash,
        programs: &["minio", "mc"],
    },
    Image {
        name: "minio/mc",
        shell: Shell::Bash,
        programs: &["mc"],
    },
    // The image's own health probe and the trino CLI (/usr/bin/trino).
    Image {
        name: "trinodb/trino",
        shell: Shell::Bash,
        programs: &["/usr/lib/trino/bin/health-check", "trino"],
    },
    // debian:bookworm-slim (dash) plus curl from the Dockerfile.
    Image {
        name: "build: .",
        shell: Shell::Posix,
        programs: &[
            "pushflow", "curl", "sed", "cat", "mv", "test", "printf", "echo",
        ],
    },
];

fn image_of(svc: &Value) -> &'static Image {
    let name = match svc["build"].as_str() {
        Some(".") => "build: .",
        _ => {
            svc["image"]
                .as_str()
                .expect("image")
                .rsplit_once(':')
                .unwrap()
                .0
        }
    };
    IMAGES
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the table of images: add what it has"))
}

/// Shell words that are not programs to look for in the image.
const BUILTINS: &[&str] = &[
    "exec", "exit", "test", "[", "true", "false", "echo", "printf",
];

#[test]
fn healthchecks_use_only_what_their_image_has() {
    let compose = compose();
    for (name, s) in services(&compose) {
        let long_running = s["restart"].as_str() == Some("unless-stopped");
        let test = strings(&s["healthcheck"]["test"]);
        if test.is_empty() {
            assert!(!long_running, "{name} runs for good but has no healthcheck");
            continue;
        }
        let image = image_of(&s);
        let programs: Vec<String> = match test[0].as_str() {
            "CMD" => vec![test[1].clone()],
            "CMD-SHELL" => {
                assert_ne!(image.shell, Shell::None, "{name}: no shell in the image");
                if image.shell == Shell::Posix {
                    for bashism in ["/dev/tcp", "[[", "<<<"] {
                        assert!(
                            !test[1].contains(bashism),
                            "{name}: {bashism} needs bash; /bin/sh of {} is not bash",
                            image.name
                        );
                    }
                }
                test[1]
                    .split(['|', '&', ';'])
                    .filter_map(|c| {
                        let mut w = c.split_whitespace().skip_while(|w| *w == "exec");
                        w.next().map(str::to_string)
                    })
                    .filter(|p| !BUILTINS.contains(&p.as_str()))
                    .collect()
            }
            other => panic!("{name}: healthcheck test {other}"),
        };
        for p in programs {
            assert!(
                image.programs.contains(&p.as_str()),
                "{name}: its healthcheck runs {p}, which {} does not have",
                image.name
            );
        }
    }
    // The pushflow image has curl because its Dockerfile installs it in
    // the stage that runs (the last FROM).
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        runtime.starts_with("debian:"),
        "the runtime stage is Debian (dash)"
    );
    let installs = runtime
        .lines()
        .find(|l| l.contains("apt-get install"))
        .expect("apt-get install in the runtime stage");
    assert!(
        installs.split_whitespace().any(|w| w == "curl"),
        "{installs}"
    );
}

#[test]
fn the_production_stack_runs_no_push_simulator_nor_pushflow_s_registry() {
    let compose = compose();
    let pf = &compose["services"]["pushflow"];
    let cmd = strings(&pf["command"]);
    assert_eq!(cmd[..2], ["up", "--skip"], "{cmd:?}");
    let skipped: BTreeSet<&str> = cmd[2].split(',').collect();
    let topology = load("topology.yaml");
    let components = topology["components"].as_sequence().unwrap();
    let names: BTreeSet<&str> = components
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for s in &skipped {
        assert!(
            names.contains(s),
            "--skip {s}: not a component of topology.yaml"
        );
    }
    // The Confluent registry serves the schemas, real push services the
    // pushes: every component of these types is skipped.
    for c in components {
        if matches!(c["type"].as_str(), Some("push-sim" | "registry")) {
            let name = c["name"].as_str().unwrap();
            assert!(
                skipped.contains(name),
                "component {name} runs in production"
            );
        }
    }
    // Pushes go to https:// push services only.
    assert!(!environment(pf).contains_key("PUSHFLOW_ALLOW_INSECURE_PUSH"));
    // No push-sim server (`pushflow push-sim` without `keys`) either, run
    // as a pushflow image's command or from a script.
    let pf_image = pf["image"].as_str();
    for (name, s) in services(&compose) {
        let cmd = strings(&s["command"]);
        if s["image"].as_str() == pf_image && s["entrypoint"].is_null() {
            assert_ne!(cmd.first().map(String::as_str), Some("push-sim"), "{name}");
        }
        for part in strings(&s["entrypoint"]).iter().chain(&cmd) {
            for rest in part.split("pushflow push-sim").skip(1) {
                assert!(rest.starts_with(" keys"), "{name} runs the push simulator");
            }
        }
    }
}

#[test]
fn the_vapid_key_pair_is_made_once_kept_and_served() {
    let compose = compose();
    let services = services(&compose);
    let pf = &services["pushflow"];
    let env = environment(pf);
    let file = env
        .get("PUSHFLOW_VAPID_PRIVATE_KEY_FILE")
        .expect("pushflow reads its VAPID key from a file");
    // The private key lives in the file only; the public one is derived
    // from it, so the two cannot disagree.
    for var in ["PUSHFLOW_VAPID_PRIVATE_KEY", "PUSHFLOW_VAPID_PUBLIC_KEY"] {
        assert!(!env.contains_key(var), "{var} set beside the key file");
    }
    let dir = Path::new(file).parent().unwrap().to_str().unwrap();
    let (volume, ro) = named_volume_at(&compose, pf, dir)
        .unwrap_or_else(|| panic!("no named volume at {dir}: the key would not survive"));
    assert!(ro, "pushflow only reads the key");
    // One one-shot service writes it there, before pushflow starts.
    let makers: Vec<&String> = services
        .iter()
        .filter(|(_, s)| named_volume_at(&compose, s, dir) == Some((volume.clone(), false)))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(makers, ["vapid-keys"], "who writes the {volume} volume");
    assert_eq!(
        conditions(pf).get("vapid-keys").map(String::as_str),
        Some("service_completed_successfully")
    );
    // The pushflow image makes that folder its user's, so the fresh
    // volume starts writable by it.
    assert!(read("Dockerfile").contains(dir), "Dockerfile creates {dir}");

    // Run vapid-keys' script here, against a scratch folder: it makes a
    // key on the first run, keeps it on the next.
    let scratch = tmp_dir("vapid");
    let script = script(&services["vapid-keys"]).replace(dir, scratch.to_str().unwrap());
    let key_file = scratch.join(Path::new(file).file_name().unwrap());
    let first = sh(&script);
    assert!(first.status.success(), "{first:?}");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 43, "a base64url P-256 scalar: {key:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by its owner only"
        );
    }
    let again = sh(&script);
    assert!(again.status.success(), "{again:?}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key, "kept");

    // With the compose environment and that file, dispatch signs with the
    // key and ingest serves its public half at /v1/vapid-public-key.
    let env_with_file = |k: &str| {
        (k == "PUSHFLOW_VAPID_PRIVATE_KEY_FILE").then(|| key_file.to_str().unwrap().to_string())
    };
    let signing = pushflow_dispatch::vapid::key_from_env(env_with_file)
        .unwrap()
        .expect("dispatch finds the key");
    let served = pushflow_ingest::vapid::public_key(env_with_file, None).unwrap();
    assert_eq!(served.as_deref(), Some(signing.public_b64.as_str()));
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn kafka_runs_with_the_settings_of_the_test_broker() {
    let compose = compose();
    let kafka = &compose["services"]["kafka"];
    // The same Kafka as deploy/kafka/pom.xml pins for local use and tests.
    let pom = read("deploy/kafka/pom.xml");
    let version = pom
        .split("<kafka.version>")
        .nth(1)
        .and_then(|r| r.split("</kafka.version>").next())
        .expect("kafka.version in deploy/kafka/pom.xml");
    assert_eq!(
        kafka["image"].as_str(),
        Some(format!("apache/kafka:{version}").as_str())
    );
    // The image's KAFKA_* variables go through a wrapper this entrypoint
    // does not run: none may pretend to configure the broker.
    assert!(
        environment(kafka).keys().all(|k| !k.starts_with("KAFKA_")),
        "KAFKA_* variables: put shared settings in deploy/kafka/server.properties"
    );
    let shared = properties(&read("deploy/kafka/server.properties"));
    let (file, written) = kafka_settings(kafka);
    let per_deployment = [
        "listeners",
        "advertised.listeners",
        "controller.quorum.voters",
        "log.dirs",
    ];
    for (k, v) in &shared {
        assert_eq!(
            written.get(k),
            Some(v),
            "{k} differs from server.properties"
        );
    }
    let extra: Vec<&str> = written
        .keys()
        .filter(|k| !shared.contains_key(*k))
        .map(String::as_str)
        .collect();
    assert_eq!(extra, {
        let mut p = per_deployment.to_vec();
        p.sort();
        p
    });
    // The log survives restarts, and the node starts from that very file.
    let log = &written["log.dirs"];
    assert!(
        named_volume_at(&compose, kafka, log).is_some(),
        "log.dirs {log} is not on a named volume"
    );
    let script = script(kafka);
    assert!(
        script.contains("kafka-storage.sh format --ignore-formatted")
            && script.contains(&format!("--config {file}")),
        "formats the log dir once, with {file}"
    );
    assert!(script.contains(&format!("exec /opt/kafka/bin/kafka-server-start.sh {file}")));
    assert!(written["controller.quorum.voters"].ends_with("@kafka:9093"));
    assert!(written["listeners"].contains("CONTROLLER://:9093"));
}

#[test]
fn a_one_shot_step_creates_the_trino_tables_from_pushflow_lake_ddl() {
    let compose = compose();
    let services = services(&compose);
    let (ddl, init, trino) = (
        &services["lake-ddl"],
        &services["trino-init"],
        &services["trino"],
    );
    assert_eq!(ddl["build"].as_str(), Some("."), "lake-ddl runs pushflow");
    assert_eq!(init["image"], trino["image"], "trino-init runs Trino's CLI");
    // lake-ddl runs `pushflow lake ddl` and moves the Trino script into
    // place last, so trino-init never sees half a file…
    let script = script(ddl);
    let args: Vec<&str> = script
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("pushflow "))
        .expect("lake-ddl runs pushflow lake ddl")
        .split('>')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(args[..2], ["lake", "ddl"]);
    let written = script
        .lines()
        .last()
        .and_then(|l| l.trim().strip_prefix("mv "))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the script ends by moving the finished file into place")
        .to_string();
    let dir = Path::new(&written).parent().unwrap().to_str().unwrap();
    let (volume, ro) = named_volume_at(&compose, ddl, dir).expect("a named volume");
    assert!(!ro);
    // …and trino-init runs that file in the Trino server once it is up.
    assert_eq!(named_volume_at(&compose, init, dir), Some((volume, true)));
    let cli = strings(&init["entrypoint"]);
    let arg = |flag: &str| {
        let i = cli
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag}"));
        cli[i + 1].clone()
    };
    assert_eq!(cli[0], "trino");
    assert_eq!(arg("--file"), written);
    let trino_port = strings(&trino["ports"])[0]
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(arg("--server"), format!("http://trino:{trino_port}"));
    let catalog = arg("--catalog");
    let mounted = mounts(trino);
    let (catalog_file, _, _) = mounted
        .iter()
        .find(|(_, target, _)| *target == format!("/etc/trino/catalog/{catalog}.properties"))
        .expect("the catalog is mounted into trino");
    assert_eq!(
        conditions(init),
        BTreeMap::from([
            ("trino".to_string(), "service_healthy".to_string()),
            (
                "lake-ddl".to_string(),
                "service_completed_successfully".to_string()
            ),
        ])
    );
    // The DDL points where Trino's catalog and pushflow's sink keep the lake.
    let location = args
        .iter()
        .position(|a| *a == "--location")
        .map(|i| args[i + 1])
        .expect("--location");
    let bucket = |url: &str| {
        url.trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    let catalog_props = properties(&read(catalog_file.trim_start_matches("./")));
    assert_eq!(
        bucket(location),
        bucket(&catalog_props["hive.metastore.catalog.dir"])
    );
    let lake_url = environment(&services["pushflow"])["PUSHFLOW_LAKE_URL"].clone();
    assert_eq!(
        location.trim_end_matches('/'),
        lake_url.trim_end_matches('/')
    );

    // Run lake-ddl's script here (its volume a scratch folder): the file
    // trino-init runs holds Trino statements only, one per `;`-terminated
    // block (the CLI's --file runs them in order): the schema, then a
    // table and its partition sync for every topic the lake sink writes.
    let scratch = tmp_dir("lake-ddl");
    let run = sh(&script.replace(dir, scratch.to_str().unwrap()));
    assert!(run.status.success(), "{run:?}");
    let file = scratch.join(Path::new(&written).file_name().unwrap());
    let sql: String = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    std::fs::remove_dir_all(&scratch).unwrap();
    let statements: Vec<&str> = sql
        .split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let last = statements.last().expect("statements");
    assert!(
        sql.trim_end().ends_with(';') && !last.contains(';'),
        "every statement ends with ; at the end of a line: {last}"
    );
    for s in &statements {
        assert!(
            !s.contains('`') && !s.contains("EXTERNAL TABLE") && !s.contains("TBLPROPERTIES"),
            "not Trino: {s}"
        );
    }
    assert!(
        statements[0].starts_with("CREATE SCHEMA"),
        "the schema comes first: {statements:#?}"
    );
    // Names given in full are in the catalog trino-init and trino use.
    for s in statements.iter().filter(|s| s.starts_with("CREATE")) {
        let name = s
            .split('(')
            .next()
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap();
        if name.contains('.') {
            let first = name.split('.').next().unwrap().trim_matches('"');
            assert_eq!(first, catalog, "{s}");
        }
    }
    let topology = load("topology.yaml");
    let lake = topology["components"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["type"].as_str() == Some("s3-parquet"))
        .unwrap();
    for topic in strings(&lake["inputs"]) {
        let table = topic.replace('.', "_");
        let names = |s: &str| {
            // The words before the columns (`CREATE TABLE … "name" (`) or
            // the arguments of a CALL.
            let head = s.split(['(', ',']).take(3).collect::<Vec<_>>().join(" ");
            head.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|w| w == table)
        };
        let count = |prefix: &str| {
            statements
                .iter()
                .filter(|s| s.starts_with(prefix) && names(s))
                .count()
        };
        assert_eq!(count("CREATE TABLE"), 1, "one CREATE TABLE for {table}");
        assert_eq!(count("CALL"), 1, "one partition sync for {table}");
    }
}

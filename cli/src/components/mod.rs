//! The component registry: the one place that maps the `type:` strings of
//! `topology.yaml` to components. A new component adds one entry here.

mod registry;

use pushflow_runtime::component::Component;
use pushflow_runtime::topology::{ComponentSpec, Topology, TopologyError};

/// Checks a component's entry without I/O and returns it ready to run, or
/// says what is wrong as (field, message).
type Validate = fn(&ComponentSpec, &Topology) -> Result<Box<dyn Component>, (String, String)>;

/// One component type.
pub struct Kind {
    /// The `type:` string.
    pub name: &'static str,
    /// Pure validation and construction.
    pub validate: Validate,
    /// Serves HTTP on an address of its own, with its own `/healthz` and
    /// `/metrics` (so `pushflow run` binds no admin address for it).
    pub serves_http: bool,
    /// Starts before the topology is applied (the others need it then).
    pub starts_first: bool,
}

/// Every component type pushflow knows.
pub fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "registry",
            validate: registry::validate,
            serves_http: true,
            starts_first: true,
        },
        Kind {
            name: "aggregate",
            validate: pushflow_aggregate::validate,
            serves_http: false,
            starts_first: false,
        },
        Kind {
            name: "analytics",
            validate: pushflow_analytics::validate,
            serves_http: false,
            starts_first: false,
        },
        Kind {
            name: "ingest",
            validate: pushflow_ingest::validate,
            serves_http: true,
            starts_first: false,
        },
        Kind {
            name: "s3-parquet",
            validate: pushflow_s3_parquet::validate,
            serves_http: false,
            starts_first: false,
        },
        Kind {
            name: "dispatch",
            validate: pushflow_dispatch::validate,
            serves_http: false,
            starts_first: false,
        },
        Kind {
            name: "scheduler",
            validate: pushflow_scheduler::validate,
            serves_http: false,
            starts_first: false,
        },
        Kind {
            name: "push-sim",
            validate: pushflow_push_sim::validate,
            serves_http: true,
            starts_first: false,
        },
        Kind {
            name: "dashboard",
            validate: pushflow_dashboard::validate,
            serves_http: true,
            starts_first: false,
        },
    ]
}

/// A validated component with its entry.
pub struct Validated {
    /// Its entry in the topology.
    pub spec: ComponentSpec,
    /// The component, ready to run.
    pub component: Box<dyn Component>,
    /// Its kind's [`Kind::serves_http`].
    pub serves_http: bool,
    /// Its kind's [`Kind::starts_first`].
    pub starts_first: bool,
}

/// Validates every component of `t` (no I/O), in file order.
pub fn validate_all(t: &Topology) -> Result<Vec<Validated>, TopologyError> {
    let kinds = kinds();
    t.components
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let entry = format!("components[{i}] {:?}", spec.name);
            let Some(kind) = kinds.iter().find(|k| k.name == spec.kind) else {
                let known: Vec<&str> = kinds.iter().map(|k| k.name).collect();
                return Err(TopologyError::field(
                    &t.path,
                    entry,
                    "type",
                    format!(
                        "unknown component type {:?}; known types: {}",
                        spec.kind,
                        known.join(", ")
                    ),
                ));
            };
            let component = (kind.validate)(spec, t)
                .map_err(|(field, msg)| TopologyError::field(&t.path, entry, &field, msg))?;
            Ok(Validated {
                spec: spec.clone(),
                component,
                serves_http: kind.serves_http,
                starts_first: kind.starts_first,
            })
        })
        .collect()
}

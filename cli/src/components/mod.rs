//! The component registry: the one place that maps the `type:` strings of
//! `topology.yaml` to components. A new component adds one entry here.

use pushflow_runtime::component::{Component, KindInfo};
use pushflow_runtime::topology::{ComponentSpec, Topology, TopologyError};

/// Every component type pushflow knows, one line each.
pub fn kinds() -> Vec<KindInfo> {
    vec![
        KindInfo::of::<pushflow_registry::RegistryComponent>(),
        KindInfo::of::<pushflow_aggregate::Aggregate>(),
        KindInfo::of::<pushflow_analytics::Analytics>(),
        KindInfo::of::<pushflow_ingest::IngestComponent>(),
        KindInfo::of::<pushflow_s3_parquet::S3ParquetSink>(),
        KindInfo::of::<pushflow_dispatch::Dispatch>(),
        KindInfo::of::<pushflow_scheduler::Scheduler>(),
        KindInfo::of::<pushflow_push_sim::PushSimComponent>(),
        KindInfo::of::<pushflow_dashboard::DashboardComponent>(),
    ]
}

/// A validated component with its entry.
pub struct Validated {
    /// Its entry in the topology.
    pub spec: ComponentSpec,
    /// The component, ready to run.
    pub component: Box<dyn Component>,
    /// Its kind's [`KindInfo::serves_http`].
    pub serves_http: bool,
    /// Its kind's [`KindInfo::starts_first`].
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
            let component = kind
                .validate(spec, t)
                .map_err(|e| TopologyError::field(&t.path, entry, &e.field, e.message))?;
            Ok(Validated {
                spec: spec.clone(),
                component,
                serves_http: kind.serves_http,
                starts_first: kind.starts_first,
            })
        })
        .collect()
}

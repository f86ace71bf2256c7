//! `dashboard` as a component of `pushflow up`: serves the routes of
//! [`crate::api`], `/healthz` (Postgres reachable) and `/metrics` on
//! `settings.addr` (`PUSHFLOW_DASHBOARD_ADDR`).

use async_trait::async_trait;
use pushflow_runtime::component::{Component, ConfigError, Context, Entry, Kind};
use pushflow_runtime::http::{admin_router, bind, serve};
use pushflow_runtime::probe::Dependency;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::RuntimeError;

use crate::api::{router, App};
use crate::config::{check_windows, DashboardConfig, DashboardSettings};
use crate::store::Store;
use crate::DashboardError;

/// A validated `dashboard` component.
pub struct DashboardComponent {
    config: DashboardConfig,
    database_url: String,
}

impl DashboardComponent {
    /// Where it will listen.
    pub fn addr(&self) -> &str {
        &self.config.addr
    }
}

impl DashboardComponent {
    /// [`Kind::validate`] with the environment given (tests): parses the
    /// entry's settings, then checks it.
    pub fn with_env(
        spec: &ComponentSpec,
        t: &Topology,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<DashboardComponent, DashboardError> {
        DashboardComponent::checked(DashboardSettings::from_yaml(&spec.settings)?, spec, t, env)
    }

    fn checked(
        settings: DashboardSettings,
        spec: &ComponentSpec,
        t: &Topology,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<DashboardComponent, DashboardError> {
        let config = settings.validate(&env)?;
        if !spec.inputs.is_empty() || !spec.outputs.is_empty() {
            return Err(DashboardError::config(
                "inputs",
                "the dashboard reads Postgres only; remove `inputs` and `outputs`",
            ));
        }
        // Offer only windows the aggregate computes (when the topology says).
        for a in t.components.iter().filter(|c| c.kind == "aggregate") {
            if let Some(serde_yaml::Value::Sequence(ws)) = a.settings.get("windows") {
                let sizes: Vec<String> = ws
                    .iter()
                    .filter_map(|w| w.get("size").and_then(|s| s.as_str()).map(String::from))
                    .collect();
                check_windows(&config, &sizes)?;
            }
        }
        Ok(DashboardComponent {
            config,
            database_url: t.services.database_url.clone(),
        })
    }
}

/// Checks a `dashboard` entry without I/O (settings, tokens, schemas, the
/// windows against the topology's aggregate; the variables from the
/// environment).
impl Kind for DashboardComponent {
    const TYPE: &'static str = "dashboard";
    const SERVES_HTTP: bool = true;
    type Settings = DashboardSettings;

    fn validate(e: Entry<'_, DashboardSettings>) -> Result<Self, ConfigError> {
        let (settings, spec, t) = (e.settings, e.spec, e.topology);
        DashboardComponent::checked(settings, spec, t, |k| std::env::var(k).ok()).map_err(|e| {
            match e {
                DashboardError::Config { field, message } => {
                    ConfigError::new(format!("settings.{field}"), message)
                }
                other => ConfigError::new("settings", other.to_string()),
            }
        })
    }
}

#[async_trait]
impl Component for DashboardComponent {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        let name = ctx.spec.name.clone();
        let listener = bind(&self.config.addr).await?;
        let store = Store::new(&self.database_url, &self.config)?;
        let addr = self.config.addr.clone();
        let app = router(App::new(self.config, store)).merge(admin_router(ctx.health.clone()));
        ctx.health.ok(&name);
        ctx.watch(vec![Dependency::Postgres]);
        tracing::info!(addr = %addr, "dashboard listening");
        serve(listener, app, ctx.shutdown.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology(extra: &str) -> Topology {
        let dir = std::env::temp_dir().join(format!(
            "pushflow-dashboard-{}",
            std::process::id() as u64 * 1000 + extra.len() as u64
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("topology.yaml");
        std::fs::write(
            &path,
            format!("services: {{}}\ntopics: []\ncomponents:\n{extra}"),
        )
        .unwrap();
        let t = Topology::load(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        t
    }

    #[test]
    fn checks_its_entry_against_the_topology() {
        let entry = |settings: &str| {
            format!(
                "  - name: aggregate\n    type: aggregate\n    settings:\n      windows: [{{size: 1m, grace: 5m}}, {{size: 1h, grace: 30m}}]\n\
                 \x20 - name: dashboard\n    type: dashboard\n    settings:\n      tokens: [{{name: dev, sha256: \"{}\"}}]\n{settings}",
                pushflow_runtime::bearer::hash_token("pushflow-dev-token")
            )
        };
        let t = topology(&entry(""));
        let spec = t.components.iter().find(|c| c.kind == "dashboard").unwrap();
        let c = DashboardComponent::with_env(spec, &t, |_| None).unwrap();
        assert_eq!(c.addr(), "127.0.0.1:8082");
        let c = DashboardComponent::with_env(spec, &t, |k| {
            (k == "PUSHFLOW_DASHBOARD_ADDR").then(|| "127.0.0.1:18082".into())
        })
        .unwrap();
        assert_eq!(c.addr(), "127.0.0.1:18082");

        let t = topology(&entry("      windows: [1h, 5m]\n"));
        let spec = t.components.iter().find(|c| c.kind == "dashboard").unwrap();
        let e = pushflow_runtime::component::validate::<DashboardComponent>(spec, &t)
            .err()
            .unwrap();
        assert_eq!(e.field, "settings.windows[1]");
        assert!(e.message.contains("1m, 1h"), "{e}");
    }
}

//! `settings:` of a `push-sim` component in `topology.yaml`.

use serde::Deserialize;

use crate::Behaviour;

/// What `topology.yaml` says about a push simulator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSimSettings {
    /// Where it listens; push endpoints are `http://<addr>/push/<id>`.
    #[serde(default = "default_addr")]
    pub addr: String,
    /// Topic generated subscribers are published to.
    #[serde(default = "default_topic")]
    pub subscriptions_topic: String,
    /// How it answers at start (also settable over `POST /sim/behaviour`).
    #[serde(default)]
    pub behaviour: Behaviour,
}

fn default_addr() -> String {
    "127.0.0.1:8090".into()
}
fn default_topic() -> String {
    pushflow_schemas::catalogue::SUBSCRIPTION_CREATED
        .name
        .into()
}

impl Default for PushSimSettings {
    fn default() -> Self {
        PushSimSettings {
            addr: default_addr(),
            subscriptions_topic: default_topic(),
            behaviour: Behaviour::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings() {
        let s: PushSimSettings = serde_yaml::from_str(
            "addr: 127.0.0.1:9999\nbehaviour:\n  verify_sample: 0.01\n  random:\n    - fraction: 0.1\n      rule: {status: 500}\n",
        )
        .unwrap();
        assert_eq!(s.addr, "127.0.0.1:9999");
        assert_eq!(s.behaviour.verify_sample, 0.01);
        assert_eq!(s.behaviour.random[0].rule.status, 500);
        assert!(serde_yaml::from_str::<PushSimSettings>("adr: x\n").is_err());
        assert_eq!(
            serde_yaml::from_str::<PushSimSettings>("{}").unwrap(),
            PushSimSettings::default()
        );
    }
}

//! `settings:` of a `registry` component in `topology.yaml` (none yet: it
//! listens on `services.registry_addr` and stores in `services.database_url`).

use serde::Deserialize;

/// What `topology.yaml` says about the registry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_refuses_unknown_fields() {
        assert!(serde_yaml::from_str::<RegistrySettings>("{}").is_ok());
        let e = serde_yaml::from_str::<RegistrySettings>("port: 8081").unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
    }
}

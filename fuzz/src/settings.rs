//! `topology`, the binary's side: an accepted topology's components
//! validated by their kinds (`components::validate_all`, the registry of
//! `cli/src/components/`), the second half of `pushflow topology check`.
//!
//! Properties: every component validates or the refusal names the file,
//! the component's entry (`` components[i] "name" ``) and a field
//! (`` field `settings`: … ``, `` field `type`: unknown component type … ``
//! only for a type the registry lacks); what validates is every component,
//! in file order.

use pushflow_runtime::topology::Topology;

/// Checks the properties of the module doc for an accepted topology.
pub fn check(t: &Topology) {
    let kinds = crate::components::kinds();
    match crate::components::validate_all(t) {
        Ok(validated) => {
            assert_eq!(validated.len(), t.components.len());
            for (v, c) in validated.iter().zip(&t.components) {
                assert_eq!((&v.spec.name, &v.spec.kind), (&c.name, &c.kind));
                assert!(kinds.iter().any(|k| k.name == c.kind));
                let _ready = &v.component;
            }
        }
        Err(e) => {
            assert_eq!(e.file, t.path.display().to_string());
            let c = t
                .components
                .iter()
                .enumerate()
                .find(|(i, c)| e.entry == format!("components[{i}] {:?}", c.name))
                .map(|(_, c)| c)
                .unwrap_or_else(|| panic!("{e}: entry {:?} is no component", e.entry));
            assert!(e.message.starts_with("field `"), "{e}: names no field");
            let unknown_type = !kinds.iter().any(|k| k.name == c.kind);
            assert_eq!(
                e.message
                    .starts_with("field `type`: unknown component type"),
                unknown_type,
                "{e}"
            );
        }
    }
}

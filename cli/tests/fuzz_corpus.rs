//! Replays the `topology` fuzz corpus (`fuzz/corpus/topology/`) through
//! the fuzz target's own property checks (`fuzz/src/{topology,settings}.rs`,
//! compiled in by path, with the binary's component registry), on stable
//! and without libFuzzer: what `pushflow topology check` refuses (exit 2)
//! names the file, the entry and the field.

#[path = "../src/components/mod.rs"]
#[expect(
    dead_code,
    reason = "only validation is used here, not what `up` reads of a kind"
)]
mod components;
#[path = "../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../fuzz/src/settings.rs"]
mod settings;
#[path = "../../fuzz/src/topology.rs"]
mod topology;

#[test]
fn topology_corpus_with_component_settings() {
    corpus::replay("topology", |bytes| {
        if let Some(t) = topology::check(corpus::repo_root(), bytes) {
            settings::check(&t);
        }
    });
}

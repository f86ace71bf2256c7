//! Where the corpora are, and the replay the workspace tests run over them.

use std::path::{Path, PathBuf};

/// The repository's root (where `topology.yaml`, `schemas/` and `fuzz/`
/// are), found upwards from the crate being built.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("fuzz/corpus").is_dir())
        .expect("the crate is inside the pushflow repository")
}

/// `fuzz/corpus/<target>/`.
pub fn dir(target: &str) -> PathBuf {
    repo_root().join("fuzz/corpus").join(target)
}

/// Runs `check` on every file of `target`'s corpus, then fails naming
/// every file whose check panicked.
pub fn replay(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir(target))
        .unwrap_or_else(|e| panic!("{}: {e}", dir(target).display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the {target} corpus is empty");
    let failed: Vec<String> = files
        .iter()
        .filter(|p| {
            let bytes = std::fs::read(p).expect("a corpus file reads");
            std::panic::catch_unwind(|| check(&bytes)).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs fail their check: {failed:#?}",
        failed.len(),
        files.len()
    );
}

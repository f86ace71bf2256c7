//! Writing seed inputs, for the seed generators of the replay tests (valid
//! inputs from the real encoders and known bad ones, named `seed-*`).

/// Writes `fuzz/corpus/<target>/seed-<name>`.
pub fn write(target: &str, name: &str, bytes: &[u8]) {
    let path = crate::corpus::dir(target).join(format!("seed-{name}"));
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

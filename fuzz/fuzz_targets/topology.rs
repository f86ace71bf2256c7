//! Any text as `topology.yaml`: parsed and checked by the runtime, then
//! its components by their kinds (see `pushflow_fuzz::topology` and
//! `pushflow_fuzz::settings`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(t) = pushflow_fuzz::topology::check(pushflow_fuzz::corpus::repo_root(), data) {
        pushflow_fuzz::settings::check(&t);
    }
});

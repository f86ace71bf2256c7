//! Any text as a ping token and as `PUSHFLOW_PING_KEYS` (see
//! `pushflow_fuzz::token`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pushflow_fuzz::token::check(data));

//! Any bytes as a Kafka record value: decoded by the codec against every
//! catalogue topic, and by the lake's fast decoder (see
//! `pushflow_fuzz::wire` and `pushflow_fuzz::lake`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pushflow_fuzz::wire::check(data);
    pushflow_fuzz::lake::check(data);
});

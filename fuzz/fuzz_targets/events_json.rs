//! Any `<topic> <content-type>\n<body>` as a `POST /v1/events` request
//! body (see `pushflow_fuzz::events`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pushflow_fuzz::events::check(data));

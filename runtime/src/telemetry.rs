//! Structured logs (`tracing`) and the process-wide Prometheus recorder.
//!
//! Metric names are stable per component kind (STYLE.md):
//! `pushflow_records_in_total`, `pushflow_records_out_total`,
//! `pushflow_records_failed_total`, `pushflow_records_dlq_total`,
//! `pushflow_batch_duration_seconds`, each labelled with `component`.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Starts logging to stderr: JSON lines when `json`, else human-readable.
/// The level comes from `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_tracing(json: bool) {
    init_tracing_at(json, "info");
}

/// [`init_tracing`] with another default filter than `info` (`RUST_LOG`
/// still wins), e.g. `warn` for commands that draw progress bars.
pub fn init_tracing_at(json: bool, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
}

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests): then ours
        // only renders what it sees, which is nothing; that is harmless.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

//! The aggregate benchmark without the whole binary:
//! `cargo run --release -p pushflow-aggregate --example bench -- 200000 [lanes]`
//! (same code as `pushflow bench aggregate --events 200000`).

#[tokio::main]
async fn main() {
    let events = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let brokers = std::env::var("PUSHFLOW_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let db = std::env::var("PUSHFLOW_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/pushflow".into());
    let args = pushflow_aggregate::cli::BenchArgs {
        events,
        max_batch: 10_000,
        baseline_events: 5_000,
        commit_connections: std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(2),
    };
    match pushflow_aggregate::bench::bench(&brokers, &Default::default(), &db, &args).await {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

//! `pushflow billing`: a month's impressions and clicks per store, from the
//! view `billing_monthly_impressions`.

use clap::Args;
use pushflow_aggregate::billing::{self, Format};
use pushflow_aggregate::AggregateError;
use pushflow_runtime::topology::Topology;
use std::path::Path;

/// `pushflow billing`: a month's impressions and clicks per store, from the
/// view `billing_monthly_impressions`.
#[derive(Debug, Clone, Args)]
pub struct BillingArgs {
    /// The month, as YYYY-MM (UTC calendar month of the event time).
    #[arg(long)]
    pub month: String,
    /// Only this store.
    #[arg(long)]
    pub store: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `pushflow billing`: prints the month's totals.
pub async fn run(path: &Path, args: &BillingArgs) -> Result<(), AggregateError> {
    let t = Topology::load(path).map_err(|e| AggregateError::Invalid(e.to_string()))?;
    let rows = billing::rows(&t.services.database_url, &args.month, args.store.as_deref()).await?;
    print!("{}", billing::render(&rows, args.format));
    Ok(())
}

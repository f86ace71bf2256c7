//! `pushflow billing`: a month's totals from `billing_monthly_impressions`
//! (the view billing reads), as a table, CSV or JSON.

use pushflow_runtime::postgres::{pg, PgError};

use crate::{store, AggregateError};

/// Output format of `pushflow billing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// One row of the view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BillingRow {
    /// Merchant.
    pub store_id: String,
    /// First day of the month, YYYY-MM-DD.
    pub month: String,
    /// Distinct delivered notifications.
    pub impressions: i64,
    /// Distinct clicked notifications.
    pub clicks: i64,
}

/// Checks `YYYY-MM` and returns the first day, `YYYY-MM-01`.
pub fn parse_month(month: &str) -> Result<String, AggregateError> {
    let bad = || {
        AggregateError::Invalid(format!(
            "--month {month:?}: write the month as YYYY-MM, e.g. 2026-11"
        ))
    };
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let (y, m): (u32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if y < 1970 || !(1..=12).contains(&m) || month.len() != 7 {
        return Err(bad());
    }
    Ok(format!("{y:04}-{m:02}-01"))
}

/// Reads the view's rows for a month (and optionally one store).
pub async fn rows(
    database_url: &str,
    month: &str,
    store_id: Option<&str>,
) -> Result<Vec<BillingRow>, AggregateError> {
    let first = parse_month(month)?;
    let client = store::connect(database_url).await?;
    let rows = client
        .query(
            "SELECT store_id, month::text, impressions, clicks FROM public.billing_monthly_impressions
             WHERE month = $1::text::date AND ($2::text IS NULL OR store_id = $2) ORDER BY store_id",
            &[&first, &store_id],
        )
        .await
        .map_err(pg("read billing_monthly_impressions (has the aggregate run?)"))?;
    Ok(rows
        .iter()
        .map(|r| BillingRow {
            store_id: r.get(0),
            month: r.get(1),
            impressions: r.get(2),
            clicks: r.get(3),
        })
        .collect())
}

/// The pings the aggregate counted late for a window of `store_id`'s
/// campaigns (table `<schema>.late_events`): (window size as Postgres
/// prints the interval, e.g. `00:01:00`, distinct (notification, kind)).
pub async fn late_counts(
    database_url: &str,
    schema: &str,
    store_id: &str,
) -> Result<Vec<(String, i64)>, AggregateError> {
    let client = store::connect(database_url).await?;
    let rows = client
        .query(
            &format!(
                "SELECT window_size::text, count(DISTINCT (notification_id, kind)) FROM {schema}.late_events
                 WHERE store_id = $1 GROUP BY window_size ORDER BY window_size"
            ),
            &[&store_id],
        )
        .await
        .map_err(|e| PgError::new(format!("read {schema}.late_events"), e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Formats rows as the command prints them.
pub fn render(rows: &[BillingRow], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(rows).unwrap_or_default() + "\n",
        Format::Csv => {
            let mut out = String::from("store_id,month,impressions,clicks\n");
            for r in rows {
                let id = if r.store_id.contains([',', '"', '\n']) {
                    format!("\"{}\"", r.store_id.replace('"', "\"\""))
                } else {
                    r.store_id.clone()
                };
                out += &format!("{id},{},{},{}\n", r.month, r.impressions, r.clicks);
            }
            out
        }
        Format::Table => {
            let w = rows
                .iter()
                .map(|r| r.store_id.len())
                .max()
                .unwrap_or(0)
                .max(8);
            let mut out = format!(
                "{:<w$}  {:<10}  {:>12}  {:>10}\n",
                "store_id", "month", "impressions", "clicks"
            );
            for r in rows {
                out += &format!(
                    "{:<w$}  {:<10}  {:>12}  {:>10}\n",
                    r.store_id, r.month, r.impressions, r.clicks
                );
            }
            let (i, c) = rows
                .iter()
                .fold((0, 0), |(i, c), r| (i + r.impressions, c + r.clicks));
            out += &format!("{:<w$}  {:<10}  {:>12}  {:>10}\n", "total", "", i, c);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_months_and_renders_formats() {
        assert_eq!(parse_month("2026-02").unwrap(), "2026-02-01");
        assert!(parse_month("2026-13").is_err());
        assert!(parse_month("26-1").is_err());
        let rows = vec![BillingRow {
            store_id: "s,1".into(),
            month: "2026-02-01".into(),
            impressions: 3,
            clicks: 1,
        }];
        assert_eq!(
            render(&rows, Format::Csv),
            "store_id,month,impressions,clicks\n\"s,1\",2026-02-01,3,1\n"
        );
        assert!(render(&rows, Format::Json).contains("\"impressions\": 3"));
        assert!(render(&rows, Format::Table).contains("total"));
    }
}

//! Exact windowed impressions and clicks into Postgres, and the billing view (being written).

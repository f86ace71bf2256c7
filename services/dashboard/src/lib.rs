//! `pushflow dashboard`, the merchant API and dashboard page: a store's
//! campaigns with their funnel (dispatched → delivered → clicked, CTR),
//! one campaign's series per window, subscriber growth per day and the
//! month's billed impressions, as JSON under `/api/v1` ([`api`]) and as a
//! page at `/` ([`page`]) with charts drawn as SVG by the server
//! ([`chart`]).
//!
//! Guarantee: read-only. It writes nothing anywhere — no topic, no table;
//! its Postgres connections are read-only transactions — so it can neither
//! lose nor double an event, and a crash costs only the requests in
//! flight. Its numbers are those of the exactly-once aggregates, read as
//! committed: delivered / clicked from the aggregate's `window_stats` and
//! `late_events` (schema `aggregate`), billing from the view
//! `billing_monthly_impressions` itself, dispatched / failed / expired,
//! campaign titles and times and subscribers per day from the analytics
//! component's `campaigns`, `campaign_totals` and `store_days` (schema
//! `analytics`); see [`store`]. Every `/api/v1` call needs a bearer token
//! covering the store (`pushflow_runtime::bearer`).

pub mod api;
pub mod chart;
pub mod component;
pub mod config;
mod error;
pub mod page;
pub mod store;

pub use component::DashboardComponent;
pub use config::{DashboardConfig, DashboardSettings};
pub use error::DashboardError;

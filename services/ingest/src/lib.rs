//! The HTTP front door: internal events and service-worker pings (being written).

//! Fan-out aggregation: a route answers by calling several upstreams and combining their
//! JSON answers into one. This capability owns the route's `aggregate` section
//! ([`config`]: parts, their order, pre-rendered failure answers) and the pure combination
//! of the answers ([`combine`]); the calls themselves are made on the worker by
//! `proxy/aggregate.rs`, through the one upstream client.

pub mod combine;
pub mod config;

pub use config::{Aggregate, Combine, Conflict, FieldFilter, Part};

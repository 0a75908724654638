//! Request and response transforms: a route's `transform` reshapes what goes upstream
//! (path, method, host, headers, query, JSON body) and what comes back (status, headers,
//! `Server`/`Via`, JSON body), with values templated over request facts.
//!
//! Compiled at config load (`config.rs`, `template.rs`, `json.rs`); applied on the request
//! path by the route's `Transform` filter (`proxy::pipeline`).

pub mod config;
pub mod json;
pub mod template;

pub use config::Transform;

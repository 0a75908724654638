//! Strait: a thread-per-core HTTP/1.1 and HTTP/2 API gateway and reverse proxy.
//!
//! `main.rs` is a thin CLI over this library; `tests/`, `fuzz/` and `bench/` link it too.
//! See `docs/architecture.md` for how the pieces fit.

pub mod access;
pub mod admin;
pub mod aggregate;
pub mod auth;
pub mod cache;
pub mod config;
pub mod control;
pub mod cors;
pub mod deadline;
pub mod error;
pub mod http1;
pub mod http2;
pub mod io;
pub mod observe;
pub mod proxy;
pub mod proxy_protocol;
pub mod ratelimit;
pub mod runtime;
#[cfg(test)]
mod scratch;
pub mod settings;
mod slots;
pub mod tls;
pub mod transform;
pub mod upstream;
#[cfg(test)]
mod wake_count;

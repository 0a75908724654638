//! HTTP caching (RFC 9111) for routes that opt in: named stores shared by the workers
//! (`store.rs`), the rules of a shared cache (`policy.rs`).

pub mod policy;
pub mod store;

//! HTTP caching (RFC 9111) for routes that opt in: named stores shared by the workers
//! (`store.rs`, bounded, S3-FIFO), the rules of a shared cache (`policy.rs`), the key of a
//! request (`key.rs`), what is stored (`object.rs`) and the sections that configure it all
//! (`config.rs`). The request path's side is `proxy/cache.rs`.

pub mod config;
pub mod key;
pub mod object;
pub mod policy;
pub mod store;

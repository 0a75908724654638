//! The HTTP/2 side of the codec, over the h2 crate (which owns framing, HPACK and flow
//! control): heads converted between HTTP/2 and the gateway's HTTP/1.1 form
//! (`convert.rs`), and the control-frame budget read off a client's frames (`flood.rs`).
//! Imports nothing from the crate but the HTTP/1.1 codec; the connection that drives h2 is
//! `proxy/h2/`.

pub mod convert;
pub mod flood;

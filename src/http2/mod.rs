//! The HTTP/2 side of the codec, over the h2 crate (which owns framing, HPACK and flow
//! control): heads converted between HTTP/2 and the gateway's HTTP/1.1 form
//! (`convert.rs`), the control-frame budget read off a client's frames (`flood.rs`),
//! and the poll adapter h2 runs on over a monoio stream (`io.rs`). Imports nothing from the
//! crate but the HTTP/1.1 codec and `io`; the connections that drive h2 are `proxy/h2/`
//! (clients) and `upstream/h2.rs` (upstreams).

pub mod body;
pub mod convert;
pub mod flood;
pub mod io;

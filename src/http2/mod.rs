//! The HTTP/2 side of the codec, over the h2 crate (which owns framing, HPACK and flow
//! control): heads converted between HTTP/2 and the gateway's HTTP/1.1 form
//! (`convert.rs`), the control-frame budget read off a client's frames (`flood.rs`),
//! and the poll adapter h2 runs on over a monoio stream (`io.rs`). Imports nothing from the
//! crate but the HTTP/1.1 codec and `io`; the connections that drive h2 are `proxy/h2/`
//! (clients) and `upstream/h2.rs` (upstreams).

pub mod body;
pub mod convert;
pub mod flood;
pub mod frames;
pub mod grpc;
pub mod io;

/// A client connection whose request bodies may arrive as an HTTP/2 stream: such a body
/// can go to an HTTP/2 upstream directly ([`body::pipe`]), concurrently with the answer,
/// as a bidirectional gRPC call needs. Other connections have none.
pub trait StreamBody {
    /// The request body's stream, if it is one and none of it was read yet.
    fn take_stream_body(&mut self) -> Option<h2::RecvStream> {
        None
    }
}

//! The admin API (stub: replaced by the admin work).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::control::Control;

/// Starts the admin API on its own thread; returns the address it listens on.
pub fn start(_control: Arc<Control>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    Ok(addr)
}

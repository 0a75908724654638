//! The admin API: a small HTTP/1.1 JSON server on its own listener and its own thread, off
//! the request path. It reads the served config, reloads it, reports health and readiness,
//! and registers or removes upstream endpoints at runtime; every change goes through
//! [`Control`], which swaps whole snapshots the workers pick up between requests.
//!
//! - `server.rs`: the accept and connection loop (head and body limits, read timeouts,
//!   keep-alive, Content-Length bodies only).
//! - `routes.rs`: the route table ([`ROUTES`] is derived from it), the bearer-token check,
//!   and one handler per route.
//! - `json.rs`: the JSON views of the config, upstreams, routes and reload status.
//!
//! `docs/admin-openapi.json` describes every route; `tests/admin.rs` checks that it lists
//! exactly [`ROUTES`].
//!
//! # Invariants
//! - With a token configured, every request (unknown paths included) must carry it; the
//!   comparison takes the same time whatever the content of a same-length guess.
//! - A request that fails (bad JSON, unknown upstream, invalid config) changes nothing.
//! - The runtime uses the epoll ("legacy") driver: the admin thread must run whatever the
//!   workers use, and a timed-out read can be dropped safely.

mod json;
mod routes;
mod server;

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};

use monoio::net::{ListenerOpts, TcpListener};

use crate::control::Control;

pub use routes::ROUTES;

/// What every admin connection shares.
pub(crate) struct Admin {
    pub(crate) control: Arc<Control>,
    /// The bearer token, as configured at startup (like the listen address, a reload does
    /// not change it).
    token: Option<String>,
}

/// Starts the admin API on its own thread ("strait-admin"); returns the address it listens
/// on (port 0 picks a free port). Refuses a non-loopback address without a token, whatever
/// the address came from (the command line bypasses the config's own check).
pub fn start(control: Arc<Control>, addr: SocketAddr) -> io::Result<SocketAddr> {
    let token = control.current().admin.token.clone();
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} is not a loopback address: set admin.token to expose the admin API"),
        ));
    }
    let (bound_tx, bound_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("strait-admin".to_string())
        .spawn(move || {
            let runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            let mut runtime = match runtime {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                // SO_REUSEPORT (monoio's default) lets a successor started by a binary
                // upgrade bind the same address while this process drains; Linux allows it
                // only for sockets of the same user.
                let opts = ListenerOpts::new();
                let listener = match TcpListener::bind_with_config(addr, &opts) {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                match listener.local_addr() {
                    Ok(bound) => {
                        let _ = bound_tx.send(Ok(bound));
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                }
                server::serve(listener, Rc::new(Admin { control, token })).await;
            });
        })?;
    bound_rx
        .recv()
        .map_err(|_| io::Error::other("the admin thread ended before listening"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ConfigSource;

    fn control(extra: &str) -> Arc<Control> {
        let dir = std::env::temp_dir().join(format!("strait-admin-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.toml", extra.len()));
        std::fs::write(
            &path,
            format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{extra}"),
        )
        .unwrap();
        Arc::new(Control::load(ConfigSource::File(path)).unwrap())
    }

    #[test]
    fn refuses_a_non_loopback_address_without_a_token() {
        let err = start(control(""), "0.0.0.0:0".parse().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn binds_port_zero_and_reports_bind_errors() {
        let control = control("[admin]\ntoken = \"0123456789abcdef\"\n");
        let bound = start(control.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(bound.port(), 0);
        // A port held by a socket without SO_REUSEPORT cannot be shared.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(start(control, taken.local_addr().unwrap()).is_err());
    }
}

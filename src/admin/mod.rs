//! The admin API: a small HTTP/1.1 JSON server on its own listener and its own thread, off
//! the request path. It reads the served config, reloads it, reports health and readiness,
//! registers or removes upstream endpoints at runtime, and serves `GET /metrics` (Prometheus
//! text, gathered from the workers by [`crate::observe::metrics::MetricsHub`]; also alone,
//! without a token, on [`start_metrics_only`]'s listener); every change goes through
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
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
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
    /// Serve only `GET /metrics` (the `observability.metrics.listen` listener).
    metrics_only: bool,
}

/// A started admin (or metrics) listener.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    /// The address it listens on (port 0 resolved).
    pub addr: SocketAddr,
    /// Its socket, for a successor to inherit on a binary upgrade.
    pub fd: RawFd,
}

/// Starts the admin API on its own thread ("strait-admin") on `addr` (port 0 picks a free
/// port), or on `inherited`, the socket for `addr` a predecessor handed over. Refuses a
/// non-loopback address without a token, whatever the address came from (the command line
/// bypasses the config's own check).
pub fn start(
    control: Arc<Control>,
    addr: SocketAddr,
    inherited: Option<OwnedFd>,
) -> io::Result<Listening> {
    let token = control.current().admin.token.clone();
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} is not a loopback address: set admin.token to expose the admin API"),
        ));
    }
    let admin = Admin {
        control,
        token,
        metrics_only: false,
    };
    spawn("strait-admin", addr, inherited, admin)
}

/// Starts the metrics-only listener (`observability.metrics.listen`) on its own thread
/// ("strait-metrics"): the admin server answering only `GET /metrics` (404 elsewhere, 405
/// for other methods), without a token, so that a scraper can reach it on an address
/// where the admin API is not exposed. Returns the address it listens on. A scrape here
/// never waits behind an admin request, and the reverse. `inherited` as for [`start`].
pub fn start_metrics_only(
    control: Arc<Control>,
    addr: SocketAddr,
    inherited: Option<OwnedFd>,
) -> io::Result<Listening> {
    let admin = Admin {
        control,
        token: None,
        metrics_only: true,
    };
    spawn("strait-metrics", addr, inherited, admin)
}

/// Runs the admin server for `admin` on a new thread named `name`, on `inherited` or else
/// bound to `addr`.
fn spawn(
    name: &str,
    addr: SocketAddr,
    inherited: Option<OwnedFd>,
    admin: Admin,
) -> io::Result<Listening> {
    let (bound_tx, bound_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_string())
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
                // Without SO_REUSEPORT (which monoio sets by default), so that a second process on the
                // same address fails instead of sharing the admin calls. A binary upgrade
                // hands the socket itself to the successor instead.
                let listener = match inherited {
                    Some(fd) => adopt(fd),
                    None => {
                        TcpListener::bind_with_config(addr, &ListenerOpts::new().reuse_port(false))
                    }
                };
                let listener = match listener {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                };
                match listener.local_addr() {
                    Ok(addr) => {
                        let fd = listener.as_raw_fd();
                        let _ = bound_tx.send(Ok(Listening { addr, fd }));
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e));
                        return;
                    }
                }
                server::serve(listener, Rc::new(admin)).await;
            });
        })?;
    bound_rx
        .recv()
        .map_err(|_| io::Error::other("the admin thread ended before listening"))?
}

/// The listening socket a predecessor handed over, on this thread's runtime.
fn adopt(fd: OwnedFd) -> io::Result<TcpListener> {
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ConfigSource;

    fn control(extra: &str) -> Arc<Control> {
        let dir = crate::scratch::ScratchDir::new("admin-start");
        let path = dir.join("strait.toml");
        std::fs::write(
            &path,
            format!("[server]\nlisten = [\"127.0.0.1:0\"]\n{extra}"),
        )
        .unwrap();
        Arc::new(Control::load(ConfigSource::File(path)).unwrap())
    }

    #[test]
    fn refuses_a_non_loopback_address_without_a_token() {
        let err = start(control(""), "0.0.0.0:0".parse().unwrap(), None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// One request on a new connection; the whole answer (the server closes: `close`).
    fn exchange(addr: SocketAddr, request: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn metrics_only_listener_serves_only_get_metrics_without_a_token() {
        // A token the admin API would demand (and a config file of its own: `control`
        // names files by the length of `extra`, and tests run in parallel).
        let control = control("[admin]\ntoken = \"0123456789abcdef-metrics\"\n");
        let addr = start_metrics_only(control, "127.0.0.1:0".parse().unwrap(), None)
            .unwrap()
            .addr;
        let ask = |method: &str, path: &str| {
            exchange(
                addr,
                &format!("{method} {path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n"),
            )
        };
        let metrics = ask("GET", "/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(
            metrics.contains("\nstrait_config_generation 1\n"),
            "{metrics}"
        );
        assert!(ask("GET", "/healthz").starts_with("HTTP/1.1 404 "));
        assert!(ask("GET", "/config").starts_with("HTTP/1.1 404 "));
        let post = ask("POST", "/metrics");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("\r\nallow: GET\r\n"), "{post}");
    }

    #[test]
    fn binds_port_zero_and_reports_bind_errors() {
        let control = control("[admin]\ntoken = \"0123456789abcdef\"\n");
        let bound = start(control.clone(), "127.0.0.1:0".parse().unwrap(), None)
            .unwrap()
            .addr;
        assert_ne!(bound.port(), 0);
        // A port held by a socket without SO_REUSEPORT cannot be shared.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(start(control.clone(), taken.local_addr().unwrap(), None).is_err());
        // Nor can an admin listener's, whose socket has none either.
        let err = start(control, bound, None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}

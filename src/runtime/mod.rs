//! Worker threads: one per core, each pinned, each with its own monoio runtime and its own
//! `SO_REUSEPORT` listener per address, so the kernel spreads connections across workers
//! and nothing on the request path crosses a thread.
//!
//! A drain (shutdown or upgrade) is a flag the workers watch: each stops accepting, lets
//! requests in flight finish (their answers say `Connection: close`), gives keep-alive
//! connections idle between requests a short grace for one more (see `proxy/drain.rs`) and
//! exits once its connections are done or the drain timeout has passed.

pub mod sd_notify;
pub mod upgrade;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::observe::Observers;
use crate::proxy::{serve_connection, serve_tls_connection, Worker};
use crate::ratelimit::redis_sync::ClusterHub;

/// Which monoio driver the workers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoDriver {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    IoUring,
    Epoll,
}

/// Accept backlog per listener.
const BACKLOG: i32 = 4096;
/// io_uring submission queue entries per worker.
const URING_ENTRIES: u32 = 4096;
/// How often a worker closes pooled connections idle past their timeout.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors, typically) before trying again.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// How often a worker looks at the process-wide drain flag (and, while draining, at its
/// count of open connections), answers metric scrapes and hands buffered log lines over.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Where a worker's listening socket for one address comes from.
enum ListenerSource {
    Bind(SocketAddr),
    /// Inherited from the process this one replaces (binary upgrade): same socket, same
    /// accept queue, so nothing queued is lost.
    Inherit(OwnedFd),
}

/// Running workers and the addresses they listen on (with any port 0 resolved).
pub struct Running {
    pub addrs: Vec<SocketAddr>,
    pub driver: &'static str,
    /// Every worker's listening socket, for a successor process to inherit.
    pub listener_fds: Vec<RawFd>,
    drain: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Running {
    /// Tells every worker to drain; returns at once.
    pub fn drain(&self) {
        self.drain.store(true, Ordering::Release);
    }

    /// Blocks until every worker has stopped.
    pub fn wait(self) {
        for handle in self.handles {
            let _ = handle.join();
        }
    }
}

/// Starts `workers` worker threads (0: one per CPU this process may run on), serving the
/// config in `config`, adopting `inherited` listening sockets where their address is still
/// configured. Returns once every worker listens on every address.
pub fn start(
    config: Arc<ArcSwap<Config>>,
    observers: Observers,
    cluster: Arc<ClusterHub>,
    workers: usize,
    driver: IoDriver,
    inherited: Vec<(SocketAddr, OwnedFd)>,
) -> std::io::Result<Running> {
    let cpus = allowed_cpus();
    let workers = if workers == 0 {
        cpus.len().max(1)
    } else {
        workers
    };
    let uring = match driver {
        IoDriver::Auto => monoio::utils::detect_uring(),
        IoDriver::IoUring => true,
        IoDriver::Epoll => false,
    };
    // Port 0 means "any port": reserve one now so that every worker binds the same one.
    let mut reserved = Vec::new();
    let mut addrs = Vec::new();
    let configured: Vec<SocketAddr> = config.load().server.all_listen().collect();
    for &addr in &configured {
        // An inherited address is served by the predecessor on purpose; port 0 is free by
        // definition.
        if addr.port() != 0 && !inherited.iter().any(|(a, _)| *a == addr) {
            refuse_if_served(addr)?;
        }
        if addr.port() == 0 {
            let socket = reuseport_socket(addr)?;
            let bound = socket.local_addr()?.as_socket().unwrap_or(addr);
            reserved.push(socket);
            addrs.push(bound);
        } else {
            addrs.push(addr);
        }
    }
    let plans = plan_listeners(&addrs, &configured, workers, inherited);

    let drain = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<Vec<RawFd>>>();
    let mut handles = Vec::with_capacity(workers);
    for (index, sources) in plans.into_iter().enumerate() {
        let cpu = cpus.get(index % cpus.len().max(1)).copied();
        let config = config.clone();
        let observers = observers.clone();
        let cluster = cluster.clone();
        let ready = ready_tx.clone();
        let drain = drain.clone();
        let handle = std::thread::Builder::new()
            .name(format!("strait-w{index}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to_cpu(cpu);
                }
                let listeners = match sources
                    .into_iter()
                    .map(|(addr, source)| Ok((addr, open_listener(source)?)))
                    .collect::<std::io::Result<Vec<_>>>()
                {
                    Ok(listeners) => listeners,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let ready_on_error = ready.clone();
                let main = move || {
                    worker_main(listeners, config, observers, cluster, ready, drain, workers)
                };
                let result = if uring {
                    uring_runtime().map(|mut rt| rt.block_on(main()))
                } else {
                    RuntimeBuilder::<LegacyDriver>::new()
                        .enable_timer()
                        .build()
                        .map(|mut rt| rt.block_on(main()))
                };
                if let Err(e) = result {
                    let _ = ready_on_error.send(Err(e));
                }
            })?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut listener_fds = Vec::new();
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(fds)) => listener_fds.extend(fds),
            Ok(Err(e)) => {
                drain.store(true, Ordering::Release);
                return Err(e);
            }
            Err(_) => {
                return Err(std::io::Error::other(
                    "a worker stopped before it was ready",
                ))
            }
        }
    }
    drop(reserved);
    Ok(Running {
        addrs,
        driver: if uring { "io_uring" } else { "epoll" },
        listener_fds,
        drain,
        handles,
    })
}

/// Decides each worker's listeners: inherited sockets of a configured address are dealt out
/// round-robin (a worker may get several); workers left without one for an address bind
/// their own. Inherited sockets for addresses no longer configured are closed here.
/// Each source goes with the address as configured (`configured[i]` for `addrs[i]`, which
/// differ for port 0), by which a worker finds the listener's TLS settings.
fn plan_listeners(
    addrs: &[SocketAddr],
    configured: &[SocketAddr],
    workers: usize,
    inherited: Vec<(SocketAddr, OwnedFd)>,
) -> Vec<Vec<(SocketAddr, ListenerSource)>> {
    let mut plans: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    let mut inherited = inherited;
    for (&addr, &as_configured) in addrs.iter().zip(configured) {
        let mine: Vec<OwnedFd> = {
            let (same, rest): (Vec<_>, Vec<_>) =
                inherited.into_iter().partition(|(a, _)| *a == addr);
            inherited = rest;
            same.into_iter().map(|(_, fd)| fd).collect()
        };
        let count = mine.len();
        for (i, fd) in mine.into_iter().enumerate() {
            plans[i % workers].push((as_configured, ListenerSource::Inherit(fd)));
        }
        for plan in plans.iter_mut().skip(count) {
            plan.push((as_configured, ListenerSource::Bind(addr)));
        }
    }
    for (addr, _) in &inherited {
        tracing::info!(%addr, "closing an inherited listener whose address is no longer configured");
    }
    plans
}

fn open_listener(source: ListenerSource) -> std::io::Result<std::net::TcpListener> {
    match source {
        ListenerSource::Bind(addr) => listener(addr),
        ListenerSource::Inherit(fd) => {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(listener)
        }
    }
}

#[allow(clippy::too_many_arguments)] // each a piece of process state, called once per worker
async fn worker_main(
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    config: Arc<ArcSwap<Config>>,
    observers: Observers,
    cluster: Arc<ClusterHub>,
    ready: mpsc::Sender<std::io::Result<Vec<RawFd>>>,
    drain: Arc<AtomicBool>,
    workers: usize,
) {
    let worker = Rc::new(Worker::new(config, &observers, workers, cluster));
    drop(observers);
    let fds: Vec<RawFd> = listeners.iter().map(|(_, l)| l.as_raw_fd()).collect();
    let mut accepting = Vec::new();
    for (addr, std_listener) in listeners {
        match monoio::net::TcpListener::from_std(std_listener) {
            Ok(listener) => {
                accepting.push(monoio::spawn(accept_loop(listener, addr, worker.clone())))
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    }
    let _ = ready.send(Ok(fds));
    let sweeper = worker.clone();
    monoio::spawn(async move {
        while !sweeper.drain.is_started() {
            monoio::time::sleep(POOL_SWEEP_INTERVAL).await;
            sweeper.evict_idle(Instant::now());
        }
    });

    while !drain.load(Ordering::Acquire) {
        monoio::time::sleep(DRAIN_POLL).await;
        tick(&worker);
    }
    worker.drain.start();
    for task in accepting {
        task.await;
    }
    let deadline = Instant::now() + worker.drain_timeout();
    while worker.open_connections() > 0 && Instant::now() < deadline {
        monoio::time::sleep(DRAIN_POLL).await;
        tick(&worker);
    }
    // The last counts of cluster limits (applied if the sync thread gets another round
    // before the process exits).
    worker.tick_limits(Instant::now());
    worker.observers.borrow_mut().close();
    if worker.open_connections() > 0 {
        tracing::warn!(
            open = worker.open_connections(),
            "drain timeout: closing connections still open"
        );
    }
}

/// The worker's periodic chores: metrics windows, rate-limit refills and cluster counts.
fn tick(worker: &Worker) {
    worker.observers.borrow_mut().tick();
    worker.tick_limits(Instant::now());
}

/// A worker's io_uring runtime. The worker is its ring's only user, so the kernel may
/// defer completion work (task work) until the worker next waits on the ring instead of
/// interrupting it with an IPI for every completion that another core (the peer's
/// sender) produced: this is where the proxy's own core spent its time otherwise.
/// Kernels before 6.1 refuse the flags; the ring is then set up without them.
fn uring_runtime() -> std::io::Result<monoio::Runtime<monoio::time::TimeDriver<IoUringDriver>>> {
    let build = |urb: io_uring::Builder| {
        RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(URING_ENTRIES)
            .uring_builder(urb)
            .enable_timer()
            .build()
    };
    let mut deferred = io_uring::IoUring::builder();
    deferred.setup_single_issuer().setup_defer_taskrun();
    build(deferred).or_else(|_| build(io_uring::IoUring::builder()))
}

/// Accepts until the worker drains; dropping the listener then closes this worker's
/// socket (a successor that inherited it keeps it open).
async fn accept_loop(listener: monoio::net::TcpListener, addr: SocketAddr, worker: Rc<Worker>) {
    loop {
        // An io_uring accept dropped in flight can still complete in the kernel, and the
        // connection it took off the queue would then belong to nobody (reset when the
        // process exits): a drain cancels the accept and waits for its outcome instead.
        let canceller = monoio::io::Canceller::new();
        let mut accept = std::pin::pin!(listener.cancelable_accept(canceller.handle()));
        let accepted = monoio::select! {
            accepted = &mut accept => Some(accepted),
            _ = worker.drain.started() => None,
        };
        let Some(accepted) = accepted else {
            let _canceller = canceller.cancel();
            // Canceled, or a connection that beat the cancel: serve it like any other.
            if let Ok((stream, peer)) = accept.await {
                serve(stream, peer, addr, &worker);
            }
            return;
        };
        match accepted {
            Ok((stream, peer)) => serve(stream, peer, addr, &worker),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
}

/// Starts serving a connection accepted on the listener configured as `addr`: with TLS
/// when the current config makes that address a TLS listener.
fn serve(stream: monoio::net::TcpStream, peer: SocketAddr, addr: SocketAddr, worker: &Rc<Worker>) {
    let _ = stream.set_nodelay(true);
    worker.connection_opened();
    match worker.snapshot().server.tls_at(addr) {
        None => drop(monoio::spawn(serve_connection(
            stream,
            peer,
            worker.clone(),
        ))),
        Some(tls) => drop(monoio::spawn(serve_tls_connection(
            stream,
            peer,
            addr,
            tls.clone(),
            worker.clone(),
        ))),
    }
}

/// Fails when another process already listens on `addr`. The workers' sockets use
/// `SO_REUSEPORT`, which lets them join the group another process of the same user has on
/// the address: a second Strait started by mistake would start silently and split the
/// traffic with the first. A bind without `SO_REUSEPORT` fails with `EADDRINUSE` on any
/// address with a listener (also on a wildcard address covering it, or the reverse), and
/// `SO_REUSEADDR` keeps it from failing on connections in `TIME_WAIT` after a restart. The
/// probe is closed at once, before it ever listens.
fn refuse_if_served(addr: SocketAddr) -> std::io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into()).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AddrInUse {
            "the address is in use: another process (another Strait?) listens on it"
        } else {
            "cannot bind it"
        };
        std::io::Error::new(e.kind(), format!("listening on {addr}: {why} ({e})"))
    })
}

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// This worker's own listening socket on `addr`, in the shared SO_REUSEPORT group.
fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = reuseport_socket(addr)?;
    socket.set_nonblocking(true)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// How many CPUs this process may run on, or `None` when the kernel does not say.
pub fn allowed_cpu_count() -> Option<usize> {
    let count = allowed_cpus().len();
    (count > 0).then_some(count)
}

/// The CPUs this process may run on (respecting `taskset` and cgroup limits).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: as above; the set names one CPU that `allowed_cpus` reported.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(cpu, "could not pin worker to its CPU");
        }
    }
}

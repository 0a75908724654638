//! The `strait` command: load and validate the config, then run the workers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use strait::admin;
use strait::config::{Config, ConfigError};
use strait::control::{cert_watch, resolver};
use strait::control::{ConfigSource, Control};
use strait::observe::access_log::AccessLog;
use strait::observe::trace::TraceExporter;
use strait::observe::Observers;
use strait::ratelimit::redis_sync;
use strait::runtime::{self, IoDriver};
use strait::runtime::{sd_notify, upgrade};
use strait::upstream::health_checker;

/// mimalloc: requests allocate and free small objects at a high rate on every worker (the
/// boxed request future, header vectors, log and trace records), and a reload builds and
/// later drops hundreds of thousands of objects on a heap still holding the config being
/// served; glibc's arenas spent half of a large reload coalescing free chunks there.
/// Measured against glibc: CPU per request 0.85–0.93x at 16 to 256 connections, reloads
/// of 10,000 routes about twice as fast (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` (its position in `mi_option_t`, mimalloc.h of
/// the vendored version): committing whole arenas up front made an idle server's resident
/// memory 12 MB larger, and every idle keep-alive connection 1.4 KB instead of 0.8 KB.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs before the Rust runtime's first allocation (which reserves mimalloc's first arena).
#[used]
#[link_section = ".init_array"]
static SET_ALLOCATOR_OPTIONS: extern "C" fn() = set_allocator_options;

extern "C" fn set_allocator_options() {
    // SAFETY: sets a plain integer option.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

/// The config file used when `--config` is not given, relative to the working directory.
const DEFAULT_CONFIG_PATH: &str = "conf/strait.toml";

#[derive(Parser, Debug)]
#[command(
    name = "strait",
    version,
    about = "A thread-per-core HTTP/1.1 API gateway and reverse proxy"
)]
struct Args {
    /// Config file (default: conf/strait.toml, else the embedded default).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Validate the config, print any errors, and exit (0: valid, 1: invalid).
    #[arg(long)]
    check: bool,
    /// Worker threads; overrides `server.workers` (0: one per CPU).
    #[arg(short, long)]
    workers: Option<usize>,
    /// I/O driver for the workers.
    #[arg(long, value_enum, default_value = "auto")]
    io_driver: IoDriver,
    /// Admin API address; overrides `admin.listen` (port 0 picks a free port).
    #[arg(long)]
    admin_listen: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    // First, while this is the only thread: take what Strait reads from its environment.
    // The upgrade hand-over is removed from it (changing the environment while another
    // thread may read it is undefined behaviour); NOTIFY_SOCKET and RUST_LOG stay, for a
    // successor to inherit, and are read here so that nothing later needs the environment.
    let env = StartEnv {
        handover: upgrade::Handover::take_from_env(),
        rust_log: std::env::var("RUST_LOG").ok(),
    };
    sd_notify::set_socket(std::env::var_os(sd_notify::NOTIFY_SOCKET_ENV));
    let args = Args::parse();
    match run(args, env) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strait: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What `main` took from the environment before anything else ran.
struct StartEnv {
    handover: upgrade::Handover,
    /// `RUST_LOG`: log filter directives that win over `observability.log_level`.
    rust_log: Option<String>,
}

fn run(args: Args, mut env: StartEnv) -> anyhow::Result<ExitCode> {
    let source = config_source(args.config);
    let control = match Control::load(source) {
        Ok(control) => Arc::new(control),
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.check {
        println!("{}: configuration is valid", control.origin());
        return Ok(ExitCode::SUCCESS);
    }
    let config = control.current();
    let workers = checked_workers(args.workers, &config, &control.origin())?;
    raise_open_files_limit();
    // Operational logs: RUST_LOG when set, else `observability.log_level`.
    let level = control.current().observability.log_level.clone();
    tracing_subscriber::fmt()
        .with_env_filter(
            env.rust_log
                .as_deref()
                .and_then(|directives| tracing_subscriber::EnvFilter::try_new(directives).ok())
                .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    // JWKS fetches start only now, with logging on: `--check` above made no connection.
    control.start_refreshers();
    // Signals are taken before any worker starts, so that none hits a default handler.
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2])
        .context("installing signal handlers")?;
    let exe = std::env::current_exe().context("locating the strait binary")?;
    // Listening sockets handed over by the process this one replaces (binary upgrade).
    let mut inherited = upgrade::inherited_listeners(&mut env.handover);
    // The admin and metrics sockets, for a successor to inherit with the workers' ones.
    let mut side_listeners = Vec::new();
    // The admin API binds first: a successor that cannot bind it fails before it has
    // accepted any client connection.
    if let Some(addr) = args.admin_listen.or(config.admin.listen) {
        let handed = upgrade::take_listener(&mut inherited, addr);
        let bound = admin::start(control.clone(), addr, handed)
            .with_context(|| format!("starting the admin API on {addr}"))?;
        tracing::info!(addr = %bound.addr, "admin api listening");
        side_listeners.push(bound.fd);
    }
    if let Some(addr) = config.observability.metrics_listen {
        let handed = upgrade::take_listener(&mut inherited, addr);
        let bound = admin::start_metrics_only(control.clone(), addr, handed)
            .with_context(|| format!("starting the metrics listener on {addr}"))?;
        tracing::info!(addr = %bound.addr, "metrics listening");
        side_listeners.push(bound.fd);
    }
    let observers = start_observers(&control, &config)?;
    let running = runtime::start(
        control.shared(),
        observers.clone(),
        control.cluster(),
        workers,
        args.io_driver,
        inherited,
    )
    .context("starting workers")?;
    let handed_over: Vec<_> = running
        .listener_fds
        .iter()
        .chain(&side_listeners)
        .copied()
        .collect();
    for addr in &running.addrs {
        tracing::info!(%addr, config = %control.origin(), driver = running.driver, "listening");
    }
    // Off the request path: one thread probes endpoints, another re-resolves host names,
    // another reloads when a certificate file changes.
    health_checker::try_spawn(control.shared(), control.health())
        .context("starting the health checker")?;
    resolver::spawn(control.clone());
    cert_watch::spawn(control.clone());
    redis_sync::spawn(control.shared(), control.cluster())
        .context("starting the redis sync thread")?;
    control.set_ready(true);
    sd_notify::main_pid(std::process::id());
    sd_notify::ready(&format!(
        "serving {} on {} worker(s)",
        control.origin(),
        workers.max(1)
    ));
    upgrade::release_predecessor(&env.handover);

    for signal in signals.forever() {
        match signal {
            SIGHUP => reload(&control),
            SIGUSR1 => {
                if let Some(log) = &observers.access_log {
                    log.reopen();
                }
            }
            SIGUSR2 => match upgrade::spawn_successor(&exe, &handed_over) {
                Ok(mut child) => {
                    tracing::info!(pid = child.id(), exe = %exe.display(), "upgrade: successor started");
                    // A successor that takes over ends this process; one that dies first is
                    // reaped here and reported, and this process goes on serving.
                    std::thread::spawn(move || {
                        if let Ok(status) = child.wait() {
                            tracing::error!(%status, "upgrade: the successor exited; still serving");
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, "upgrade: could not start the successor; still serving")
                }
            },
            _ => break,
        }
    }
    tracing::info!("draining");
    control.start_draining();
    sd_notify::stopping();
    running.drain();
    running.wait();
    // The workers are gone, and their handles with them: write out what they logged.
    let Observers {
        access_log,
        tracing: exporter,
        ..
    } = observers;
    if let Some(log) = access_log.and_then(|log| Arc::try_unwrap(log).ok()) {
        log.shutdown();
    }
    if let Some(exporter) = exporter.and_then(|e| Arc::try_unwrap(e).ok()) {
        exporter.shutdown();
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Raises the soft limit on open files to the hard one: every client and upstream
/// connection is a descriptor, and the usual soft default (1024) would refuse connections
/// long before memory runs short. As Go's runtime and HAProxy do; a unit's `LimitNOFILE`
/// sets the hard limit.
fn raise_open_files_limit() {
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The number of workers to start (`--workers`, else `server.workers`), refused when it is
/// more than the CPUs this process may run on: each worker is pinned to one of them, so more
/// only share cores, and a slip such as `--workers 100000` would start that many threads and
/// take the machine down. 0 (one per CPU) always passes.
///
/// A startup check, not a `--check` one: the CPUs a process may use belong to the machine
/// and the service it runs under (`taskset`, cgroup cpusets, systemd's `CPUAffinity=`), and
/// `--check` may run elsewhere (CI, a build host) or under another affinity, where its
/// verdict would be wrong either way.
fn checked_workers(flag: Option<usize>, config: &Config, origin: &str) -> anyhow::Result<usize> {
    let workers = flag.unwrap_or(config.server.workers);
    let Some(cpus) = runtime::allowed_cpu_count() else {
        return Ok(workers);
    };
    if workers <= cpus {
        return Ok(workers);
    }
    let plural = if cpus == 1 { "" } else { "s" };
    let message = format!(
        "{workers} is more than the {cpus} CPU{plural} this process may run on \
         (use at most {cpus}, or 0 for one worker per CPU)"
    );
    match flag {
        Some(_) => anyhow::bail!("--workers: {message}"),
        None => anyhow::bail!(
            "{}",
            ConfigError {
                origin: origin.to_owned(),
                position: config.server.workers_position,
                key: "server.workers".to_owned(),
                message,
            }
        ),
    }
}

/// Sets up metrics, the access log and the trace exporter for the workers.
fn start_observers(control: &Control, config: &Config) -> anyhow::Result<Observers> {
    let access_log = match &config.observability.access_log {
        Some(log) => Some(Arc::new(
            AccessLog::start(&log.destination).context("opening the access log")?,
        )),
        None => None,
    };
    let tracing = match &config.observability.tracing {
        Some(tracing) => Some(Arc::new(
            TraceExporter::start(tracing).context("starting the trace exporter")?,
        )),
        None => None,
    };
    Ok(Observers {
        metrics: control.metrics(),
        access_log,
        tracing,
    })
}

/// Reloads the config; a failure leaves the running config in place and says why.
fn reload(control: &Control) {
    match control.reload() {
        Ok(status) => tracing::info!(
            generation = status.generation,
            took_ms = status.took.as_secs_f64() * 1e3,
            "config reloaded"
        ),
        Err(errors) => {
            tracing::error!("config reload failed, still serving the previous config:\n{errors}")
        }
    }
}

/// The config named on the command line, or the default file, or the embedded one.
fn config_source(path: Option<PathBuf>) -> ConfigSource {
    match path {
        Some(path) => ConfigSource::File(path),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            ConfigSource::File(PathBuf::from(DEFAULT_CONFIG_PATH))
        }
        None => ConfigSource::Embedded,
    }
}

//! The `strait` command: load and validate the config, then run the workers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use strait::admin;
use strait::config::Config;
use strait::control::{ConfigSource, Control};
use strait::observe::access_log::AccessLog;
use strait::observe::trace::TraceExporter;
use strait::observe::Observers;
use strait::runtime::{self, IoDriver};
use strait::{health_checker, redis_sync, resolver, sd_notify, upgrade};

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
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strait: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
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
    // Operational logs: RUST_LOG when set, else `observability.log_level`.
    let level = control.current().observability.log_level.clone();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    // Signals are taken before any worker starts, so that none hits a default handler.
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2])
        .context("installing signal handlers")?;
    let exe = std::env::current_exe().context("locating the strait binary")?;
    let config = control.current();
    let workers = args.workers.unwrap_or(config.server.workers);
    // The admin API binds first: a successor that cannot bind it fails before it has
    // accepted any client connection.
    if let Some(addr) = args.admin_listen.or(config.admin.listen) {
        let bound = admin::start(control.clone(), addr)
            .with_context(|| format!("starting the admin API on {addr}"))?;
        tracing::info!(addr = %bound, "admin api listening");
    }
    if let Some(addr) = config.observability.metrics_listen {
        let bound = admin::start_metrics_only(control.clone(), addr)
            .with_context(|| format!("starting the metrics listener on {addr}"))?;
        tracing::info!(addr = %bound, "metrics listening");
    }
    let observers = start_observers(&control, &config)?;
    let running = runtime::start(
        control.shared(),
        observers.clone(),
        control.cluster(),
        workers,
        args.io_driver,
        upgrade::inherited_listeners(),
    )
    .context("starting workers")?;
    for addr in &running.addrs {
        tracing::info!(%addr, config = %control.origin(), driver = running.driver, "listening");
    }
    // Off the request path: one thread probes endpoints, another re-resolves host names.
    health_checker::try_spawn(control.shared(), control.health())
        .context("starting the health checker")?;
    resolver::spawn(control.clone());
    redis_sync::spawn(control.shared(), control.cluster())
        .context("starting the redis sync thread")?;
    control.set_ready(true);
    sd_notify::main_pid(std::process::id());
    sd_notify::ready(&format!(
        "serving {} on {} worker(s)",
        control.origin(),
        workers.max(1)
    ));
    upgrade::release_predecessor();

    for signal in signals.forever() {
        match signal {
            SIGHUP => reload(&control),
            SIGUSR1 => {
                if let Some(log) = &observers.access_log {
                    log.reopen();
                }
            }
            SIGUSR2 => match upgrade::spawn_successor(&exe, &running.listener_fds) {
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

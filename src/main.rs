//! The `strait` command: load and validate the config, then run the workers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use strait::admin;
use strait::control::{ConfigSource, Control};
use strait::runtime::{self, IoDriver};

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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
    let config = control.current();
    let workers = args.workers.unwrap_or(config.server.workers);
    let running =
        runtime::start(control.shared(), workers, args.io_driver).context("starting workers")?;
    for addr in &running.addrs {
        tracing::info!(%addr, config = %control.origin(), driver = running.driver, "listening");
    }
    if let Some(addr) = args.admin_listen.or(config.admin.listen) {
        let bound = admin::start(control.clone(), addr)
            .with_context(|| format!("starting the admin API on {addr}"))?;
        tracing::info!(addr = %bound, "admin api listening");
    }
    control.set_ready(true);
    running.wait();
    Ok(ExitCode::SUCCESS)
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

//! The `strait` command: load and validate the config, then run the workers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::Parser;

use strait::config::{self, Config};
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
    let (origin, loaded) = load_config(args.config.as_deref());
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.check {
        println!("{origin}: configuration is valid");
        return Ok(ExitCode::SUCCESS);
    }
    let workers = args.workers.unwrap_or(config.server.workers);
    let shared = Arc::new(ArcSwap::from_pointee(config));
    let running = runtime::start(shared, workers, args.io_driver).context("starting workers")?;
    for addr in &running.addrs {
        tracing::info!(%addr, config = %origin, driver = running.driver, "listening");
    }
    running.wait();
    Ok(ExitCode::SUCCESS)
}

/// Loads the config named on the command line, or the default file, or the embedded one.
fn load_config(path: Option<&std::path::Path>) -> (String, Result<Config, config::ConfigErrors>) {
    match path {
        Some(path) => (path.display().to_string(), config::load(path)),
        None if std::path::Path::new(DEFAULT_CONFIG_PATH).exists() => (
            DEFAULT_CONFIG_PATH.to_string(),
            config::load(std::path::Path::new(DEFAULT_CONFIG_PATH)),
        ),
        None => {
            let origin = "<embedded default>";
            (
                origin.to_string(),
                config::load_str(config::EMBEDDED_DEFAULT, origin),
            )
        }
    }
}

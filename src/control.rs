//! The control plane's state, owned by the main thread and the admin API, never touched on
//! the request path: where the config comes from, the snapshot the workers serve, the
//! endpoints registered at runtime, and the outcome of the last reload.
//!
//! Every change (a reload, a registration) builds a complete new [`Config`] and swaps it in
//! with one atomic store: a worker sees the old snapshot or the new one, never a mix. A
//! change that does not build changes nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::config::{self, Config, ConfigErrors, Endpoint};
use crate::registry::{Registry, RegistryError};
use crate::sd_notify;

/// Where the config text is read from, at startup and on every reload.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// The default compiled into the binary.
    Embedded,
}

impl ConfigSource {
    pub fn origin(&self) -> String {
        match self {
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Embedded => "<embedded default>".to_string(),
        }
    }

    fn read(&self) -> Result<String, ConfigErrors> {
        match self {
            ConfigSource::File(path) => std::fs::read_to_string(path).map_err(|e| {
                ConfigErrors::single(&self.origin(), format!("cannot read config file: {e}"))
            }),
            ConfigSource::Embedded => Ok(config::EMBEDDED_DEFAULT.to_string()),
        }
    }
}

/// What the last reload did, for the admin API, logs and metrics.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// Increases by one with every snapshot swapped in (1 is the startup config).
    pub generation: u64,
    pub at: SystemTime,
    pub ok: bool,
    /// One line per config error (file:line:col: key: message) when it failed.
    pub errors: Vec<String>,
    pub took: Duration,
}

pub struct Control {
    source: ConfigSource,
    config: Arc<ArcSwap<Config>>,
    /// The text of the config being served: registrations rebuild from it, so that they do
    /// not pick up edits on disk nobody asked to load.
    text: Mutex<String>,
    registry: Mutex<Registry>,
    last_reload: Mutex<ReloadStatus>,
    generation: AtomicU64,
    /// Workers are listening and the process is not draining (for `/readyz`).
    ready: AtomicBool,
}

impl Control {
    /// Loads the config from `source` with the endpoints registered in the state file it
    /// names. Fails on an invalid config or an unreadable state file.
    pub fn load(source: ConfigSource) -> Result<Control, ConfigErrors> {
        let started = Instant::now();
        let text = source.read()?;
        let mut config = config::load_str(&text, &source.origin())?;
        let registry = Registry::load(config.admin.state_file.as_deref())
            .map_err(|e| ConfigErrors::single(&source.origin(), format!("state file: {e}")))?;
        registry.apply(&mut config);
        Ok(Control {
            source,
            config: Arc::new(ArcSwap::from_pointee(config)),
            text: Mutex::new(text),
            registry: Mutex::new(registry),
            last_reload: Mutex::new(ReloadStatus {
                generation: 1,
                at: SystemTime::now(),
                ok: true,
                errors: Vec::new(),
                took: started.elapsed(),
            }),
            generation: AtomicU64::new(1),
            ready: AtomicBool::new(false),
        })
    }

    pub fn origin(&self) -> String {
        self.source.origin()
    }

    /// The cell the workers read their snapshot from.
    pub fn shared(&self) -> Arc<ArcSwap<Config>> {
        self.config.clone()
    }

    pub fn current(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Set once the workers listen; cleared when draining starts.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn last_reload(&self) -> ReloadStatus {
        lock(&self.last_reload).clone()
    }

    /// Re-reads the config source, validates it, and swaps it in. On failure the running
    /// snapshot stays and the errors are returned (and recorded as the last outcome).
    pub fn reload(&self) -> Result<ReloadStatus, ConfigErrors> {
        sd_notify::reloading();
        let started = Instant::now();
        let result = self.source.read().and_then(|text| {
            let mut config = config::load_str(&text, &self.source.origin())?;
            lock(&self.registry).apply(&mut config);
            Ok((text, config))
        });
        let outcome = match result {
            Ok((text, config)) => {
                *lock(&self.text) = text;
                self.swap(config);
                Ok(())
            }
            Err(errors) => Err(errors),
        };
        let status = ReloadStatus {
            generation: self.generation(),
            at: SystemTime::now(),
            ok: outcome.is_ok(),
            errors: match &outcome {
                Ok(()) => Vec::new(),
                Err(errors) => errors.errors.iter().map(ToString::to_string).collect(),
            },
            took: started.elapsed(),
        };
        *lock(&self.last_reload) = status.clone();
        sd_notify::ready(&format!("serving config generation {}", self.generation()));
        outcome.map(|()| status)
    }

    /// Adds `endpoints` to upstream `name`, persists them, and serves them at once.
    pub fn register(&self, name: &str, endpoints: &[Endpoint]) -> Result<(), RegistryError> {
        self.change_registry(|registry, config| registry.add(config, name, endpoints))
    }

    /// Removes a registered endpoint of upstream `name`, persists, and serves without it.
    pub fn deregister(&self, name: &str, addr: SocketAddr) -> Result<(), RegistryError> {
        self.change_registry(|registry, config| registry.remove(config, name, addr))
    }

    /// The endpoints registered at runtime, by upstream name.
    pub fn registered(&self) -> Vec<(String, Vec<Endpoint>)> {
        lock(&self.registry).entries()
    }

    /// Applies `change` to a copy of the registry, rebuilds the served config with it, and
    /// commits (state file first, then the swap) only if both succeed.
    fn change_registry(
        &self,
        change: impl FnOnce(&mut Registry, &Config) -> Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        let text = lock(&self.text);
        let mut registry = lock(&self.registry);
        let mut updated = registry.clone();
        change(&mut updated, &self.current())?;
        let mut config = config::load_str(&text, &self.source.origin())
            .map_err(|e| RegistryError::Config(e.to_string()))?;
        updated.apply(&mut config);
        updated.save().map_err(RegistryError::Persist)?;
        *registry = updated;
        self.swap(config);
        Ok(())
    }

    fn swap(&self, config: Config) {
        self.config.store(Arc::new(config));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Locks a control-plane mutex; a panic while holding one cannot leave its data half
/// written (every update is a whole assignment), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

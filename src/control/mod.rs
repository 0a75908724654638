//! The control plane's state, owned by the main thread and the admin API, never touched on
//! the request path: where the config comes from, the snapshot the workers serve, the
//! endpoints registered at runtime, and the outcome of the last reload.
//!
//! Every change (a reload, a registration) builds a complete new [`Config`] and swaps it in
//! with one atomic store: a worker sees the old snapshot or the new one, never a mix. A
//! change that does not build changes nothing.
//!
//! Before the store, what every worker would otherwise each build or look up is attached to
//! the snapshot (`UpstreamConfig::shared`): the Maglev tables of hash upstreams (the one of
//! the snapshot being replaced when an upstream's endpoints did not change) and the
//! active-health flags. Here rather than in the config build, which stays pure and runs
//! also for builds that are never served (`--check`, re-resolutions that change nothing):
//! the flags live in the process-wide [`HealthRegistry`], and reuse needs the served
//! snapshot; both only this module has.

pub mod cert_watch;
pub mod registry;
pub mod resolver;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::auth::jwks;
use crate::auth::jwt::KeySource;
use crate::config::{self, Config, ConfigErrors};
use crate::control::registry::{Registry, RegistryError};
use crate::observe::metrics::MetricsHub;
use crate::ratelimit::redis_sync::ClusterHub;
use crate::runtime::sd_notify;
use crate::upstream::config::{Endpoint, UpstreamConfig};
use crate::upstream::tls::share_sessions;
use crate::upstream::{share_tables, HealthRegistry};

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
    /// A shutdown or upgrade drain has begun.
    draining: AtomicBool,
    /// Active-health flags of every endpoint, shared with the workers and the checker.
    health: Arc<HealthRegistry>,
    /// The workers' scrape inboxes and last answers (`GET /metrics`).
    metrics: Arc<MetricsHub>,
    /// Where workers meet the Redis sync thread of cluster rate limits.
    cluster: Arc<ClusterHub>,
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
        share_tables(&mut config.upstreams, &[]);
        let health = HealthRegistry::new();
        health.attach(&mut config.upstreams);
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
            draining: AtomicBool::new(false),
            health: Arc::new(health),
            metrics: Arc::new(MetricsHub::new()),
            cluster: Arc::new(ClusterHub::new()),
        })
    }

    pub fn origin(&self) -> String {
        self.source.origin()
    }

    /// Starts the JWKS refreshers of the config loaded at startup (and waits briefly for
    /// their first keys). Not done by [`Control::load`], so that `strait --check` makes no
    /// connection; every config swapped in later starts its own new ones.
    pub fn start_refreshers(&self) {
        start_jwks_refreshers(&self.current());
    }

    /// The cell the workers read their snapshot from.
    pub fn shared(&self) -> Arc<ArcSwap<Config>> {
        self.config.clone()
    }

    pub fn current(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn health(&self) -> Arc<HealthRegistry> {
        self.health.clone()
    }

    /// Where workers register for scrapes and where `GET /metrics` gathers them.
    pub fn metrics(&self) -> Arc<MetricsHub> {
        self.metrics.clone()
    }

    /// The cluster rate limits' hand-over channel, snapshot and Redis sync health.
    pub fn cluster(&self) -> Arc<ClusterHub> {
        self.cluster.clone()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the process as draining: not ready, and the admin API stops accepting.
    pub fn start_draining(&self) {
        self.ready.store(false, Ordering::Release);
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
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
        self.record_reload(started, outcome)
    }

    /// Rebuilds the served config from the text being served, which reads the files it
    /// names again (certificates, keys), and swaps it in: what the certificate watcher
    /// calls when one of those files changed. Not [`Control::reload`]: an edit of the
    /// config file nobody asked to load yet must not go live because a certificate was
    /// renewed. Validated, recorded and reported like a reload; a failure changes nothing.
    pub fn reload_files(&self) -> Result<ReloadStatus, ConfigErrors> {
        sd_notify::reloading();
        let started = Instant::now();
        // Held until the swap, like a registration: a reload storing a newer text waits,
        // and then swaps its own build over this one.
        let text = lock(&self.text);
        let outcome = config::load_str(&text, &self.source.origin()).map(|mut config| {
            lock(&self.registry).apply(&mut config);
            self.swap(config);
        });
        drop(text);
        self.record_reload(started, outcome)
    }

    /// Records the outcome of a reload begun at `started` as the last one.
    fn record_reload(
        &self,
        started: Instant,
        outcome: Result<(), ConfigErrors>,
    ) -> Result<ReloadStatus, ConfigErrors> {
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

    /// Rebuilds the served config from its cached text and the registry, which resolves the
    /// host-name endpoints again, and swaps it in only if some upstream's endpoints changed.
    /// Returns whether it swapped. Called periodically by [`crate::control::resolver`].
    ///
    /// DNS may block for seconds, so no lock is held while building: registrations and
    /// reloads go on meanwhile, and when one of them changed the text or swapped a snapshot
    /// (itself freshly resolved), this rebuild is dropped and `Ok(false)` returned.
    pub fn refresh(&self) -> Result<bool, ConfigErrors> {
        let generation = self.generation();
        let text = lock(&self.text).clone();
        let registry = lock(&self.registry).clone();
        let mut config = config::load_str(&text, &self.source.origin())?;
        registry.apply(&mut config);
        // The same locks as `change_registry`, so that no registration commits in between;
        // a reload stores its text before its swap, so a changed text or generation covers it.
        let current_text = lock(&self.text);
        let _registry = lock(&self.registry);
        if self.generation() != generation || *current_text != text {
            return Ok(false);
        }
        if same_endpoints(&self.current().upstreams, &config.upstreams) {
            return Ok(false);
        }
        self.swap(config);
        tracing::info!(generation = self.generation(), "endpoints re-resolved");
        Ok(true)
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

    /// Attaches the shared upstream state to `config` and publishes it.
    fn swap(&self, mut config: Config) {
        // Any snapshot's table serves an upstream with the same endpoints, so a concurrent
        // swap (a reload beside a registration) cannot hand out a wrong one; the same holds
        // for a TLS client config and its session cache, kept for the same settings.
        let current = self.current();
        share_tables(&mut config.upstreams, &current.upstreams);
        share_sessions(&mut config.upstreams, &current.upstreams);
        start_jwks_refreshers(&config);
        self.health.publish(config, &self.config);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Starts the refresher threads of the `jwks_url` stores `config` uses that are not running
/// yet: a config is built without any I/O of its own, and a store kept from the previous
/// config keeps its thread.
fn start_jwks_refreshers(config: &Config) {
    let stores = config
        .routes
        .routes()
        .iter()
        .filter_map(|route| route.auth.as_ref()?.jwt.as_ref())
        .flat_map(|jwt| &jwt.providers)
        .filter_map(|provider| match &provider.keys {
            KeySource::Jwks(store) => Some(&**store),
            KeySource::Static(_) => None,
        });
    jwks::start_refreshers(stores);
}

/// Whether two snapshots have the same upstreams with the same endpoints (address, weight,
/// host name) in the same order. The build sorts each host name's addresses, so a DNS
/// server rotating its answers is not a change.
fn same_endpoints(a: &[UpstreamConfig], b: &[UpstreamConfig]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.name == y.name && x.endpoints == y.endpoints)
}

/// Locks a control-plane mutex; a panic while holding one cannot leave its data half
/// written (every update is a whole assignment), so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upstreams of config `text`.
    fn upstreams(text: &str) -> Vec<UpstreamConfig> {
        config::load_str(text, "t.toml").unwrap().upstreams
    }

    fn endpoint(addr: &str, weight: u32, hostname: Option<&str>) -> Endpoint {
        Endpoint {
            addr: addr.parse().unwrap(),
            weight,
            hostname: hostname.map(str::to_owned),
        }
    }

    #[test]
    fn same_endpoints_compares_every_upstream() {
        let text = "[server]\nlisten = [\"127.0.0.1:1\"]\n\
                    [upstreams.a]\nendpoints = [\"10.0.0.1:80\"]\n\
                    [upstreams.b]\nendpoints = [\"10.0.0.2:80\", \"10.0.0.3:80\"]\n";
        let base = upstreams(text);
        let changed = |change: &dyn Fn(&mut Vec<UpstreamConfig>)| {
            let mut other = base.clone();
            change(&mut other);
            other
        };
        let cases: Vec<(&str, Vec<UpstreamConfig>, bool)> = vec![
            ("identical", base.clone(), true),
            (
                "an address changed",
                changed(&|u| u[1].endpoints[1] = endpoint("10.0.0.4:80", 1, None)),
                false,
            ),
            (
                "an address added",
                changed(&|u| u[0].endpoints.push(endpoint("10.0.0.9:80", 1, None))),
                false,
            ),
            (
                "an address gone",
                changed(&|u| {
                    u[1].endpoints.pop();
                }),
                false,
            ),
            (
                "a weight changed",
                changed(&|u| u[0].endpoints[0].weight = 2),
                false,
            ),
            (
                "a host name appeared",
                changed(&|u| u[0].endpoints[0].hostname = Some("a.internal:80".into())),
                false,
            ),
            (
                "an upstream gone",
                changed(&|u| {
                    u.pop();
                }),
                false,
            ),
            (
                "an upstream renamed",
                changed(&|u| u[0].name = "c".into()),
                false,
            ),
            (
                "other settings do not count",
                changed(&|u| {
                    u[0].resolve_interval = Duration::from_secs(1);
                    u[0].pool.max_idle = 1;
                }),
                true,
            ),
        ];
        for (what, other, want) in cases {
            assert_eq!(same_endpoints(&base, &other), want, "{what}");
            assert_eq!(same_endpoints(&other, &base), want, "{what} (reversed)");
        }
    }

    /// A config with hash upstream `h` over `endpoints` (TOML array items) and round-robin
    /// upstream `r`; `max_idle` changes something that is not an endpoint.
    fn hash_config(endpoints: &str, max_idle: usize) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[admin]\nenabled = false\n\
             [upstreams.h]\nendpoints = [{endpoints}]\nbalance = \"hash\"\n\
             hash_key = \"client_ip\"\n[upstreams.h.pool]\nmax_idle = {max_idle}\n\
             [upstreams.r]\nendpoints = [\"10.0.1.1:80\"]\n"
        )
    }

    /// The Maglev table of upstream `i` of `config`.
    fn table(config: &Config, i: usize) -> Arc<crate::upstream::maglev::Maglev> {
        config.upstreams[i]
            .shared
            .maglev()
            .expect("a table")
            .clone()
    }

    /// Whether every endpoint of `config` carries the registry's flag.
    fn flags_are_the_registry_s(control: &Control, config: &Config) -> bool {
        config.upstreams.iter().all(|u| {
            u.endpoints.iter().enumerate().all(|(i, e)| {
                let flag = control.health().get(&u.name, e.addr);
                matches!((flag, u.shared.health(i)), (Some(a), Some(b)) if Arc::ptr_eq(&a, b))
            })
        })
    }

    #[test]
    fn published_snapshots_carry_shared_tables_and_flags() {
        let dir = std::env::temp_dir().join(format!("strait-shared-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("strait.toml");
        let two = "\"10.0.0.1:80\", \"10.0.0.2:80\"";
        std::fs::write(&path, hash_config(two, 8)).unwrap();
        let control = Control::load(ConfigSource::File(path.clone())).unwrap();
        let first = control.current();
        assert!(first.upstreams[1].shared.maglev().is_none());
        assert!(flags_are_the_registry_s(&control, &first));

        // A reload that leaves the endpoints alone: a new snapshot, the same table and flags.
        std::fs::write(&path, hash_config(two, 16)).unwrap();
        control.reload().unwrap();
        let second = control.current();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.upstreams[0].pool.max_idle, 16);
        assert!(Arc::ptr_eq(&table(&first, 0), &table(&second, 0)));
        assert!(flags_are_the_registry_s(&control, &second));
        let flag = |c: &Config, i: usize| c.upstreams[0].shared.health(i).unwrap().clone();
        assert!(Arc::ptr_eq(&flag(&first, 1), &flag(&second, 1)));

        // A changed endpoint list: a new table, and the kept address keeps its flag.
        std::fs::write(&path, hash_config("\"10.0.0.2:80\", \"10.0.0.3:80\"", 16)).unwrap();
        control.reload().unwrap();
        let third = control.current();
        assert!(!Arc::ptr_eq(&table(&second, 0), &table(&third, 0)));
        assert!(Arc::ptr_eq(&flag(&second, 1), &flag(&third, 0)));
        assert!(flags_are_the_registry_s(&control, &third));
        assert_eq!(control.health().len(), 3, "10.0.0.1 is gone");

        // A registration changes the endpoints too.
        let added = [endpoint("10.0.0.4:80", 1, None)];
        control.register("h", &added).unwrap();
        let fourth = control.current();
        assert_eq!(fourth.upstreams[0].endpoints.len(), 3);
        assert!(!Arc::ptr_eq(&table(&third, 0), &table(&fourth, 0)));
        assert!(flags_are_the_registry_s(&control, &fourth));

        // A reload that fails publishes nothing.
        std::fs::write(&path, "not toml [").unwrap();
        assert!(control.reload().is_err());
        assert!(Arc::ptr_eq(&fourth, &control.current()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reload_files_rebuilds_the_served_text_not_the_file_on_disk() {
        let dir = crate::scratch::ScratchDir::new("reload-files");
        let path = dir.join("strait.toml");
        std::fs::write(&path, hash_config("\"10.0.0.1:80\"", 8)).unwrap();
        let control = Control::load(ConfigSource::File(path.clone())).unwrap();
        // An edit nobody asked to load yet.
        std::fs::write(&path, hash_config("\"10.0.0.1:80\"", 16)).unwrap();
        let status = control.reload_files().unwrap();
        assert_eq!(status.generation, 2);
        assert_eq!(control.current().upstreams[0].pool.max_idle, 8);
        assert!(control.last_reload().ok);
        // A reload does load the edit.
        control.reload().unwrap();
        assert_eq!(control.current().upstreams[0].pool.max_idle, 16);
    }

    #[test]
    fn refresh_without_dns_change_keeps_the_snapshot() {
        let dir = crate::scratch::ScratchDir::new("refresh");
        let path = dir.join("strait.toml");
        std::fs::write(
            &path,
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[admin]\nenabled = false\n\
             [upstreams.a]\nendpoints = [\"localhost:9\", \"10.0.0.1:80\"]\n",
        )
        .unwrap();
        let control = Control::load(ConfigSource::File(path)).unwrap();
        let before = control.current();
        assert!(before.upstreams[0]
            .endpoints
            .iter()
            .any(|e| e.hostname.as_deref() == Some("localhost:9")));
        // localhost resolves the same way twice: nothing to swap.
        assert!(!control.refresh().unwrap());
        assert_eq!(control.generation(), 1);
        assert!(Arc::ptr_eq(&before, &control.current()));
    }
}

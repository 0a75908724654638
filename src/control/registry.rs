//! Endpoints registered at runtime through the admin API, and the state file that keeps
//! them across restarts.
//!
//! Owned by [`crate::control::Control`], never touched on the request path. The config file
//! stays the source of truth for its own endpoints: the registry only *adds* endpoints to
//! upstreams the config defines, and [`Registry::apply`] appends them to every config built
//! (at start, on reload, on each registration) so that they survive both.
//!
//! # State file
//! JSON, written atomically (temporary file in the same directory, write, fsync, rename,
//! fsync the directory), so a crash leaves the old file or the new one, never half of one:
//!
//! ```json
//! {"version":1,"upstreams":{"app":[{"addr":"127.0.0.1:9003","weight":1}]}}
//! ```
//!
//! Without a state file, registrations live in memory only and end with the process.
//!
//! # Invariants
//! - No upstream's list holds an address twice; no list is empty (an upstream whose last
//!   endpoint is removed disappears from the map).
//! - Every weight is within `1..=MAX_WEIGHT`, as in the config file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::upstream::config::Endpoint;

/// The state file format this code writes and reads.
const STATE_VERSION: u64 = 1;
/// The largest endpoint weight, as in the config file (`endpoints[].weight`).
pub const MAX_WEIGHT: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown upstream \"{0}\"")]
    UnknownUpstream(String),
    #[error("endpoint {0} is not registered")]
    NotRegistered(SocketAddr),
    /// The endpoint is defined in the config file, which the registry never overrides.
    #[error("endpoint {addr} of upstream \"{upstream}\" comes from the config file (weight {weight}): change it there and reload")]
    FromConfig {
        upstream: String,
        addr: SocketAddr,
        weight: u32,
    },
    #[error("invalid endpoint {addr}: {reason}")]
    InvalidEndpoint {
        addr: SocketAddr,
        reason: &'static str,
    },
    #[error("cannot build the config: {0}")]
    Config(String),
    #[error("cannot write the state file: {0}")]
    Persist(std::io::Error),
}

/// The registered endpoints, by upstream name, and where they are saved.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    path: Option<PathBuf>,
    upstreams: BTreeMap<String, Vec<Endpoint>>,
}

/// The state file's JSON shape.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u64,
    #[serde(default)]
    upstreams: BTreeMap<String, Vec<StateEndpoint>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateEndpoint {
    addr: SocketAddr,
    weight: u32,
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Why an address cannot be an upstream endpoint (nothing can connect to it), if it cannot.
pub fn endpoint_problem(endpoint: &Endpoint) -> Option<&'static str> {
    if endpoint.addr.port() == 0 {
        Some("port 0 cannot be connected to")
    } else if endpoint.addr.ip().is_unspecified() {
        Some("the unspecified address cannot be connected to")
    } else if endpoint.addr.ip().is_multicast() {
        Some("a multicast address cannot be an endpoint")
    } else if !(1..=MAX_WEIGHT).contains(&endpoint.weight) {
        Some("weight must be within 1..=1000")
    } else {
        None
    }
}

impl Registry {
    /// Reads the registrations saved at `path`; a missing file (or no path) is an empty
    /// registry. A file that does not parse, or holds an invalid entry, is an error: it is
    /// never silently dropped (the next save would erase it).
    pub fn load(path: Option<&Path>) -> io::Result<Registry> {
        let mut registry = Registry {
            path: path.map(Path::to_path_buf),
            upstreams: BTreeMap::new(),
        };
        let Some(path) = path else {
            return Ok(registry);
        };
        let text = match fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(registry),
            Err(e) => return Err(e),
        };
        let state: StateFile = serde_json::from_slice(&text)
            .map_err(|e| invalid_data(format!("{}: {e}", path.display())))?;
        if state.version != STATE_VERSION {
            return Err(invalid_data(format!(
                "{}: unsupported version {} (expected {STATE_VERSION})",
                path.display(),
                state.version
            )));
        }
        for (name, endpoints) in state.upstreams {
            let mut list: Vec<Endpoint> = Vec::with_capacity(endpoints.len());
            for e in endpoints {
                let endpoint = Endpoint {
                    addr: e.addr,
                    weight: e.weight,
                    hostname: None,
                };
                if let Some(problem) = endpoint_problem(&endpoint) {
                    return Err(invalid_data(format!(
                        "{}: upstream \"{name}\": endpoint {}: {problem}",
                        path.display(),
                        e.addr
                    )));
                }
                if list.iter().any(|known| known.addr == endpoint.addr) {
                    return Err(invalid_data(format!(
                        "{}: upstream \"{name}\": endpoint {} listed twice",
                        path.display(),
                        e.addr
                    )));
                }
                list.push(endpoint);
            }
            if !list.is_empty() {
                registry.upstreams.insert(name, list);
            }
        }
        Ok(registry)
    }

    /// Appends the registered endpoints to the matching upstreams of `config`, skipping
    /// addresses the upstream already has. Entries for upstreams the config does not define
    /// are kept (a later reload may bring the upstream back) but not served.
    pub fn apply(&self, config: &mut Config) {
        for (name, endpoints) in &self.upstreams {
            let Some(upstream) = config.upstreams.iter_mut().find(|u| &u.name == name) else {
                tracing::warn!(
                    upstream = %name,
                    endpoints = endpoints.len(),
                    "registered endpoints skipped: the config defines no such upstream"
                );
                continue;
            };
            for endpoint in endpoints {
                if !upstream.endpoints.iter().any(|e| e.addr == endpoint.addr) {
                    upstream.endpoints.push(endpoint.clone());
                }
            }
        }
    }

    /// Registers `endpoints` with upstream `name` of `config` (the config being served, which
    /// already includes the registered endpoints). Registering an address that is already
    /// registered sets its weight; one the config file defines with the same weight is a
    /// no-op, with another weight a [`RegistryError::FromConfig`].
    pub fn add(
        &mut self,
        config: &Config,
        name: &str,
        endpoints: &[Endpoint],
    ) -> Result<(), RegistryError> {
        let upstream = config
            .upstreams
            .iter()
            .find(|u| u.name == name)
            .ok_or_else(|| RegistryError::UnknownUpstream(name.to_string()))?;
        for endpoint in endpoints {
            if let Some(reason) = endpoint_problem(endpoint) {
                return Err(RegistryError::InvalidEndpoint {
                    addr: endpoint.addr,
                    reason,
                });
            }
        }
        // Check everything before changing anything: a refused call changes nothing.
        for endpoint in endpoints {
            if self.contains(name, endpoint.addr) {
                continue;
            }
            if let Some(from_file) = upstream.endpoints.iter().find(|e| e.addr == endpoint.addr) {
                if from_file.weight != endpoint.weight {
                    return Err(RegistryError::FromConfig {
                        upstream: name.to_string(),
                        addr: endpoint.addr,
                        weight: from_file.weight,
                    });
                }
            }
        }
        let registered = self.upstreams.entry(name.to_string()).or_default();
        for endpoint in endpoints {
            if let Some(known) = registered.iter_mut().find(|e| e.addr == endpoint.addr) {
                known.weight = endpoint.weight;
            } else if !upstream.endpoints.iter().any(|e| e.addr == endpoint.addr) {
                registered.push(endpoint.clone());
            }
        }
        if registered.is_empty() {
            self.upstreams.remove(name);
        }
        Ok(())
    }

    /// Removes the registered endpoint `addr` of upstream `name`. An endpoint that only the
    /// config file defines cannot be removed ([`RegistryError::FromConfig`]).
    pub fn remove(
        &mut self,
        config: &Config,
        name: &str,
        addr: SocketAddr,
    ) -> Result<(), RegistryError> {
        if let Some(registered) = self.upstreams.get_mut(name) {
            if let Some(at) = registered.iter().position(|e| e.addr == addr) {
                registered.remove(at);
                if registered.is_empty() {
                    self.upstreams.remove(name);
                }
                return Ok(());
            }
        }
        let upstream = config
            .upstreams
            .iter()
            .find(|u| u.name == name)
            .ok_or_else(|| RegistryError::UnknownUpstream(name.to_string()))?;
        match upstream.endpoints.iter().find(|e| e.addr == addr) {
            Some(from_file) => Err(RegistryError::FromConfig {
                upstream: name.to_string(),
                addr,
                weight: from_file.weight,
            }),
            None => Err(RegistryError::NotRegistered(addr)),
        }
    }

    /// The registered endpoints, by upstream name (sorted by name, endpoints in the order
    /// they were registered).
    pub fn entries(&self) -> Vec<(String, Vec<Endpoint>)> {
        self.upstreams
            .iter()
            .map(|(name, endpoints)| (name.clone(), endpoints.clone()))
            .collect()
    }

    /// Whether `addr` is registered with upstream `name`.
    pub fn contains(&self, name: &str, addr: SocketAddr) -> bool {
        self.upstreams
            .get(name)
            .is_some_and(|list| list.iter().any(|e| e.addr == addr))
    }

    /// Writes the registry to its state file atomically; without a state file, does nothing.
    pub fn save(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let state = StateFile {
            version: STATE_VERSION,
            upstreams: self
                .upstreams
                .iter()
                .map(|(name, endpoints)| {
                    let list = endpoints
                        .iter()
                        .map(|e| StateEndpoint {
                            addr: e.addr,
                            weight: e.weight,
                        })
                        .collect();
                    (name.clone(), list)
                })
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&state).map_err(io::Error::other)?;
        text.push(b'\n');
        write_atomically(path, &text)
    }
}

/// Replaces `path` with `contents` so that a crash at any point leaves either the old file
/// or the new one: write a temporary file beside it, fsync it, rename it over `path`
/// (atomic within one file system), then fsync the directory so the rename itself is
/// durable.
fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "state file has no name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = dir.join(temp_name);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::load_str(text, "test.toml").unwrap()
    }

    const TWO_UPSTREAMS: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[upstreams.app]
endpoints = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 2 }]

[upstreams.other]
endpoints = ["127.0.0.1:9101"]
"#;

    fn ep(addr: &str, weight: u32) -> Endpoint {
        Endpoint {
            addr: addr.parse().unwrap(),
            weight,
            hostname: None,
        }
    }

    fn temp_dir(name: &str) -> crate::scratch::ScratchDir {
        crate::scratch::ScratchDir::new(&format!("registry-{name}"))
    }

    fn addrs(config: &Config, name: &str) -> Vec<(String, u32)> {
        config
            .upstreams
            .iter()
            .find(|u| u.name == name)
            .unwrap()
            .endpoints
            .iter()
            .map(|e| (e.addr.to_string(), e.weight))
            .collect()
    }

    #[test]
    fn missing_file_or_no_path_is_empty() {
        let dir = temp_dir("missing");
        assert!(Registry::load(None).unwrap().entries().is_empty());
        let r = Registry::load(Some(&dir.join("absent.json"))).unwrap();
        assert!(r.entries().is_empty());
        // Saving without a path is a no-op.
        Registry::load(None).unwrap().save().unwrap();
    }

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("state.json");
        let cfg = config(TWO_UPSTREAMS);
        let mut r = Registry::load(Some(&path)).unwrap();
        r.add(&cfg, "app", &[ep("127.0.0.1:9003", 1), ep("[::1]:9004", 7)])
            .unwrap();
        r.add(&cfg, "other", &[ep("10.0.0.1:80", 1000)]).unwrap();
        r.save().unwrap();
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["state.json"]);
        let text = fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["upstreams"]["app"][1]["addr"], "[::1]:9004");
        assert_eq!(value["upstreams"]["app"][1]["weight"], 7);

        let loaded = Registry::load(Some(&path)).unwrap();
        assert_eq!(loaded.entries(), r.entries());

        // Overwriting replaces the whole file.
        let mut r2 = loaded.clone();
        r2.remove(&cfg, "other", "10.0.0.1:80".parse().unwrap())
            .unwrap();
        r2.save().unwrap();
        let reloaded = Registry::load(Some(&path)).unwrap();
        assert_eq!(reloaded.entries().len(), 1);
    }

    #[test]
    fn save_into_missing_directory_fails_and_keeps_nothing() {
        let dir = temp_dir("nodir");
        let path = dir.join("absent").join("state.json");
        let mut r = Registry::load(Some(&path)).unwrap();
        r.add(&config(TWO_UPSTREAMS), "app", &[ep("127.0.0.1:9003", 1)])
            .unwrap();
        assert!(r.save().is_err());
    }

    #[test]
    fn invalid_state_files_are_errors() {
        let dir = temp_dir("invalid");
        let path = dir.join("state.json");
        for bad in [
            "",
            "{",
            r#"{"version":2,"upstreams":{}}"#,
            r#"{"version":1,"upstreams":{"app":[{"addr":"nope","weight":1}]}}"#,
            r#"{"version":1,"upstreams":{"app":[{"addr":"127.0.0.1:1","weight":0}]}}"#,
            r#"{"version":1,"upstreams":{"app":[{"addr":"127.0.0.1:1","weight":1001}]}}"#,
            r#"{"version":1,"upstreams":{"app":[{"addr":"127.0.0.1:1","weight":1},{"addr":"127.0.0.1:1","weight":2}]}}"#,
            r#"{"version":1,"upstreams":{},"extra":true}"#,
        ] {
            fs::write(&path, bad).unwrap();
            let err = Registry::load(Some(&path)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad}");
        }
    }

    #[test]
    fn apply_appends_and_skips_present_addresses_and_unknown_upstreams() {
        let dir = temp_dir("apply");
        let path = dir.join("state.json");
        fs::write(
            &path,
            r#"{"version":1,"upstreams":{
                "app":[{"addr":"127.0.0.1:9002","weight":5},{"addr":"127.0.0.1:9003","weight":3}],
                "gone":[{"addr":"127.0.0.1:9999","weight":1}]}}"#,
        )
        .unwrap();
        let r = Registry::load(Some(&path)).unwrap();
        let mut cfg = config(TWO_UPSTREAMS);
        r.apply(&mut cfg);
        assert_eq!(
            addrs(&cfg, "app"),
            [
                ("127.0.0.1:9001".to_string(), 1),
                ("127.0.0.1:9002".to_string(), 2),
                ("127.0.0.1:9003".to_string(), 3)
            ]
        );
        // Applying twice changes nothing more.
        r.apply(&mut cfg);
        assert_eq!(addrs(&cfg, "app").len(), 3);
        assert_eq!(addrs(&cfg, "other").len(), 1);
        // The entry for the unknown upstream is kept.
        assert_eq!(r.entries().len(), 2);
    }

    #[test]
    fn add_is_idempotent_and_checks_the_upstream() {
        let mut cfg = config(TWO_UPSTREAMS);
        let mut r = Registry::default();
        r.add(&cfg, "app", &[ep("127.0.0.1:9003", 1)]).unwrap();
        r.apply(&mut cfg);
        // Again, registered: no duplicate; a new weight replaces the old.
        r.add(&cfg, "app", &[ep("127.0.0.1:9003", 1)]).unwrap();
        r.add(&cfg, "app", &[ep("127.0.0.1:9003", 4)]).unwrap();
        // From the config file with the same weight: nothing to do.
        r.add(&cfg, "app", &[ep("127.0.0.1:9002", 2)]).unwrap();
        assert_eq!(
            r.entries(),
            [("app".to_string(), vec![ep("127.0.0.1:9003", 4)])]
        );
        // From the config file with another weight: refused, nothing changed.
        let before = r.entries();
        assert!(matches!(
            r.add(
                &cfg,
                "app",
                &[ep("127.0.0.1:9005", 1), ep("127.0.0.1:9001", 9)]
            ),
            Err(RegistryError::FromConfig { weight: 1, .. })
        ));
        assert_eq!(r.entries(), before);
        assert!(matches!(
            r.clone().add(&cfg, "nope", &[ep("127.0.0.1:9003", 1)]),
            Err(RegistryError::UnknownUpstream(name)) if name == "nope"
        ));
        for bad in [
            ep("127.0.0.1:0", 1),
            ep("0.0.0.0:80", 1),
            ep("127.0.0.1:80", 0),
            ep("127.0.0.1:80", 1001),
        ] {
            assert!(matches!(
                r.clone().add(&cfg, "app", &[bad]),
                Err(RegistryError::InvalidEndpoint { .. })
            ));
        }
    }

    #[test]
    fn remove_distinguishes_registered_config_and_unknown() {
        let mut cfg = config(TWO_UPSTREAMS);
        let mut r = Registry::default();
        r.add(&cfg, "app", &[ep("127.0.0.1:9003", 1)]).unwrap();
        r.apply(&mut cfg);
        assert!(matches!(
            r.remove(&cfg, "app", "127.0.0.1:9001".parse().unwrap()),
            Err(RegistryError::FromConfig { .. })
        ));
        assert!(matches!(
            r.remove(&cfg, "app", "127.0.0.1:9999".parse().unwrap()),
            Err(RegistryError::NotRegistered(_))
        ));
        assert!(matches!(
            r.remove(&cfg, "nope", "127.0.0.1:9003".parse().unwrap()),
            Err(RegistryError::UnknownUpstream(_))
        ));
        r.remove(&cfg, "app", "127.0.0.1:9003".parse().unwrap())
            .unwrap();
        assert!(r.entries().is_empty());
        // Control rebuilds the served config after each change.
        let mut cfg = config(TWO_UPSTREAMS);
        r.apply(&mut cfg);
        assert!(matches!(
            r.remove(&cfg, "app", "127.0.0.1:9003".parse().unwrap()),
            Err(RegistryError::NotRegistered(_))
        ));
    }
}

//! Endpoints registered at runtime through the admin API (stub: replaced by the admin work).

use std::net::SocketAddr;
use std::path::Path;

use crate::config::{Config, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown upstream \"{0}\"")]
    UnknownUpstream(String),
    #[error("endpoint {0} is not registered")]
    NotRegistered(SocketAddr),
    #[error("cannot build the config: {0}")]
    Config(String),
    #[error("cannot write the state file: {0}")]
    Persist(std::io::Error),
}

#[derive(Debug, Clone, Default)]
pub struct Registry {}

impl Registry {
    pub fn load(_path: Option<&Path>) -> std::io::Result<Registry> {
        Ok(Registry {})
    }
    pub fn apply(&self, _config: &mut Config) {}
    pub fn add(
        &mut self,
        _config: &Config,
        name: &str,
        _endpoints: &[Endpoint],
    ) -> Result<(), RegistryError> {
        Err(RegistryError::UnknownUpstream(name.to_string()))
    }
    pub fn remove(
        &mut self,
        _config: &Config,
        _name: &str,
        addr: SocketAddr,
    ) -> Result<(), RegistryError> {
        Err(RegistryError::NotRegistered(addr))
    }
    pub fn entries(&self) -> Vec<(String, Vec<Endpoint>)> {
        Vec::new()
    }
    pub fn save(&self) -> std::io::Result<()> {
        Ok(())
    }
}

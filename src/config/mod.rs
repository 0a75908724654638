//! The config assembly: the file's sections listed in one place, parsed together and built
//! in order into one [`Config`], or into every error the file has.
//!
//! Each section lives with the capability that uses it, in that capability's `config.rs`:
//! its serde mirror (`File*`, `deny_unknown_fields`), its runtime types (`*Config`) and its
//! validation, written with the toolkit of [`crate::settings`]. Only this module (and what
//! sits above it: `main`, `control`, `proxy`, `runtime`, `admin`) knows every capability.
//!
//! | section | owner |
//! |---|---|
//! | `[server]` (listeners, limits, timeouts, access, trusted proxies) | `config/server.rs` |
//! | `[server.paths]` | `config/paths.rs` |
//! | `[server.http2]` | `config/http2.rs` |
//! | `[upstreams.NAME]` | `upstream/config.rs` |
//! | `[consumers.NAME]`, a route's `auth` | `auth/config.rs` |
//! | `[oauth2_providers.NAME]`, `auth.oauth2` | `auth/oauth2/config.rs` |
//! | `[jwt_providers.NAME]`, `auth.jwt` | `auth/jwt/config.rs` |
//! | `[cluster]`, a route's `rate_limits` | `ratelimit/config.rs` |
//! | `[[routes]]` (match, action, mock) | `config/routes.rs` |
//! | a route's `access`, `[server.access]` | `access/config.rs` |
//! | a route's `cors` | `cors/config.rs` |
//! | `[[server.tls]]` | `tls/config.rs` |
//! | a route's `client_cert`, `https_redirect` | `tls/client_cert.rs`, `tls/redirect.rs` |
//! | `[caches.NAME]`, a route's `cache` | `cache/config.rs` |
//! | `[admin]` | `config/admin.rs` |
//! | `[observability]` | `observe/config.rs` |
//!
//! Adding a capability: its folder with a `config.rs`, then its field in [`FileConfig`] and
//! in [`Config`] (or, for a per-route section, in `FileRoute` and [`Route`]) and its one
//! line in [`build`] (or in `routes::build`).
//!
//! The build runs on the main thread at start, on `--check` and on reload, and on the
//! admin and resolver threads when endpoints change; never on a worker (it reads key and
//! body files, and resolves endpoint host names). It starts no thread and opens no
//! connection: what a config needs in the background (JWKS refreshers) is started by
//! `control` once the config is served. It never stops at the first bad value: every
//! problem is collected as `file:line:column: key.path: what is wrong`, so one run of
//! `strait --check` shows them all. Only a TOML syntax or type error is reported alone,
//! since nothing after it can be trusted. Runtime types are immutable once built; a reload
//! builds a whole new [`Config`] and swaps it in, so no request ever sees half a config.

pub mod admin;
pub mod filters;
pub mod http2;
mod paths;
pub mod router;
mod routes;
mod server;
#[cfg(test)]
mod tests;
mod views;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use crate::auth::config::FileConsumer;
use crate::auth::jwt::config::FileJwtProvider;
use crate::auth::oauth2::config::FileOAuth2Provider;
use crate::observe::config::FileObservability;
use crate::ratelimit::config::FileCluster;
use crate::settings::{key_path, Ctx};
use crate::upstream::config::{FileUpstream, Resolve};
use crate::{auth, observe, ratelimit, upstream};
use admin::FileAdmin;
use router::RouteTable;

use crate::auth::config::ConsumerConfig;
use crate::auth::oauth2::config::OAuth2Provider;
/// `[server.limits]`: the codec's request limits, filled from the file.
pub use crate::http1::Limits;
use crate::observe::config::ObservabilityConfig;
use crate::ratelimit::config::ClusterConfig;
pub use crate::settings::{ConfigError, ConfigErrors};
use crate::upstream::config::UpstreamConfig;
use admin::AdminConfig;
pub use routes::{Action, MockResponse, ProxyAction, Route};
pub use server::{ServerConfig, Timeouts};

/// The config served when no file is given and `conf/strait.toml` is absent.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../conf/strait.toml");

/// Everything a worker needs to serve requests, validated and compiled.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    /// Indexed by [`UpstreamId`].
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: RouteTable,
    /// `[consumers.NAME]`, sorted by name; routes with `auth` authenticate against them.
    pub consumers: Vec<ConsumerConfig>,
    /// `[oauth2_providers.NAME]`, sorted by name; indexed by [`ProviderId`].
    pub oauth2_providers: Vec<OAuth2Provider>,
    pub admin: AdminConfig,
    pub observability: ObservabilityConfig,
    /// `[cluster]`: the Redis behind `scope = "cluster"` rate limits; `None` when absent.
    pub cluster: Option<ClusterConfig>,
    /// `[caches.NAME]`: the stores routes cache into (the admin API purges them).
    pub caches: Vec<Arc<crate::cache::config::CacheConfig>>,
}

/// The file as written: one field per top-level section. Values whose meaning is checked
/// after parsing are kept raw inside [`Spanned`], so that every bad one is reported with
/// its line and column; defaults live with each section's validation, not here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: server::FileServer,
    #[serde(default)]
    upstreams: BTreeMap<Spanned<String>, FileUpstream>,
    #[serde(default)]
    routes: Vec<Spanned<routes::FileRoute>>,
    #[serde(default)]
    consumers: BTreeMap<Spanned<String>, FileConsumer>,
    /// `[oauth2_providers.NAME]`: authorization servers whose introspection endpoint
    /// validates bearer tokens.
    #[serde(default)]
    oauth2_providers: BTreeMap<Spanned<String>, FileOAuth2Provider>,
    #[serde(default)]
    jwt_providers: BTreeMap<Spanned<String>, FileJwtProvider>,
    #[serde(default)]
    caches: BTreeMap<Spanned<String>, crate::cache::config::FileCache>,
    admin: Option<FileAdmin>,
    #[serde(default)]
    observability: FileObservability,
    /// Spanned so that a missing `redis` can point at the table.
    cluster: Option<Spanned<FileCluster>>,
}

/// The sections, in build order: each records its errors in `ctx` and returns what it
/// could build. A later section may refer to an earlier one (routes name upstreams,
/// providers, consumers' keys, the cluster).
fn build(ctx: &mut Ctx, file: FileConfig, resolve: Resolve<'_>) -> Option<Config> {
    let tls_in_file = file.server.tls.len();
    let server = server::build(ctx, file.server);
    let tls =
        crate::tls::ListenerFacts::of(server.as_ref().map_or(&[][..], |s| &s.tls[..]), tls_in_file);
    let (upstreams, upstream_ids) = upstream::config::build(ctx, file.upstreams, resolve);
    let consumers = auth::config::consumers(ctx, file.consumers);
    let (oauth2_providers, oauth2_ids) =
        auth::oauth2::config::providers(ctx, file.oauth2_providers, &upstream_ids);
    let jwt_providers = auth::jwt::config::providers(ctx, file.jwt_providers);
    let cluster = file
        .cluster
        .as_ref()
        .and_then(|c| ratelimit::config::cluster(ctx, c));
    let caches = crate::cache::config::build(ctx, file.caches);
    let defined = routes::Defined {
        upstreams: &upstream_ids,
        has_api_keys: consumers.iter().any(|c| !c.api_keys.is_empty()),
        oauth2_providers: &oauth2_ids,
        jwt_providers: &jwt_providers,
        has_cluster: file.cluster.is_some(),
        tls,
        caches: &caches,
    };
    let routes = routes::build(ctx, file.routes, &defined);
    let admin = admin::build(ctx, file.admin);
    let observability = observe::config::build(ctx, file.observability);
    Some(Config {
        server: server?,
        upstreams,
        routes: routes?,
        consumers,
        oauth2_providers,
        admin: admin?,
        observability,
        cluster,
        caches: caches.into_values().collect(),
    })
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, &origin),
        Err(err) => Err(ConfigErrors::single(
            &origin,
            format!("cannot read config file: {err}"),
        )),
    }
}

/// Every error `text` gives, as the `file:line:col: key: message` lines `--check` prints
/// (none when it loads): what the table-driven section tests compare.
#[cfg(test)]
pub(crate) fn load_errors(text: &str) -> Vec<String> {
    match load_str(text, "t.toml") {
        Ok(_) => Vec::new(),
        Err(errors) => errors.errors.iter().map(ToString::to_string).collect(),
    }
}

/// Validates config `text`; `origin` names it in messages, and relative `body_file` paths
/// resolve against its parent directory. Host-name endpoints are resolved with the system
/// resolver (blocking): never call this on a worker.
pub fn load_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    load_str_with(text, origin, &system_resolve)
}

/// The system resolver (`getaddrinfo`, blocking): the one lookup a build makes.
fn system_resolve(host_port: &str) -> std::io::Result<Vec<SocketAddr>> {
    host_port.to_socket_addrs().map(Iterator::collect)
}

/// [`load_str`] with the host-name resolver given (tests pass a fake DNS).
pub(crate) fn load_str_with(
    text: &str,
    origin: &str,
    resolve: Resolve<'_>,
) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx::new(text, origin);
    let file: FileConfig = match toml::from_str(text) {
        Ok(file) => file,
        Err(err) => {
            let (position, key) = match err.span() {
                Some(span) => (
                    Some(ctx.line_col(span.start)),
                    key_path::at(text, span.start),
                ),
                None => (None, String::new()),
            };
            let message = err.message().trim().replace('\n', " ");
            ctx.push(position, key, message);
            return Err(ConfigErrors {
                errors: ctx.into_errors(),
            });
        }
    };
    let config = build(&mut ctx, file, resolve);
    match config {
        Some(config) if ctx.error_count() == 0 => Ok(config),
        _ => Err(ConfigErrors {
            errors: ctx.into_errors(),
        }),
    }
}

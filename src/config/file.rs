//! The serde mirror of the TOML config file: what the user wrote, nothing more.
//!
//! Every struct denies unknown fields (a misspelt key is an error, never silently ignored) and
//! none uses `flatten`, which would defeat that. Values whose meaning is checked after parsing
//! (addresses, durations, sizes, names, patterns) are kept raw inside [`Spanned`], so
//! `build.rs` can report every bad value with its line and column instead of stopping at the
//! first. Defaults live in `build.rs`, next to the validation, not here.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::access::config::FileAccess;
use crate::admin::config::FileAdmin;
use crate::auth::config::{FileAuth, FileConsumer};
use crate::auth::jwt::config::FileJwtProvider;
use crate::auth::oauth2::config::FileOAuth2Provider;
use crate::cors::config::FileCors;
use crate::observe::config::FileObservability;
use crate::ratelimit::config::{FileCluster, FileRateLimit};
use crate::settings::{DurationValue, SizeValue};
use crate::upstream::config::FileUpstream;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server: FileServer,
    #[serde(default)]
    pub upstreams: BTreeMap<Spanned<String>, FileUpstream>,
    #[serde(default)]
    pub routes: Vec<Spanned<FileRoute>>,
    #[serde(default)]
    pub consumers: BTreeMap<Spanned<String>, FileConsumer>,
    /// `[oauth2_providers.NAME]`: authorization servers whose introspection endpoint
    /// validates bearer tokens.
    #[serde(default)]
    pub oauth2_providers: BTreeMap<Spanned<String>, FileOAuth2Provider>,
    #[serde(default)]
    pub jwt_providers: BTreeMap<Spanned<String>, FileJwtProvider>,
    pub admin: Option<FileAdmin>,
    #[serde(default)]
    pub observability: FileObservability,
    /// Spanned so that a missing `redis` can point at the table.
    pub cluster: Option<Spanned<FileCluster>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub listen: Spanned<Vec<Spanned<String>>>,
    pub workers: Option<Spanned<i64>>,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub timeouts: FileTimeouts,
    pub access: Option<FileAccess>,
    /// CIDRs whose `X-Forwarded-For` is believed (see `client_addr.rs`).
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_header_bytes: Option<Spanned<SizeValue>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<SizeValue>>,
    pub max_uri_bytes: Option<Spanned<SizeValue>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTimeouts {
    pub header_read: Option<Spanned<DurationValue>>,
    pub keepalive_idle: Option<Spanned<DurationValue>>,
    pub body_read: Option<Spanned<DurationValue>>,
    pub upstream_connect: Option<Spanned<DurationValue>>,
    pub upstream_response: Option<Spanned<DurationValue>>,
    pub drain: Option<Spanned<DurationValue>>,
    pub client_send: Option<Spanned<DurationValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub name: Option<Spanned<String>>,
    pub path: Spanned<String>,
    pub hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub upstream: Option<Spanned<String>>,
    pub mock: Option<Spanned<FileMock>>,
    pub strip_prefix: Option<Spanned<String>>,
    pub preserve_host: Option<Spanned<bool>>,
    pub host_rewrite: Option<Spanned<String>>,
    pub retry_non_idempotent: Option<Spanned<bool>>,
    pub rate_limits: Option<Vec<Spanned<FileRateLimit>>>,
    pub auth: Option<Spanned<FileAuth>>,
    pub access: Option<FileAccess>,
    pub cors: Option<Spanned<FileCors>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMock {
    pub status: Spanned<i64>,
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Spanned<String>>,
    pub body: Option<Spanned<String>>,
    pub body_file: Option<Spanned<String>>,
}

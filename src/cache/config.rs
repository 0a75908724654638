//! `[caches.NAME]` (a named store and its bounds) and a route's `cache` (which store, the
//! key, what clients may ask): the serde mirror, the runtime types and their validation.
//!
//! A store outlives the configs that name it: a reload that keeps `[caches.NAME]` with the
//! same `memory` keeps its objects (see [`STORES`]); changing `memory` starts it empty.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::object::Object;
use super::store::Store;
use crate::access::config::cidrs;
use crate::access::Cidr;
use crate::settings::{is_token, Ctx, DurationValue, SizeValue};

const DEFAULT_MEMORY: u64 = 64 * 1024 * 1024;
const DEFAULT_MAX_OBJECT: u64 = 1024 * 1024;
/// RFC 9111 §4.2.2 leaves the cap of heuristic freshness to the cache; a day is common.
const DEFAULT_HEURISTIC_MAX: Duration = Duration::from_secs(24 * 3600);
/// How long a request waits for another's fill of the same key (nginx's
/// `proxy_cache_lock_timeout` is 5 s too).
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// `[caches.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCache {
    pub memory: Option<Spanned<SizeValue>>,
    pub max_object: Option<Spanned<SizeValue>>,
    pub heuristic_max: Option<Spanned<DurationValue>>,
}

/// A route's `cache = { name = "...", ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRouteCache {
    pub name: Spanned<String>,
    pub key: Option<FileCacheKey>,
    pub honour_client: Option<bool>,
    pub store_set_cookie: Option<bool>,
    pub purge_from: Option<Vec<Spanned<String>>>,
    pub lock_timeout: Option<Spanned<DurationValue>>,
}

/// A route's `cache.key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCacheKey {
    pub scheme: Option<bool>,
    pub host: Option<bool>,
    /// `"as_sent"`, `"sorted"` or `"none"`.
    pub query: Option<Spanned<String>>,
    pub ignore_params: Option<Vec<String>>,
    pub headers: Option<Vec<Spanned<String>>>,
    pub consumer: Option<bool>,
}

/// A named store and its bounds.
#[derive(Debug)]
pub struct CacheConfig {
    pub name: Arc<str>,
    pub store: Arc<Store<Object>>,
    /// Responses larger than this are passed on, not stored.
    pub max_object: u64,
    /// The cap of heuristic freshness (RFC 9111 §4.2.2), in seconds.
    pub heuristic_max: u64,
}

/// How the query string enters the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKey {
    /// As the client sent it (after path normalisation).
    AsSent,
    /// Parameters sorted, so that `?b=1&a=2` and `?a=2&b=1` share an entry.
    Sorted,
    /// Left out: every query of a path shares one entry.
    None,
}

/// What a route's cache key is made of.
#[derive(Debug)]
pub struct KeyRules {
    pub scheme: bool,
    pub host: bool,
    pub query: QueryKey,
    /// Parameters left out of the key (tracking parameters).
    pub ignore_params: Vec<String>,
    /// Request headers (lower-case) whose values enter the key.
    pub headers: Vec<String>,
    /// The authenticated consumer enters the key: on by default on a route with `auth`,
    /// so that one consumer's answer never serves another.
    pub consumer: bool,
}

/// A route's `cache`.
#[derive(Debug)]
pub struct RouteCache {
    pub cache: Arc<CacheConfig>,
    pub key: KeyRules,
    /// The client's `Cache-Control` (no-cache, max-age, min-fresh, max-stale,
    /// only-if-cached) is honoured.
    pub honour_client: bool,
    pub store_set_cookie: bool,
    /// Clients allowed to send `PURGE` for a URL of the route (empty: nobody).
    pub purge_from: Vec<Cidr>,
    pub lock_timeout: Duration,
}

/// The stores of the running process by cache name, so that a reload finds them again.
static STORES: Mutex<BTreeMap<String, Weak<Store<Object>>>> = Mutex::new(BTreeMap::new());

/// The store named `name` with `capacity` bytes: the live one when its capacity matches.
fn store_for(name: &str, capacity: u64) -> Arc<Store<Object>> {
    let mut stores = STORES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    stores.retain(|_, store| store.strong_count() > 0);
    if let Some(store) = stores.get(name).and_then(Weak::upgrade) {
        if store.stats().capacity == capacity {
            return store;
        }
    }
    let store = Arc::new(Store::new(capacity));
    stores.insert(name.to_owned(), Arc::downgrade(&store));
    store
}

/// `[caches.NAME]`, by name.
pub fn build(
    ctx: &mut Ctx,
    file: BTreeMap<Spanned<String>, FileCache>,
) -> HashMap<String, Arc<CacheConfig>> {
    let mut caches = HashMap::with_capacity(file.len());
    for (name, cache) in file {
        let key = format!("caches.{}", name.get_ref());
        if !is_token(name.get_ref()) {
            ctx.error(
                name.span(),
                &key,
                "a cache name must be a token (letters, digits, -_.)",
            );
        }
        let memory = ctx.size(&cache.memory, &format!("{key}.memory"), DEFAULT_MEMORY);
        let max_object = ctx.size(
            &cache.max_object,
            &format!("{key}.max_object"),
            DEFAULT_MAX_OBJECT.min(memory / 64),
        );
        let heuristic_max = ctx.duration_or_zero(
            &cache.heuristic_max,
            &format!("{key}.heuristic_max"),
            DEFAULT_HEURISTIC_MAX,
        );
        let store = store_for(name.get_ref(), memory);
        if max_object > store.max_weight() {
            let at = cache.max_object.as_ref().map_or(name.span(), Spanned::span);
            ctx.error(
                at,
                format!("{key}.max_object"),
                format!(
                    "{max_object} bytes is more than one shard of `memory` holds ({}): raise \
                     `memory` or lower `max_object`",
                    store.max_weight()
                ),
            );
        }
        caches.insert(
            name.get_ref().clone(),
            Arc::new(CacheConfig {
                name: name.get_ref().as_str().into(),
                store,
                max_object,
                heuristic_max: heuristic_max.as_secs(),
            }),
        );
    }
    caches
}

/// A route's `cache`; `has_auth` says whether the route authenticates.
pub fn route_cache(
    ctx: &mut Ctx,
    file: &FileRouteCache,
    prefix: &str,
    caches: &HashMap<String, Arc<CacheConfig>>,
    has_auth: bool,
) -> Option<RouteCache> {
    let key = format!("{prefix}.cache");
    let Some(cache) = caches.get(file.name.get_ref()) else {
        let mut known: Vec<&str> = caches.keys().map(String::as_str).collect();
        known.sort_unstable();
        let known = if known.is_empty() {
            "no [caches.NAME] is defined".to_owned()
        } else {
            format!("known: {}", known.join(", "))
        };
        ctx.error(
            file.name.span(),
            format!("{key}.name"),
            format!("unknown cache \"{}\" ({known})", file.name.get_ref()),
        );
        return None;
    };
    let rules = file.key.as_ref();
    let query = match rules.and_then(|k| k.query.as_ref()) {
        None => QueryKey::AsSent,
        Some(q) => match q.get_ref().as_str() {
            "as_sent" => QueryKey::AsSent,
            "sorted" => QueryKey::Sorted,
            "none" => QueryKey::None,
            other => {
                ctx.error(
                    q.span(),
                    format!("{key}.key.query"),
                    format!("\"{other}\": expected \"as_sent\", \"sorted\" or \"none\""),
                );
                QueryKey::AsSent
            }
        },
    };
    let mut headers = Vec::new();
    for (i, name) in rules
        .and_then(|k| k.headers.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !is_token(name.get_ref()) {
            ctx.error(
                name.span(),
                format!("{key}.key.headers[{i}]"),
                format!("\"{}\" is not a header name", name.get_ref()),
            );
        }
        headers.push(name.get_ref().to_ascii_lowercase());
    }
    let purge_from = cidrs(
        ctx,
        file.purge_from.as_deref(),
        &format!("{key}.purge_from"),
    );
    Some(RouteCache {
        cache: cache.clone(),
        key: KeyRules {
            scheme: rules.and_then(|k| k.scheme).unwrap_or(true),
            host: rules.and_then(|k| k.host).unwrap_or(true),
            query,
            ignore_params: rules
                .and_then(|k| k.ignore_params.clone())
                .unwrap_or_default(),
            headers,
            consumer: rules.and_then(|k| k.consumer).unwrap_or(has_auth),
        },
        honour_client: file.honour_client.unwrap_or(true),
        store_set_cookie: file.store_set_cookie.unwrap_or(false),
        purge_from,
        lock_timeout: ctx.duration(
            &file.lock_timeout,
            &format!("{key}.lock_timeout"),
            DEFAULT_LOCK_TIMEOUT,
        ),
    })
}

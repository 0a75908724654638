//! Route selection: `(Host, method, path)` → the [`Route`] that serves the request.
//!
//! Sits right after the request head is parsed and before any filter runs. Everything is
//! compiled at config load into one [`matchit::Router`] per host scope, so a lookup is a host
//! hash probe plus one radix-tree walk, and performs no allocation of its own.
//!
//! # Host selection
//! The Host header value, port removed (`[::1]:8080` → `[::1]`), one trailing dot removed, is
//! compared case-insensitively. Exactly one router is chosen:
//! 1. the router of that exact host, if a route names it;
//! 2. else the router of the longest wildcard suffix that matches (`*.example.com` matches
//!    `a.example.com` and `a.b.example.com`, never `example.com` itself);
//! 3. else the default router (also used when Host is missing, empty or over 255 bytes).
//!
//! # Precedence inside a router
//! A router holds, in this order: the routes naming its host, then the routes of every
//! wildcard that also covers it (longest suffix first), then the routes without `hosts`.
//! At an identical path pattern the earlier tier wins, so `api.example.com /` beats a
//! catch-all `/` while the catch-all still serves every path `api.example.com` leaves alone.
//! Between *different* patterns matchit's own rule applies: static segments beat `{param}`,
//! which beats `{*catch_all}`; this does not depend on file order.
//!
//! # Methods
//! Each pattern keeps a list of candidate routes. The first candidate listing the method (or
//! listing none, meaning any) wins; a `HEAD` request falls back to the first candidate
//! listing `GET`. When the pattern matches but no candidate accepts the method, the answer is
//! 405 with an `Allow` value pre-rendered at build time (`GET` implies `HEAD`).
//!
//! # Prefix edge cases
//! A pattern ending in `/{*rest}` (for example `/api/{*rest}`) also matches `/api/` (an empty
//! rest), because "everything under /api/" is what people mean by it. `/api` without the
//! slash does not match (404) unless some route's pattern says `/api`. A route whose pattern
//! is exactly `/api/` comes before the catch-all's implicit `/api/`.
//!
//! # Conflicts (rejected at build)
//! Two routes in the same host tier with the same pattern and overlapping methods; two
//! patterns matchit cannot tell apart (`/u/{id}` vs `/u/{name}`); invalid patterns.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use ahash::AHashMap;

use super::Route;
use crate::settings::normalize_host_pattern;

/// Host names longer than this cannot be valid DNS names (RFC 1035 §2.3.4 allows 253 octets
/// plus slack for a trailing dot and brackets); such a Host header gets the default router.
const MAX_HOST_BYTES: usize = 255;

/// The outcome of [`RouteTable::lookup`].
#[derive(Debug)]
pub enum RouteMatch<'a> {
    Found(&'a Route),
    /// The path matched but no route there accepts the method; `allow` is the value for the
    /// 405 response's `Allow` header, e.g. `"GET, HEAD, POST"`.
    MethodNotAllowed {
        allow: &'a str,
    },
    NotFound,
}

/// A route rejected by [`RouteTable::build`]; `route` is its index in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub route: usize,
    /// Set when the error is about one host pattern: its index in `hosts[route]`.
    pub host: Option<usize>,
    pub message: String,
}

/// The candidates registered under one path pattern of one router.
#[derive(Debug)]
struct Slot {
    /// Indices into `RouteTable::routes`, in precedence order.
    candidates: Box<[usize]>,
    /// Pre-rendered `Allow` value; empty when some candidate accepts any method.
    allow: Box<str>,
}

/// All routes, compiled for lookup. Immutable once built.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    slots: Vec<Slot>,
    /// `routers[0]` is the default router; the values are indices into `slots`.
    routers: Vec<matchit::Router<usize>>,
    /// Lower-case host → index into `routers`.
    exact: AHashMap<Box<[u8]>, usize>,
    /// Lower-case suffix with its leading dot (`.example.com`) → index into `routers`.
    wildcard: AHashMap<Box<[u8]>, usize>,
    /// The host patterns of each route, normalised (lower case, no trailing dot).
    hosts: Vec<Vec<String>>,
}

/// A host pattern after normalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum HostKey {
    /// `api.example.com`, `[::1]`, `10.0.0.1`.
    Exact(String),
    /// The suffix with its leading dot: `*.example.com` → `.example.com`.
    Wildcard(String),
}

impl HostKey {
    fn parse(pattern: &str) -> HostKey {
        match pattern.strip_prefix('*') {
            Some(suffix) => HostKey::Wildcard(suffix.to_owned()),
            None => HostKey::Exact(pattern.to_owned()),
        }
    }

    /// Whether every host this key selects is also covered by the wildcard `suffix`.
    fn is_covered_by(&self, suffix: &str) -> bool {
        match self {
            HostKey::Exact(host) => host.len() > suffix.len() && host.ends_with(suffix),
            HostKey::Wildcard(own) => own.len() > suffix.len() && own.ends_with(suffix),
        }
    }
}

/// Whether two method lists can both accept some method (an empty list accepts all).
fn methods_overlap(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
}

/// For a pattern ending in `/{*name}`, the pattern without the catch-all (`/api/`).
fn catch_all_base(pattern: &str) -> Option<&str> {
    let start = pattern.rfind("/{*")? + 1;
    let tail = &pattern[start..];
    // The catch-all must be the whole last segment: `{*name}` and nothing after.
    (tail.ends_with('}') && !tail[..tail.len() - 1].contains(['}', '/'])).then(|| &pattern[..start])
}

fn describe(routes: &[Route], index: usize) -> String {
    match routes.get(index) {
        Some(route) if route.name != format!("routes[{index}]") => {
            format!("route \"{}\" (routes[{index}])", route.name)
        }
        _ => format!("routes[{index}]"),
    }
}

/// One router being assembled: patterns in insertion order with their candidates. The
/// patterns borrow the routes' paths (an alias is a prefix of one), so that filling the
/// routers copies no strings.
#[derive(Default)]
struct ScopeBuilder<'a> {
    entries: Vec<(&'a str, Vec<usize>)>,
    by_pattern: AHashMap<&'a str, usize>,
}

impl<'a> ScopeBuilder<'a> {
    fn entry(&mut self, pattern: &'a str) -> &mut Vec<usize> {
        let index = *self.by_pattern.entry(pattern).or_insert_with(|| {
            self.entries.push((pattern, Vec::new()));
            self.entries.len() - 1
        });
        &mut self.entries[index].1
    }
}

/// Collects errors, reporting each conflicting pair once even though it shows up in every
/// router that holds both routes.
#[derive(Default)]
struct Errors {
    list: Vec<RouteError>,
    seen: HashSet<(usize, String)>,
}

impl Errors {
    fn push(&mut self, route: usize, message: String) {
        self.push_at(route, None, message);
    }

    fn push_at(&mut self, route: usize, host: Option<usize>, message: String) {
        if self.seen.insert((route, message.clone())) {
            self.list.push(RouteError {
                route,
                host,
                message,
            });
        }
    }
}

impl RouteTable {
    /// `routes` in file order; `hosts[i]` are the host patterns of routes[i] (empty = any
    /// host), as accepted by [`normalize_host_pattern`] (they are normalised again here).
    pub fn build(
        routes: Vec<Route>,
        hosts: Vec<Vec<String>>,
    ) -> Result<RouteTable, Vec<RouteError>> {
        debug_assert_eq!(routes.len(), hosts.len());
        let mut errors = Errors::default();

        // Reject bad patterns once, up front, rather than once per router; and each distinct
        // pattern once (hosts often share their paths).
        let mut valid = vec![true; routes.len()];
        let mut pattern_errors: AHashMap<&str, Option<String>> = AHashMap::new();
        for (index, route) in routes.iter().enumerate() {
            let path = route.path.as_str();
            if !path.starts_with('/') {
                errors.push(index, format!("path \"{path}\" must start with '/'"));
                valid[index] = false;
            } else if let Some(err) = pattern_errors.entry(path).or_insert_with(|| {
                matchit::Router::new()
                    .insert(path, ())
                    .err()
                    .map(|e| e.to_string())
            }) {
                errors.push(index, format!("invalid path pattern \"{path}\": {err}"));
                valid[index] = false;
            }
        }

        // The routes of each host key, in file order, gathered in one pass so that each
        // router visits only the routes of its own tiers: with one router per host, going
        // over every route for each router made the build quadratic.
        let mut by_key: BTreeMap<HostKey, Vec<usize>> = BTreeMap::new();
        let mut any_host: Vec<usize> = Vec::new();
        let mut normalized: Vec<Vec<String>> = Vec::with_capacity(routes.len());
        let mut normalized_patterns: AHashMap<&str, Result<String, String>> = AHashMap::new();
        for index in 0..routes.len() {
            let mut served = Vec::new();
            let patterns = hosts.get(index).map(Vec::as_slice).unwrap_or_default();
            for (host_index, pattern) in patterns.iter().enumerate() {
                let outcome = normalized_patterns
                    .entry(pattern.as_str())
                    .or_insert_with(|| normalize_host_pattern(pattern));
                match outcome {
                    Ok(host) => {
                        let members = by_key.entry(HostKey::parse(host)).or_default();
                        // A route naming one host twice (`a.com`, `A.com`) is one member.
                        if members.last() != Some(&index) {
                            members.push(index);
                        }
                        served.push(host.clone());
                    }
                    Err(why) => errors.push_at(
                        index,
                        Some(host_index),
                        format!("invalid host \"{pattern}\": {why}"),
                    ),
                }
            }
            if lists_no_hosts(&hosts, index) {
                any_host.push(index);
            }
            normalized.push(served);
        }
        let wildcards: Vec<&HostKey> = by_key
            .keys()
            .filter(|key| matches!(key, HostKey::Wildcard(_)))
            .collect();

        // Router 0 is the default; then one per distinct host key.
        let scopes: Vec<Option<&HostKey>> = std::iter::once(None)
            .chain(by_key.keys().map(Some))
            .collect();
        let mut routers = Vec::with_capacity(scopes.len());
        let mut slots = Vec::new();
        let mut exact = AHashMap::new();
        let mut wildcard = AHashMap::new();

        for (router_index, scope) in scopes.iter().enumerate() {
            // Tiers in precedence order: own host, covering wildcards (longest first), any.
            let mut tiers: Vec<Option<&HostKey>> = Vec::new();
            if let Some(key) = scope {
                tiers.push(Some(key));
                let mut covering: Vec<&HostKey> = wildcards
                    .iter()
                    .copied()
                    .filter(|other| match other {
                        HostKey::Wildcard(suffix) => key.is_covered_by(suffix),
                        HostKey::Exact(_) => false,
                    })
                    .collect();
                covering.sort_by_key(|other| match other {
                    HostKey::Wildcard(suffix) | HostKey::Exact(suffix) => {
                        std::cmp::Reverse(suffix.len())
                    }
                });
                tiers.extend(covering.into_iter().map(Some));
            }
            tiers.push(None);

            let mut builder = ScopeBuilder::default();
            for tier in &tiers {
                // How many candidates each pattern had before this tier: a same-pattern hit
                // on those is precedence, a hit on the ones after is a conflict.
                let mut tier_start: AHashMap<&str, usize> = AHashMap::new();
                let members = match tier {
                    Some(key) => by_key.get(*key).map(Vec::as_slice).unwrap_or_default(),
                    None => any_host.as_slice(),
                };
                for &index in members {
                    let Some(route) = routes.get(index) else {
                        continue;
                    };
                    if !valid[index] {
                        continue;
                    }
                    let path = route.path.as_str();
                    let candidates = builder.entry(path);
                    let start = *tier_start.entry(path).or_insert(candidates.len());
                    for &other in candidates.get(start..).unwrap_or_default() {
                        if methods_overlap(&routes[other].methods, &route.methods) {
                            errors.push(
                                index,
                                format!(
                                    "path \"{}\" with {} conflicts with {}: same hosts, same \
                                     pattern and overlapping methods (the second could never \
                                     match)",
                                    route.path,
                                    method_list(&route.methods),
                                    describe(&routes, other),
                                ),
                            );
                        }
                    }
                    candidates.push(index);
                }
            }

            // `/api/{*rest}` also answers `/api/`, after any route written as `/api/`.
            let aliases: Vec<(&str, Vec<usize>)> = builder
                .entries
                .iter()
                .filter_map(|(pattern, candidates)| {
                    catch_all_base(pattern).map(|base| (base, candidates.clone()))
                })
                .collect();
            let mut alias_owner = AHashMap::new();
            for (base, candidates) in aliases {
                let slot = builder.entry(base);
                if slot.is_empty() {
                    alias_owner.insert(base, candidates.first().copied());
                }
                for candidate in candidates {
                    if !slot.contains(&candidate) {
                        slot.push(candidate);
                    }
                }
            }

            let mut router = matchit::Router::new();
            for (pattern, candidates) in &builder.entries {
                let Some(&first) = candidates.first() else {
                    continue;
                };
                match router.insert(*pattern, slots.len()) {
                    Ok(()) => slots.push(Slot {
                        allow: render_allow(&routes, candidates).into_boxed_str(),
                        candidates: candidates.clone().into_boxed_slice(),
                    }),
                    Err(matchit::InsertError::Conflict { with }) => {
                        let (blamed, shown) = match alias_owner.get(pattern) {
                            Some(Some(owner)) => (*owner, routes[*owner].path.as_str()),
                            _ => (first, *pattern),
                        };
                        let other = builder
                            .by_pattern
                            .get(with.as_str())
                            .and_then(|&i| builder.entries[i].1.first().copied());
                        match other {
                            // Blame the later route in the file, naming the earlier one.
                            Some(other) => {
                                let (later, earlier) = if other > blamed {
                                    (other, blamed)
                                } else {
                                    (blamed, other)
                                };
                                let (later_path, earlier_path) = if later == blamed {
                                    (shown, with.as_str())
                                } else {
                                    (with.as_str(), shown)
                                };
                                errors.push(
                                    later,
                                    format!(
                                        "path \"{later_path}\" conflicts with {} \
                                         (path \"{earlier_path}\"): the router cannot tell them \
                                         apart (rename the parameter or merge the routes)",
                                        describe(&routes, earlier)
                                    ),
                                );
                            }
                            None => errors.push(
                                blamed,
                                format!(
                                    "path \"{shown}\" conflicts with path \"{with}\": the router \
                                     cannot tell them apart"
                                ),
                            ),
                        }
                    }
                    Err(err) => {
                        errors.push(first, format!("invalid path pattern \"{pattern}\": {err}"))
                    }
                }
            }
            routers.push(router);

            match scope {
                Some(HostKey::Exact(host)) => {
                    exact.insert(host.as_bytes().into(), router_index);
                }
                Some(HostKey::Wildcard(suffix)) => {
                    wildcard.insert(suffix.as_bytes().into(), router_index);
                }
                None => {}
            }
        }

        if !errors.list.is_empty() {
            errors.list.sort_by_key(|error| error.route);
            return Err(errors.list);
        }
        Ok(RouteTable {
            routes,
            slots,
            routers,
            exact,
            wildcard,
            hosts: normalized,
        })
    }

    /// The routes in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The host patterns of route `index` (empty: any host).
    pub fn hosts(&self, index: usize) -> &[String] {
        self.hosts.get(index).map(Vec::as_slice).unwrap_or_default()
    }

    /// The position of `route` (one of [`Self::routes`]) in the table.
    pub fn index_of(&self, route: &Route) -> usize {
        // Address arithmetic only, no dereference: `route` came from `self.routes`.
        (route as *const Route as usize - self.routes.as_ptr() as usize)
            / std::mem::size_of::<Route>().max(1)
    }

    /// Finds the route for a request. `host` is the raw Host header value (port allowed),
    /// `path` the request path without the query string.
    pub fn lookup(&self, host: Option<&[u8]>, method: &[u8], path: &str) -> RouteMatch<'_> {
        let Some(slot) = self.slot(host, path) else {
            return RouteMatch::NotFound;
        };
        let candidates = slot.candidates.iter().filter_map(|&i| self.routes.get(i));
        for route in candidates.clone() {
            if route.methods.is_empty() || route.methods.iter().any(|m| m.as_bytes() == method) {
                return RouteMatch::Found(route);
            }
        }
        // RFC 9110 §9.3.2: HEAD is GET without the body, so a GET route serves it.
        if method == b"HEAD" {
            if let Some(route) = candidates
                .clone()
                .find(|r| r.methods.iter().any(|m| m == "GET"))
            {
                return RouteMatch::Found(route);
            }
        }
        RouteMatch::MethodNotAllowed { allow: &slot.allow }
    }

    /// The route with `cors` a CORS preflight for `method` (its
    /// Access-Control-Request-Method) at `host` and `path` is about: the route that would
    /// serve that method, or when none at this path accepts it, the first candidate there
    /// with `cors`, whose policy then refuses the method. `None` when the route that would
    /// serve the method has no `cors`, or nothing matches: the OPTIONS is then routed as
    /// any request.
    pub fn lookup_preflight(
        &self,
        host: Option<&[u8]>,
        method: &[u8],
        path: &str,
    ) -> Option<&Route> {
        match self.lookup(host, method, path) {
            RouteMatch::Found(route) => route.cors.is_some().then_some(route),
            RouteMatch::NotFound => None,
            RouteMatch::MethodNotAllowed { .. } => self
                .slot(host, path)?
                .candidates
                .iter()
                .filter_map(|&i| self.routes.get(i))
                .find(|route| route.cors.is_some()),
        }
    }

    /// The candidates registered under the pattern `path` matches in `host`'s router.
    fn slot(&self, host: Option<&[u8]>, path: &str) -> Option<&Slot> {
        let router = self.routers.get(self.select_router(host))?;
        let matched = router.at(path).ok()?;
        self.slots.get(*matched.value)
    }

    /// Index of the router serving `host`; 0 (default) when nothing more specific applies.
    fn select_router(&self, host: Option<&[u8]>) -> usize {
        if self.exact.is_empty() && self.wildcard.is_empty() {
            return 0;
        }
        let mut buffer = [0u8; MAX_HOST_BYTES];
        let Some(name) = host.and_then(|host| host_name(host, &mut buffer)) else {
            return 0;
        };
        if let Some(&index) = self.exact.get(name) {
            return index;
        }
        // The leftmost dot gives the longest suffix, so the first hit is the most specific.
        for (position, _) in name.iter().enumerate().filter(|&(_, &b)| b == b'.') {
            if position == 0 {
                continue;
            }
            if let Some(&index) = self.wildcard.get(&name[position..]) {
                return index;
            }
        }
        0
    }
}

/// True when route `index` listed no hosts. A route whose hosts were all invalid is *not* an
/// any-host route (the build fails anyway, and this keeps its errors to the host itself).
fn lists_no_hosts(hosts: &[Vec<String>], index: usize) -> bool {
    hosts.get(index).is_none_or(Vec::is_empty)
}

fn method_list(methods: &[String]) -> String {
    if methods.is_empty() {
        "any method".to_owned()
    } else {
        format!("methods [{}]", methods.join(", "))
    }
}

/// The `Allow` value for a slot: the union of its methods, `HEAD` added when `GET` is there,
/// sorted. Empty when some candidate accepts any method (no 405 can happen there).
fn render_allow(routes: &[Route], candidates: &[usize]) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for route in candidates.iter().filter_map(|&i| routes.get(i)) {
        if route.methods.is_empty() {
            return String::new();
        }
        methods.extend(route.methods.iter().map(String::as_str));
    }
    if methods.contains(&"GET") {
        methods.push("HEAD");
    }
    methods.sort_unstable();
    methods.dedup();
    methods.join(", ")
}

/// Lower-cases the host part of a Host header value into `buffer`, dropping the port and one
/// trailing dot. `None` when empty, malformed or too long (the caller uses the default router).
fn host_name<'b>(value: &[u8], buffer: &'b mut [u8; MAX_HOST_BYTES]) -> Option<&'b [u8]> {
    let name = if value.first() == Some(&b'[') {
        // IPv6 literal: the port, if any, follows the closing bracket.
        let end = value.iter().position(|&b| b == b']')?;
        &value[..=end]
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => &value[..colon],
            None => value,
        }
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_BYTES {
        return None;
    }
    let out = &mut buffer[..name.len()];
    for (dst, src) in out.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    Some(out)
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "routes[{}]: {}", self.route, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Action, MockResponse};
    use bytes::Bytes;

    /// (name, path, methods, hosts)
    type Spec<'a> = (&'a str, &'a str, &'a [&'a str], &'a [&'a str]);
    /// Routes in, expected (route index, message fragment) errors out.
    type ConflictCase<'a> = (&'a [Spec<'a>], &'a [(usize, &'a str)]);

    fn build(specs: &[Spec<'_>]) -> Result<RouteTable, Vec<RouteError>> {
        let mut routes = Vec::new();
        let mut hosts = Vec::new();
        for (name, path, methods, route_hosts) in specs {
            routes.push(Route {
                name: (*name).to_owned(),
                path: (*path).to_owned(),
                methods: methods.iter().map(|m| (*m).to_owned()).collect(),
                rate_limits: Vec::new(),
                auth: None,
                access: None,
                cors: None,
                requires_client_cert: false,
                https_redirect: None,
                cache: None,
                transform: None,
                params: Default::default(),
                filters: Vec::new(),
                action: Action::Mock(MockResponse {
                    status: 200,
                    head: Bytes::new(),
                    body: Bytes::new(),
                }),
            });
            hosts.push(route_hosts.iter().map(|h| (*h).to_owned()).collect());
        }
        RouteTable::build(routes, hosts)
    }

    /// Renders a lookup as the route name, `405 <allow>` or `404`.
    fn outcome(table: &RouteTable, host: Option<&str>, method: &str, path: &str) -> String {
        match table.lookup(host.map(str::as_bytes), method.as_bytes(), path) {
            RouteMatch::Found(route) => route.name.clone(),
            RouteMatch::MethodNotAllowed { allow } => format!("405 {allow}"),
            RouteMatch::NotFound => "404".to_owned(),
        }
    }

    fn check(table: &RouteTable, cases: &[(Option<&str>, &str, &str, &str)]) {
        for (host, method, path, want) in cases {
            assert_eq!(
                outcome(table, *host, method, path),
                *want,
                "host {host:?} {method} {path}"
            );
        }
    }

    #[test]
    fn hosts_wildcards_and_default() {
        let table = build(&[
            ("api-root", "/", &[], &["api.example.com"]),
            ("wild-root", "/", &[], &["*.example.com"]),
            ("deep-wild", "/deep", &[], &["*.b.example.com"]),
            ("wild-only", "/w", &[], &["*.example.com"]),
            ("ipv6", "/", &[], &["[::1]"]),
            ("any-root", "/", &[], &[]),
            ("any-other", "/other", &[], &[]),
        ])
        .unwrap();
        check(
            &table,
            &[
                (Some("api.example.com"), "GET", "/", "api-root"),
                (Some("API.Example.COM:8080"), "GET", "/", "api-root"),
                (Some("api.example.com."), "GET", "/", "api-root"),
                // Any-host routes still apply under a specific host.
                (Some("api.example.com"), "GET", "/other", "any-other"),
                // Covering wildcards apply under an exact host.
                (Some("api.example.com"), "GET", "/w", "wild-only"),
                (Some("x.example.com"), "GET", "/", "wild-root"),
                (Some("a.b.example.com"), "GET", "/", "wild-root"),
                (Some("a.b.example.com"), "GET", "/deep", "deep-wild"),
                (Some("a.b.example.com:443"), "GET", "/w", "wild-only"),
                (Some("x.example.com"), "GET", "/deep", "404"),
                // A wildcard never matches its own apex.
                (Some("example.com"), "GET", "/", "any-root"),
                (Some("example.com"), "GET", "/w", "404"),
                (Some("b.example.com"), "GET", "/deep", "404"),
                (Some("other.org"), "GET", "/", "any-root"),
                (None, "GET", "/", "any-root"),
                (Some(""), "GET", "/", "any-root"),
                (Some("[::1]:8080"), "GET", "/", "ipv6"),
                (Some("[::1]"), "GET", "/", "ipv6"),
                (Some("[::1"), "GET", "/", "any-root"),
            ],
        );
        let long = "a".repeat(300);
        assert_eq!(outcome(&table, Some(&long), "GET", "/"), "any-root");
    }

    /// Each router takes only its own tiers' routes (gathered per host key in one pass):
    /// the host's own, then covering wildcards, then any-host ones, whatever the file order.
    #[test]
    fn tiers_per_host_keep_their_precedence() {
        let table = build(&[
            ("any-x", "/x", &[], &[]),
            ("a-x", "/x", &[], &["a.com"]),
            ("wild-x", "/x", &[], &["*.a.com"]),
            ("b-x", "/x", &["GET"], &["b.com", "B.com."]),
            ("sub-x", "/x", &[], &["s.a.com"]),
            ("b-y", "/y/{id}", &[], &["b.com"]),
            ("any-rest", "/{*rest}", &[], &[]),
            ("ab-rest", "/r/{*rest}", &[], &["a.com", "b.com"]),
        ])
        .unwrap();
        check(
            &table,
            &[
                (Some("a.com"), "GET", "/x", "a-x"),
                (Some("s.a.com"), "GET", "/x", "sub-x"),
                (Some("t.a.com"), "GET", "/x", "wild-x"),
                (Some("b.com"), "GET", "/x", "b-x"),
                (Some("b.com"), "POST", "/x", "any-x"),
                (Some("c.com"), "GET", "/x", "any-x"),
                (Some("b.com"), "GET", "/y/1", "b-y"),
                (Some("b.com"), "GET", "/r/1/2", "ab-rest"),
                (Some("a.com"), "GET", "/r/1", "ab-rest"),
                (Some("a.com"), "GET", "/r/", "ab-rest"),
                (Some("a.com"), "GET", "/y/1", "any-rest"),
                (Some("c.com"), "GET", "/r/1", "any-rest"),
                (Some("s.a.com"), "GET", "/z", "any-rest"),
            ],
        );
    }

    #[test]
    fn methods_and_allow() {
        let table = build(&[
            ("get", "/users", &["GET"], &[]),
            ("post", "/users", &["POST"], &[]),
            ("head", "/h", &["HEAD"], &[]),
            ("del", "/only-delete", &["DELETE"], &[]),
            ("any", "/any", &[], &[]),
            ("host-get", "/users", &["GET"], &["api.example.com"]),
        ])
        .unwrap();
        check(
            &table,
            &[
                (None, "GET", "/users", "get"),
                (None, "HEAD", "/users", "get"),
                (None, "POST", "/users", "post"),
                (None, "PUT", "/users", "405 GET, HEAD, POST"),
                (None, "HEAD", "/h", "head"),
                (None, "GET", "/h", "405 HEAD"),
                (None, "HEAD", "/only-delete", "405 DELETE"),
                (None, "BREW", "/any", "any"),
                (Some("api.example.com"), "GET", "/users", "host-get"),
                (Some("api.example.com"), "POST", "/users", "post"),
                (
                    Some("api.example.com"),
                    "PUT",
                    "/users",
                    "405 GET, HEAD, POST",
                ),
                (None, "get", "/users", "405 GET, HEAD, POST"),
            ],
        );
    }

    #[test]
    fn prefix_edge_cases() {
        let table = build(&[
            ("api", "/api/{*rest}", &[], &[]),
            ("v2-exact", "/v2/", &["GET"], &[]),
            ("v2", "/v2/{*rest}", &[], &[]),
            ("bare", "/bare", &[], &[]),
            ("bare-all", "/bare/{*rest}", &[], &[]),
            ("user", "/u/{id}", &[], &[]),
        ])
        .unwrap();
        check(
            &table,
            &[
                (None, "GET", "/api", "404"),
                (None, "GET", "/api/", "api"),
                (None, "GET", "/api/x", "api"),
                (None, "GET", "/api/x/y", "api"),
                (None, "GET", "/v2/", "v2-exact"),
                (None, "POST", "/v2/", "v2"),
                (None, "GET", "/v2/a", "v2"),
                (None, "GET", "/bare", "bare"),
                (None, "GET", "/bare/", "bare-all"),
                (None, "GET", "/u/1", "user"),
                (None, "GET", "/u/", "404"),
                (None, "GET", "/u", "404"),
                (None, "GET", "/nothing", "404"),
            ],
        );
        let root = build(&[("all", "/{*path}", &[], &[])]).unwrap();
        check(
            &root,
            &[(None, "GET", "/", "all"), (None, "GET", "/a/b", "all")],
        );
    }

    #[test]
    fn conflicts() {
        let cases: &[ConflictCase<'_>] = &[
            (
                &[
                    ("a", "/x", &["GET"], &[]),
                    ("b", "/x", &["GET", "POST"], &[]),
                ],
                &[(1, "conflicts with route \"a\" (routes[0])")],
            ),
            (
                &[("a", "/x", &[], &[]), ("b", "/x", &["POST"], &[])],
                &[(1, "overlapping methods")],
            ),
            (
                &[
                    ("a", "/x", &[], &["a.com"]),
                    ("b", "/x", &[], &["b.com", "a.com"]),
                ],
                &[(1, "conflicts with route \"a\"")],
            ),
            (
                &[("a", "/u/{id}", &[], &[]), ("b", "/u/{name}", &[], &[])],
                &[(
                    1,
                    "conflicts with route \"a\" (routes[0]) (path \"/u/{id}\")",
                )],
            ),
            (&[("a", "/u/{id", &[], &[])], &[(0, "invalid path pattern")]),
            (
                &[("a", "/u/{*x}/y", &[], &[])],
                &[(0, "invalid path pattern")],
            ),
            (&[("a", "users", &[], &[])], &[(0, "must start with '/'")]),
            (
                &[("a", "/", &[], &["a.com:80"])],
                &[(0, "must not include a port")],
            ),
            (&[("a", "/", &[], &["*"])], &[(0, "empty host name")]),
            (
                &[("a", "/", &[], &["a.*.com"])],
                &[(0, "`*` is only allowed")],
            ),
            (
                &[("a", "/", &[], &["*.[::1]"])],
                &[(0, "wildcard cannot apply")],
            ),
            (
                &[
                    ("a", "/x", &[], &[]),
                    ("b", "/x", &[], &[]),
                    ("c", "/y/{a}", &[], &[]),
                    ("d", "/y/{b}", &[], &["h.com"]),
                ],
                &[(1, "route \"a\""), (3, "route \"c\"")],
            ),
        ];
        for (specs, want) in cases {
            let errors = build(specs).expect_err(&format!("{specs:?}"));
            assert_eq!(errors.len(), want.len(), "{specs:?}: {errors:?}");
            for (error, (route, fragment)) in errors.iter().zip(want.iter()) {
                assert_eq!(error.route, *route, "{errors:?}");
                assert!(error.message.contains(fragment), "{fragment}: {errors:?}");
            }
        }
        // Not conflicts: disjoint methods, different tiers, different host scopes.
        let fine: &[&[Spec<'_>]] = &[
            &[("a", "/x", &["GET"], &[]), ("b", "/x", &["POST"], &[])],
            &[("a", "/x", &[], &["a.com"]), ("b", "/x", &[], &[])],
            &[("a", "/x", &[], &["a.com"]), ("b", "/x", &[], &["*.a.com"])],
            &[("a", "/x", &[], &["a.com"]), ("b", "/x", &[], &["b.com"])],
            &[("a", "/api/", &[], &[]), ("b", "/api/{*rest}", &[], &[])],
        ];
        for specs in fine {
            assert!(build(specs).is_ok(), "{specs:?}");
        }
    }

    #[test]
    fn host_patterns() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("API.Example.com", Ok("api.example.com")),
            ("example.com.", Ok("example.com")),
            ("*.Example.com", Ok("*.example.com")),
            ("10.0.0.1", Ok("10.0.0.1")),
            ("[::1]", Ok("[::1]")),
            ("[::g]", Err("invalid IPv6")),
            ("", Err("empty host")),
            ("a..b", Err("empty label")),
            ("a b", Err("invalid character")),
            ("[::1]:80", Err("IPv6 literal")),
        ];
        for (input, want) in cases {
            match (normalize_host_pattern(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want),
                (Err(got), Err(want)) => assert!(got.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}

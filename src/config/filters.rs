//! The filters a route can have: the one list of the request-path capabilities.
//!
//! A route's `Vec<Filter>` is compiled here at config load, in the order the filters apply;
//! what each filter does at each hook (request, upstream request, response, body chunk,
//! log) is `proxy::pipeline`. Adding a capability to the request path means a variant here,
//! its line in [`compile`], and its arms in the hooks.

use super::Route;

/// One step of a route's pipeline. Its settings are the route's field of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// The route's `https_redirect`: a plaintext request is answered with a redirect to
    /// HTTPS.
    HttpsRedirect,
    /// The route's `client_cert = "required"`: a request without a verified client
    /// certificate is answered 403.
    ClientCert,
    /// The route's `access` list: a client it refuses is answered 403.
    RouteAccess,
    /// The route's `cors`: a preflight is answered here; every other answer gets the
    /// `Access-Control-*` lines for its origin.
    Cors,
    /// The route's `auth`: who the request is, or 401 (403, 503); upstream, the credential
    /// gives way to the consumer and mapped claims.
    Auth,
    /// The route's `rate_limits`: 429 (or 503) past a limit; every answer describes the
    /// answering limit.
    RateLimit,
    /// The route's `transform`: the upstream's copy of the request and the answer's head
    /// are changed as it says.
    Transform,
    /// The route's `cache`: a usable stored answer is sent from the store; otherwise the
    /// request goes upstream (conditionally when revalidating) and its answer is stored.
    Cache,
}

/// The filters of `route`, in the order they apply: the HTTPS redirect first (a plaintext
/// request learns nothing of the route but where to go), then the client certificate and
/// the access list (a refused client learns nothing more, not even CORS), then CORS (a browser sends no credentials
/// on a preflight, and a page can only read a 401 or 429 that carries CORS headers), then
/// authentication, then rate limits (consumer limits count by the authenticated consumer),
/// then the cache (a stored answer is served only to requests every guard let through, and
/// a hit counts against the limits like any request). The transform comes before the
/// cache, so that a stored answer gets the transform's response edits too, and a
/// revalidation goes upstream transformed.
pub fn compile(route: &Route) -> Vec<Filter> {
    let mut filters = Vec::new();
    if route.https_redirect.is_some() {
        filters.push(Filter::HttpsRedirect);
    }
    if route.requires_client_cert {
        filters.push(Filter::ClientCert);
    }
    if route.access.is_some() {
        filters.push(Filter::RouteAccess);
    }
    if route.cors.is_some() {
        filters.push(Filter::Cors);
    }
    if route.auth.is_some() {
        filters.push(Filter::Auth);
    }
    if !route.rate_limits.is_empty() {
        filters.push(Filter::RateLimit);
    }
    if route.transform.is_some() {
        filters.push(Filter::Transform);
    }
    if route.cache.is_some() {
        filters.push(Filter::Cache);
    }
    filters
}

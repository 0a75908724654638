//! STUB (replaced by the policy branch).
#![allow(unused)]
use crate::http1::HeaderSpan;
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CacheControl {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub immutable: bool,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    pub min_fresh: Option<u64>,
    pub max_stale: Option<Option<u64>>,
    pub only_if_cached: bool,
    pub conflicting: bool,
}
pub fn cache_control(raw: &[u8], headers: &[HeaderSpan]) -> CacheControl {
    todo!()
}
pub fn request_cache_control(raw: &[u8], headers: &[HeaderSpan]) -> CacheControl {
    todo!()
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    VaryStar,
    NoFreshness,
    SetCookie,
    Partial,
}
impl NotStorable {
    pub fn as_str(self) -> &'static str {
        todo!()
    }
}
pub struct StoreRules {
    pub store_set_cookie: bool,
}
pub fn storable(
    request: (&[u8], &[HeaderSpan]),
    status: u16,
    response: (&[u8], &[HeaderSpan]),
    rules: &StoreRules,
) -> Result<(), NotStorable> {
    todo!()
}
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    pub lifetime: u64,
    pub initial_age: u64,
    pub response_time: u64,
    pub no_cache: bool,
    pub must_revalidate: bool,
    pub stale_while_revalidate: u64,
    pub stale_if_error: u64,
}
pub fn freshness(
    response: (&[u8], &[HeaderSpan]),
    status: u16,
    request_time: u64,
    response_time: u64,
    heuristic_max: u64,
) -> Freshness {
    todo!()
}
impl Freshness {
    pub fn age(&self, now: u64) -> u64 {
        todo!()
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    Fresh,
    StaleWhileRevalidate,
    Revalidate,
}
pub fn usable(
    stored: &Freshness,
    request: &CacheControl,
    honour_request: bool,
    now: u64,
) -> Usable {
    todo!()
}
pub fn usable_on_error(
    stored: &Freshness,
    request: &CacheControl,
    honour_request: bool,
    now: u64,
) -> bool {
    todo!()
}
pub fn not_modified(request: (&[u8], &[HeaderSpan]), stored: (&[u8], &[HeaderSpan])) -> bool {
    todo!()
}
pub fn validators(stored: (&[u8], &[HeaderSpan])) -> Vec<u8> {
    todo!()
}
pub fn validates(stored: (&[u8], &[HeaderSpan]), not_modified: (&[u8], &[HeaderSpan])) -> bool {
    todo!()
}
pub fn merge_not_modified(
    stored: (&[u8], &[HeaderSpan]),
    status: u16,
    reason: &[u8],
    update: (&[u8], &[HeaderSpan]),
) -> Vec<u8> {
    todo!()
}
pub fn vary_names(raw: &[u8], headers: &[HeaderSpan]) -> Result<Vec<Box<str>>, ()> {
    todo!()
}
pub fn vary_key(request: (&[u8], &[HeaderSpan]), names: &[Box<str>]) -> String {
    todo!()
}
pub fn byte_range(request: (&[u8], &[HeaderSpan]), len: u64) -> Option<Result<(u64, u64), ()>> {
    todo!()
}
pub fn if_range_matches(request: (&[u8], &[HeaderSpan]), stored: (&[u8], &[HeaderSpan])) -> bool {
    todo!()
}
pub fn tags(raw: &[u8], headers: &[HeaderSpan]) -> Vec<Box<str>> {
    todo!()
}
pub fn invalidates(method_is_safe: bool, status: u16) -> bool {
    todo!()
}
pub fn invalidated_locations(response: (&[u8], &[HeaderSpan]), host: &[u8]) -> Vec<Vec<u8>> {
    todo!()
}
pub fn parse_http_date(value: &[u8]) -> Option<u64> {
    todo!()
}
pub fn format_http_date(secs: u64, out: &mut Vec<u8>) {
    todo!()
}

//! The rules of a shared cache (RFC 9111, with RFC 5861's stale extensions and RFC 9110's
//! conditional and range requests) as pure functions over a head's fields: what may be
//! stored, for how long, how old a stored answer is, whether it may answer a request now,
//! how a 304 updates it, how `Vary` and `Range` apply.
//!
//! A head is given as its bytes and its parsed fields; several lines of one field form one
//! comma list. Times are Unix seconds passed in by the caller: nothing here reads a clock,
//! so every rule is tested with the time it needs.
//!
//! Where the RFC leaves room, the safe reading is taken: a qualified `no-cache="field"`
//! revalidates every time, a qualified `private="field"` is not stored, a malformed
//! `max-age`/`s-maxage` makes the answer stale, and a repeated directive keeps its first
//! value (§4.2.1 allows the first occurrence or staleness).

use crate::http1::headers::{is_hop_by_hop, is_nominated, list_tokens, trim_ows};
use bytes::{Bytes, BytesMut};

use crate::http1::encode::write_status_line;
use crate::http1::HeaderSpan;

/// A head's bytes and its parsed fields.
pub type Fields<'a> = (&'a [u8], &'a [HeaderSpan]);

/// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// Every value of `name`'s field lines, in order.
fn values<'a>(fields: Fields<'a>, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let (raw, headers) = fields;
    headers
        .iter()
        .filter(move |h| h.name(raw).eq_ignore_ascii_case(name))
        .map(move |h| h.value(raw))
}

/// The first value of `name`'s field lines.
pub fn first<'a>(fields: Fields<'a>, name: &'a [u8]) -> Option<&'a [u8]> {
    values(fields, name).next()
}

fn has(fields: Fields<'_>, name: &[u8]) -> bool {
    let (raw, headers) = fields;
    headers
        .iter()
        .any(|h| h.name(raw).eq_ignore_ascii_case(name))
}

/// Cache-Control directives (RFC 9111 §5.2), from all of a message's Cache-Control lines.
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
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// Request directives.
    pub min_fresh: Option<u64>,
    /// `max-stale` alone (`Some(None)`: any staleness) or with a limit.
    pub max_stale: Option<Option<u64>>,
    pub only_if_cached: bool,
    /// A freshness directive had a malformed value: the answer is treated as stale.
    pub malformed: bool,
}

/// The directives of a message's Cache-Control lines.
pub fn cache_control(fields: Fields<'_>) -> CacheControl {
    let mut cc = CacheControl::default();
    for value in values(fields, b"cache-control") {
        for (name, arg) in directives(value) {
            apply(&mut cc, &name, arg);
        }
    }
    cc
}

/// A request's directives; `Pragma: no-cache` means `no-cache` when the request has no
/// Cache-Control (RFC 9111 §5.4).
pub fn request_cache_control(fields: Fields<'_>) -> CacheControl {
    let mut cc = cache_control(fields);
    if !has(fields, b"cache-control")
        && values(fields, b"pragma")
            .flat_map(list_tokens)
            .any(|t| t.eq_ignore_ascii_case(b"no-cache"))
    {
        cc.no_cache = true;
    }
    cc
}

fn apply(cc: &mut CacheControl, name: &str, arg: Option<Vec<u8>>) {
    // The first occurrence counts. A malformed freshness value makes the answer stale;
    // another malformed value is ignored.
    let seconds = |cc: &mut CacheControl,
                   freshness: bool,
                   slot: fn(&mut CacheControl) -> &mut Option<u64>| {
        if slot(cc).is_some() {
            return;
        }
        match arg.as_deref().and_then(delta_seconds) {
            Some(n) => *slot(cc) = Some(n),
            None => cc.malformed |= freshness,
        }
    };
    match name {
        "max-age" => seconds(cc, true, |cc| &mut cc.max_age),
        "s-maxage" => seconds(cc, true, |cc| &mut cc.s_maxage),
        "min-fresh" => seconds(cc, false, |cc| &mut cc.min_fresh),
        "stale-while-revalidate" => seconds(cc, false, |cc| &mut cc.stale_while_revalidate),
        "stale-if-error" => seconds(cc, false, |cc| &mut cc.stale_if_error),
        "max-stale" if cc.max_stale.is_none() => match arg.as_deref() {
            None => cc.max_stale = Some(None),
            Some(arg) => cc.max_stale = delta_seconds(arg).map(Some),
        },
        "no-store" => cc.no_store = true,
        "no-cache" => cc.no_cache = true,
        "private" => cc.private = true,
        "public" => cc.public = true,
        "must-revalidate" => cc.must_revalidate = true,
        "proxy-revalidate" => cc.proxy_revalidate = true,
        "only-if-cached" => cc.only_if_cached = true,
        _ => {}
    }
}

/// The directives this cache follows for a response: a valid `CDN-Cache-Control` (RFC 9213,
/// the field targeted at CDNs and gateway caches) in place of `Cache-Control` and
/// `Expires`, else `Cache-Control`. The flag says whether the targeted field was used.
fn response_cache_control(response: Fields<'_>) -> (CacheControl, bool) {
    match targeted_cache_control(response) {
        Some(cc) => (cc, true),
        None => (cache_control(response), false),
    }
}

/// `CDN-Cache-Control` when present and a valid Structured Fields Dictionary (RFC 8941:
/// lower-case keys, integer or token values, no strings for the directives here); an
/// invalid one is ignored as a whole (RFC 9213 §2.1).
fn targeted_cache_control(response: Fields<'_>) -> Option<CacheControl> {
    let mut cc = CacheControl::default();
    let mut any = false;
    for value in values(response, b"cdn-cache-control") {
        any = true;
        if value.contains(&b'"') {
            return None;
        }
        for member in value.split(|&b| b == b',') {
            let member = trim_ows(member);
            let (key, arg) = match member.iter().position(|&b| b == b'=') {
                Some(eq) => (&member[..eq], Some(member[eq + 1..].to_vec())),
                None => (member, None),
            };
            let key_ok = key
                .first()
                .is_some_and(|b| b.is_ascii_lowercase() || *b == b'*')
                && key
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(b));
            if !key_ok
                || arg
                    .as_deref()
                    .is_some_and(|a| a.is_empty() || a.contains(&b' '))
            {
                return None;
            }
            apply(&mut cc, &String::from_utf8_lossy(key), arg);
        }
    }
    (any && !cc.malformed).then_some(cc)
}

/// `1*DIGIT`, capped at 2^31 (§1.2.2); anything else is malformed.
fn delta_seconds(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &d in value {
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
    }
    Some(n.min(DELTA_SECONDS_MAX))
}

/// The directives of one Cache-Control value: lower-case names, arguments unquoted.
/// Commas inside a quoted argument (`no-cache="a, b"`) do not split.
fn directives(value: &[u8]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let name_end = rest
            .iter()
            .position(|&b| b == b',' || b == b'=')
            .unwrap_or(rest.len());
        let name = String::from_utf8_lossy(trim_ows(&rest[..name_end])).to_ascii_lowercase();
        rest = &rest[name_end..];
        let mut arg = None;
        if let [b'=', after @ ..] = rest {
            let after = trim_ows(after);
            if let [b'"', quoted @ ..] = after {
                let mut text = Vec::new();
                let mut i = 0;
                while i < quoted.len() && quoted[i] != b'"' {
                    if quoted[i] == b'\\' && i + 1 < quoted.len() {
                        i += 1;
                    }
                    text.push(quoted[i]);
                    i += 1;
                }
                arg = Some(text);
                rest = quoted.get(i + 1..).unwrap_or_default();
            } else {
                let end = after.iter().position(|&b| b == b',').unwrap_or(after.len());
                arg = Some(trim_ows(&after[..end]).to_vec());
                rest = &after[end..];
            }
        }
        // Skip to the next directive.
        let next = rest
            .iter()
            .position(|&b| b == b',')
            .map_or(rest.len(), |i| i + 1);
        rest = &rest[next..];
        if !name.is_empty() {
            out.push((name, arg));
        }
    }
    out
}

/// Why a response is not stored (`Cache-Status: ...; detail=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    Status,
    Partial,
    NoStore,
    Private,
    Authorization,
    VaryStar,
    SetCookie,
    NoFreshness,
}

impl NotStorable {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStorable::Status => "status",
            NotStorable::Partial => "partial",
            NotStorable::NoStore => "no-store",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::VaryStar => "vary",
            NotStorable::SetCookie => "set-cookie",
            NotStorable::NoFreshness => "no-freshness",
        }
    }
}

/// What a route allows beyond the RFC's defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreRules {
    /// Store answers that set a cookie (off by default: a cookie is usually someone's).
    pub store_set_cookie: bool,
}

/// RFC 9110 §15.1: statuses whose answers may be stored with heuristic freshness.
fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// RFC 9111 §3 (and §3.5 for Authorization): may a shared cache store this answer to a GET?
pub fn storable(
    request: Fields<'_>,
    status: u16,
    response: Fields<'_>,
    rules: &StoreRules,
) -> Result<(), NotStorable> {
    if status == 206 {
        return Err(NotStorable::Partial);
    }
    if status < 200 || status == 304 || status > 599 {
        return Err(NotStorable::Status);
    }
    let (cc, targeted) = response_cache_control(response);
    if cc.no_store || cache_control(request).no_store {
        return Err(NotStorable::NoStore);
    }
    if cc.private {
        return Err(NotStorable::Private);
    }
    if has(request, b"authorization") && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NotStorable::Authorization);
    }
    if vary_names(response).is_none() {
        return Err(NotStorable::VaryStar);
    }
    if has(response, b"set-cookie") && !rules.store_set_cookie {
        return Err(NotStorable::SetCookie);
    }
    let expires = !targeted && has(response, b"expires");
    let explicit = cc.max_age.is_some() || cc.s_maxage.is_some() || expires;
    if !(explicit || cc.public || heuristically_cacheable(status)) {
        return Err(NotStorable::NoFreshness);
    }
    Ok(())
}

/// Freshness facts computed once when a response is stored (RFC 9111 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// §4.2.1: s-maxage, else max-age, else Expires − Date, else heuristic; 0 when none.
    pub lifetime: u64,
    /// §4.2.3 corrected_initial_age.
    pub initial_age: u64,
    /// When the response was received.
    pub response_time: u64,
    /// `no-cache`: validated before every use.
    pub no_cache: bool,
    /// must-revalidate, proxy-revalidate or s-maxage (§4.2.4, §5.2.2.2, .8, .10): never
    /// served stale.
    pub must_revalidate: bool,
    pub stale_while_revalidate: u64,
    pub stale_if_error: u64,
}

/// The freshness of `response` (status `status`) asked for at `request_time` and received
/// at `response_time`; heuristic freshness is capped at `heuristic_max` (0: none).
pub fn freshness(
    response: Fields<'_>,
    status: u16,
    request_time: u64,
    response_time: u64,
    heuristic_max: u64,
) -> Freshness {
    let (cc, targeted) = response_cache_control(response);
    let date = first(response, b"date")
        .and_then(parse_http_date)
        .unwrap_or(response_time);
    let lifetime = if cc.malformed {
        0
    } else if let Some(n) = cc.s_maxage.or(cc.max_age) {
        n
    } else if let Some(expires) = first(response, b"expires").filter(|_| !targeted) {
        // An invalid date (`0`, garbage) means already expired (§5.3).
        parse_http_date(expires).map_or(0, |e| e.saturating_sub(date))
    } else if heuristically_cacheable(status) || cc.public {
        let modified = first(response, b"last-modified").and_then(parse_http_date);
        modified.map_or(0, |m| (date.saturating_sub(m) / 10).min(heuristic_max))
    } else {
        0
    };
    // `Age: 7200, 0` (two lines, or a list): the first value counts.
    let age_value = first(response, b"age")
        .and_then(|v| list_tokens(v).next())
        .and_then(delta_seconds)
        .unwrap_or(0);
    let apparent_age = response_time.saturating_sub(date);
    let response_delay = response_time.saturating_sub(request_time);
    Freshness {
        lifetime,
        initial_age: apparent_age.max(age_value.saturating_add(response_delay)),
        response_time,
        no_cache: cc.no_cache,
        must_revalidate: cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some(),
        stale_while_revalidate: cc.stale_while_revalidate.unwrap_or(0),
        stale_if_error: cc.stale_if_error.unwrap_or(0),
    }
}

impl Freshness {
    /// §4.2.3 current_age at `now`.
    pub fn age(&self, now: u64) -> u64 {
        self.initial_age
            .saturating_add(now.saturating_sub(self.response_time))
    }

    /// Seconds of freshness left at `now`; negative once stale (`Cache-Status`'s `ttl`).
    pub fn ttl(&self, now: u64) -> i64 {
        self.lifetime as i64 - self.age(now) as i64
    }

    /// How far past its lifetime the answer is at `now` (0 while fresh).
    fn staleness(&self, now: u64) -> u64 {
        self.age(now).saturating_sub(self.lifetime)
    }

    fn is_fresh(&self, now: u64) -> bool {
        self.age(now) < self.lifetime
    }
}

/// How a stored answer may serve a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    Fresh,
    /// Stale within `stale-while-revalidate`: serve it, revalidate in the background.
    StaleWhileRevalidate,
    /// Validate with the origin first.
    Revalidate,
}

/// RFC 9111 §4 and §4.2.4, with the request's own directives (§5.2.1) when
/// `honour_request`.
pub fn usable(
    stored: &Freshness,
    request: &CacheControl,
    honour_request: bool,
    now: u64,
) -> Usable {
    if stored.no_cache {
        return Usable::Revalidate;
    }
    let age = stored.age(now);
    if honour_request {
        let too_old = request.max_age.is_some_and(|max| max == 0 || age > max);
        let not_fresh_enough = request
            .min_fresh
            .is_some_and(|min| stored.lifetime.saturating_sub(age) < min);
        if request.no_cache || too_old || not_fresh_enough {
            return Usable::Revalidate;
        }
    }
    if stored.is_fresh(now) {
        return Usable::Fresh;
    }
    if stored.must_revalidate {
        return Usable::Revalidate;
    }
    let staleness = stored.staleness(now);
    if honour_request {
        match request.max_stale {
            Some(None) => return Usable::Fresh,
            Some(Some(limit)) if staleness <= limit => return Usable::Fresh,
            _ => {}
        }
    }
    if stored.stale_while_revalidate > 0 && staleness <= stored.stale_while_revalidate {
        Usable::StaleWhileRevalidate
    } else {
        Usable::Revalidate
    }
}

/// RFC 5861 §4: may this stored answer stand in for an error now?
pub fn usable_on_error(
    stored: &Freshness,
    request: &CacheControl,
    honour_request: bool,
    now: u64,
) -> bool {
    if stored.must_revalidate {
        return false;
    }
    let staleness = stored.staleness(now);
    let allowed = |limit: u64| limit > 0 && staleness <= limit;
    allowed(stored.stale_if_error)
        || (honour_request && request.stale_if_error.is_some_and(allowed))
}

/// The entity-tags of an `If-None-Match`-like list: (weak, opaque-tag with its quotes);
/// `None` for `*`.
fn entity_tags(value: &[u8]) -> Option<Vec<(bool, &[u8])>> {
    if trim_ows(value) == b"*" {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = trim_ows(rest);
        while let [b',', more @ ..] = rest {
            rest = trim_ows(more);
        }
        if rest.is_empty() {
            return Some(out);
        }
        let weak = rest.starts_with(b"W/");
        let tag = if weak { &rest[2..] } else { rest };
        let Some(close) = tag.iter().skip(1).position(|&b| b == b'"') else {
            return Some(out);
        };
        if tag.first() != Some(&b'"') {
            // Not an entity-tag: skip to the next comma.
            let next = rest
                .iter()
                .position(|&b| b == b',')
                .map_or(rest.len(), |i| i + 1);
            rest = &rest[next..];
            continue;
        }
        out.push((weak, &tag[..close + 2]));
        rest = &tag[close + 2..];
    }
}

/// A response's ETag as (weak, opaque-tag).
fn etag(fields: Fields<'_>) -> Option<(bool, &[u8])> {
    first(fields, b"etag")
        .and_then(entity_tags)
        .and_then(|tags| tags.into_iter().next())
}

/// RFC 9110 §13.2.2 for a GET/HEAD answered from a stored answer: `If-None-Match` (weak
/// comparison; `*` matches) decides when present, else `If-Modified-Since` against the
/// stored `Last-Modified` (or `Date`). True: answer 304.
pub fn not_modified(request: Fields<'_>, stored: Fields<'_>) -> bool {
    if has(request, b"if-none-match") {
        let stored_tag = etag(stored);
        return values(request, b"if-none-match").any(|value| match entity_tags(value) {
            None => true,
            Some(tags) => stored_tag.is_some_and(|(_, s)| tags.iter().any(|(_, t)| *t == s)),
        });
    }
    let Some(since) = first(request, b"if-modified-since").and_then(parse_http_date) else {
        return false;
    };
    let modified = first(stored, b"last-modified")
        .or_else(|| first(stored, b"date"))
        .and_then(parse_http_date);
    modified.is_some_and(|m| m <= since)
}

/// §4.3.4: does a 304 from the origin describe the stored answer? Its ETag (when it has
/// one) must match the stored one, else its Last-Modified. One without validators answers
/// the request that carried this stored answer's validators, so it selects it (§4.3.4
/// names the case where neither has validators; a 304 is never relayed to a client that
/// asked for the whole answer).
pub fn validates(stored: Fields<'_>, update: Fields<'_>) -> bool {
    if let Some((_, tag)) = etag(update) {
        return etag(stored).is_some_and(|(_, s)| s == tag);
    }
    if let Some(modified) = first(update, b"last-modified") {
        return first(stored, b"last-modified") == Some(modified);
    }
    true
}

/// §3.2 and §4.3.4: the stored head updated with a 304's fields, as a complete head
/// (`HTTP/1.1 <status> <reason>`, the fields, the blank line). Each field the 304 carries
/// replaces all stored lines of that name, except the framing and hop-by-hop fields.
pub fn merge_not_modified(
    stored: Fields<'_>,
    status: u16,
    reason: &[u8],
    update: Fields<'_>,
) -> Bytes {
    let (raw, headers) = stored;
    let (update_raw, update_headers) = update;
    let nominated: Vec<&[u8]> = values(update, b"connection").collect();
    let passes = |name: &[u8]| {
        !is_hop_by_hop(name)
            && !name.eq_ignore_ascii_case(b"proxy-authentication-info")
            && !is_nominated(name, &nominated)
    };
    let updated = |name: &[u8]| {
        passes(name)
            && update_headers
                .iter()
                .any(|h| h.name(update_raw).eq_ignore_ascii_case(name))
    };
    let mut out = BytesMut::new();
    write_status_line(&mut out, status, reason);
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for h in headers.iter().filter(|h| !updated(h.name(raw))) {
        line(h.name(raw), h.value(raw));
    }
    for h in update_headers {
        let name = h.name(update_raw);
        if passes(name) {
            line(name, h.value(update_raw));
        }
    }
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// The `Vary` field names, lower-case, sorted, deduplicated; `None` for `Vary: *`.
pub fn vary_names(fields: Fields<'_>) -> Option<Vec<Box<str>>> {
    let mut names: Vec<Box<str>> = Vec::new();
    for token in values(fields, b"vary").flat_map(list_tokens) {
        if token == b"*" {
            return None;
        }
        names.push(String::from_utf8_lossy(token).to_ascii_lowercase().into());
    }
    names.sort_unstable();
    names.dedup();
    Some(names)
}

/// The request's values for the `Vary` fields `names`, normalised so that variants do not
/// multiply: `Accept-Encoding` becomes the set of acceptable codings Strait knows
/// (gzip, br, zstd, deflate; `q=0` excluded); `Accept`, `Accept-Language` and
/// `Accept-Charset` their elements lower-cased without whitespace, sorted; other fields
/// their elements with whitespace trimmed, in order. Absent and empty are the same.
pub fn vary_key(request: Fields<'_>, names: &[Box<str>]) -> String {
    let mut key = String::new();
    for name in names {
        key.push_str(name);
        key.push(':');
        let elements = values(request, name.as_bytes()).flat_map(list_tokens);
        let mut parts: Vec<String> = match &**name {
            "accept-encoding" => elements
                .filter_map(acceptable_coding)
                .map(str::to_owned)
                .collect(),
            "accept" | "accept-language" | "accept-charset" => elements
                .map(|e| {
                    let text: String = String::from_utf8_lossy(e).split_whitespace().collect();
                    text.to_ascii_lowercase()
                })
                .collect(),
            _ => elements
                .map(|e| {
                    String::from_utf8_lossy(e)
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect(),
        };
        if matches!(
            &**name,
            "accept-encoding" | "accept" | "accept-language" | "accept-charset"
        ) {
            parts.sort_unstable();
            parts.dedup();
        }
        key.push_str(&parts.join(","));
        key.push('\n');
    }
    key
}

/// The coding of one `Accept-Encoding` element when Strait tells it apart and it is
/// acceptable (its `q` is not zero).
fn acceptable_coding(element: &[u8]) -> Option<&'static str> {
    let mut parts = element.split(|&b| b == b';');
    let coding = trim_ows(parts.next()?);
    let refused = parts.any(|p| {
        let p = trim_ows(p);
        p.len() >= 2
            && p[..2].eq_ignore_ascii_case(b"q=")
            && p[2..].iter().all(|&b| b == b'0' || b == b'.')
    });
    if refused {
        return None;
    }
    ["gzip", "br", "zstd", "deflate"]
        .into_iter()
        .find(|known| coding.eq_ignore_ascii_case(known.as_bytes()))
}

/// A single `Range: bytes=...` against a body of `len` bytes (RFC 9110 §14.2): `None`
/// serves the whole answer (no Range, another unit, several ranges, or unparseable),
/// `Some(Ok((first, last)))` the part, `Some(Err(()))` 416.
pub fn byte_range(request: Fields<'_>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let mut ranges = values(request, b"range");
    let value = trim_ows(ranges.next()?);
    if ranges.next().is_some() || value.len() < 6 || !value[..6].eq_ignore_ascii_case(b"bytes=") {
        return None;
    }
    let spec = trim_ows(&value[6..]);
    if spec.contains(&b',') {
        return None;
    }
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (start, end) = (trim_ows(&spec[..dash]), trim_ows(&spec[dash + 1..]));
    if start.is_empty() {
        let suffix = position(end)?;
        if suffix == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok((len - suffix.min(len), len - 1)));
    }
    let first = delta_seconds(start)?;
    let last = if end.is_empty() {
        u64::MAX
    } else {
        delta_seconds(end)?
    };
    if last < first {
        return None;
    }
    if first >= len {
        return Some(Err(()));
    }
    Some(Ok((first, last.min(len - 1))))
}

/// A byte position (`1*DIGIT`, not capped like delta-seconds; `None` past `u64`).
fn position(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// RFC 9110 §13.1.5: may a range apply to the stored answer? Without `If-Range`, yes; with
/// an entity-tag, only when it strongly matches the stored ETag; with a date, only when it
/// is the stored Last-Modified.
pub fn if_range_matches(request: Fields<'_>, stored: Fields<'_>) -> bool {
    let Some(value) = first(request, b"if-range") else {
        return true;
    };
    let value = trim_ows(value);
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let asked = entity_tags(value).and_then(|tags| tags.into_iter().next());
        return matches!((asked, etag(stored)), (Some((false, a)), Some((false, s))) if a == s);
    }
    let asked = parse_http_date(value);
    asked.is_some() && first(stored, b"last-modified").and_then(parse_http_date) == asked
}

/// Purge tags the origin attached: `Surrogate-Key` (space separated) and `Cache-Tag`
/// (comma separated).
pub fn tags(fields: Fields<'_>) -> Vec<Box<str>> {
    let spaced =
        values(fields, b"surrogate-key").flat_map(|v| v.split(|b| b.is_ascii_whitespace()));
    let listed = values(fields, b"cache-tag").flat_map(list_tokens);
    let mut tags: Vec<Box<str>> = spaced
        .chain(listed)
        .map(trim_ows)
        .filter(|t| !t.is_empty())
        .map(|t| String::from_utf8_lossy(t).into())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// RFC 9111 §4.4: an answer to an unsafe method with this status invalidates the URL.
pub fn invalidates(status: u16) -> bool {
    (200..400).contains(&status)
}

/// §4.4: the paths of `Location` and `Content-Location` that name the same host (relative,
/// or absolute with `host` as authority), which an unsafe method's success invalidates too.
pub fn invalidated_locations(response: Fields<'_>, host: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for value in values(response, b"location").chain(values(response, b"content-location")) {
        let value = trim_ows(value);
        let path = if value.starts_with(b"/") && !value.starts_with(b"//") {
            Some(value)
        } else {
            ["http://", "https://"].iter().find_map(|scheme| {
                let rest = value.get(scheme.len()..)?;
                if !value[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes()) {
                    return None;
                }
                let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
                rest[..slash].eq_ignore_ascii_case(host).then(|| {
                    if slash == rest.len() {
                        &b"/"[..]
                    } else {
                        &rest[slash..]
                    }
                })
            })
        };
        if let Some(path) = path {
            out.push(path.to_vec());
        }
    }
    out
}

/// An HTTP-date (RFC 9110 §5.6.7) as Unix seconds: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), or the obsolete RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`) forms, each
/// in its exact layout (names in any case): a date that is not one of them is no date.
pub fn parse_http_date(value: &[u8]) -> Option<u64> {
    let value = trim_ows(value);
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const LONG_DAYS: [&[u8]; 7] = [
        b"Monday",
        b"Tuesday",
        b"Wednesday",
        b"Thursday",
        b"Friday",
        b"Saturday",
        b"Sunday",
    ];
    let (day, month, year, time) = if value.len() == 29 && value[3] == b',' {
        // IMF-fixdate: "Www, DD Mon YYYY HH:MM:SS GMT"
        if !one_of(&DAYS, &value[..3])
            || &value[4..5] != b" "
            || value[7] != b' '
            || value[11] != b' '
            || value[16] != b' '
            || !value[25..].eq_ignore_ascii_case(b" GMT")
        {
            return None;
        }
        (
            digits(&value[5..7])?,
            &value[8..11],
            digits(&value[12..16])?,
            &value[17..25],
        )
    } else if let Some(comma) = value.iter().position(|&b| b == b',') {
        // RFC 850: "Weekday, DD-Mon-YY HH:MM:SS GMT"
        let rest = &value[comma..];
        if !one_of(&LONG_DAYS, &value[..comma])
            || rest.len() != 24
            || &rest[..2] != b", "
            || rest[4] != b'-'
            || rest[8] != b'-'
            || rest[11] != b' '
            || !rest[20..].eq_ignore_ascii_case(b" GMT")
        {
            return None;
        }
        // Two-digit years: 70..99 are the 1900s, the rest the 2000s (§5.6.7's 50-year rule,
        // read for dates near now).
        let year = digits(&rest[9..11])?;
        let year = if year >= 70 { 1900 + year } else { 2000 + year };
        (digits(&rest[2..4])?, &rest[5..8], year, &rest[12..20])
    } else if value.len() == 24 {
        // asctime: "Www Mon _D HH:MM:SS YYYY"
        if !one_of(&DAYS, &value[..3])
            || value[3] != b' '
            || value[7] != b' '
            || value[10] != b' '
            || value[19] != b' '
        {
            return None;
        }
        let day = if value[8] == b' ' {
            digits(&value[9..10])?
        } else {
            digits(&value[8..10])?
        };
        (day, &value[4..7], digits(&value[20..24])?, &value[11..19])
    } else {
        return None;
    };
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u64 + 1;
    if time[2] != b':' || time[5] != b':' {
        return None;
    }
    let (h, m, s) = (
        digits(&time[..2])?,
        digits(&time[3..5])?,
        digits(&time[6..8])?,
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&year)
        || day == 0
        || day > month_days[month as usize - 1]
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Whether `word` is one of `names`, in any case (a wrong-case date is still readable).
fn one_of(names: &[&[u8]], word: &[u8]) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(word))
}

/// Fixed-width decimal digits (all of `field`).
fn digits(field: &[u8]) -> Option<u64> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(field.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_response_head, ResponseHead};

    /// A response head with `lines` (each ending in CRLF).
    fn head(lines: &str) -> (Vec<u8>, ResponseHead) {
        let raw = format!("HTTP/1.1 200 OK\r\n{lines}\r\n").into_bytes();
        let head = parse_response_head(&raw, false).expect("a valid head");
        (raw, head)
    }

    fn with<T>(lines: &str, f: impl FnOnce(Fields<'_>) -> T) -> T {
        let (raw, head) = head(lines);
        f((&raw, &head.headers))
    }

    const DATE: &str = "date: Sat, 05 Dec 2026 12:00:00 GMT\r\n";
    const NOW: u64 = 1_796_472_000; // 2026-12-05 12:00:00 UTC

    #[test]
    fn http_dates_in_all_three_forms() {
        let cases: &[(&str, Option<u64>)] = &[
            ("Sat, 05 Dec 2026 12:00:00 GMT", Some(NOW)),
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
            ("Sun Nov  6 08:49:37 1994", Some(784_111_777)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("0", None),
            ("Sun, 06 Nov 1994 08:49:37 CET", None),
            ("Sun, 32 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Foo 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 24:49:37 GMT", None),
            ("Thu 18 Aug 2050 02:01:18 GMT", None),
            ("Thu, 18  Aug  2050 02:01:18 GMT", None),
            ("Thursday, 18-Aug-2050 02:01:18 GMT", None),
            ("Thu, 18 Aug 2050 2:01:18 GMT", None),
            ("Thu, 31 Feb 2050 02:01:18 GMT", None),
            ("Thu, 29 Feb 2024 02:01:18 GMT", Some(1_709_172_078)),
            ("THU, 18 AUG 2050 02:01:18 gmt", Some(2_544_400_878)),
            ("Sat, 05 Dec 99999999999999 12:00:00 GMT", None),
            ("Sunday, 06-Nov-94 08:49:37 GMT ", Some(784_111_777)),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_http_date(text.as_bytes()), *want, "{text}");
        }
    }

    #[test]
    fn cache_control_directives() {
        let cc = |lines: &str| with(lines, cache_control);
        let both = cc("cache-control: public, max-age=60\r\ncache-control: s-maxage=\"30\", no-cache=\"set-cookie, x\"\r\n");
        assert_eq!(
            (both.public, both.max_age, both.s_maxage, both.no_cache),
            (true, Some(60), Some(30), true)
        );
        assert!(!both.malformed);
        assert_eq!(
            cc("cache-control: max-age=10, max-age=20\r\n").max_age,
            Some(10)
        );
        assert!(cc("cache-control: max-age=abc\r\n").malformed);
        assert!(cc("cache-control: max-age=-1\r\n").malformed);
        assert!(cc("cache-control: max-age\r\n").malformed);
        assert_eq!(
            cc("cache-control: max-age=99999999999999999999\r\n").max_age,
            Some(DELTA_SECONDS_MAX)
        );
        assert_eq!(cc("cache-control: MAX-AGE=5,PRIVATE\r\n").max_age, Some(5));
        assert_eq!(cc("cache-control: max-stale\r\n").max_stale, Some(None));
        assert_eq!(
            cc("cache-control: max-stale=5\r\n").max_stale,
            Some(Some(5))
        );
        assert!(cc("cache-control: ,, ,no-store,\r\n").no_store);
        let pragma = with("pragma: no-cache\r\n", request_cache_control);
        assert!(pragma.no_cache);
        let overridden = with(
            "pragma: no-cache\r\ncache-control: max-age=5\r\n",
            request_cache_control,
        );
        assert!(!overridden.no_cache);
    }

    #[test]
    fn storability() {
        let rules = StoreRules::default();
        let check = |request: &str, status: u16, response: &str| {
            with(request, |req| {
                with(response, |resp| storable(req, status, resp, &rules))
            })
        };
        let ok = "cache-control: max-age=60\r\n";
        let cases: &[(&str, u16, &str, Result<(), NotStorable>)] = &[
            ("", 200, ok, Ok(())),
            ("", 200, "", Ok(())),
            ("", 404, "", Ok(())),
            ("", 302, "", Err(NotStorable::NoFreshness)),
            ("", 302, ok, Ok(())),
            ("", 302, "expires: 0\r\n", Ok(())),
            ("", 500, "cache-control: public\r\n", Ok(())),
            ("", 206, ok, Err(NotStorable::Partial)),
            ("", 304, ok, Err(NotStorable::Status)),
            (
                "",
                200,
                "cache-control: no-store\r\n",
                Err(NotStorable::NoStore),
            ),
            (
                "cache-control: no-store\r\n",
                200,
                ok,
                Err(NotStorable::NoStore),
            ),
            (
                "",
                200,
                "cache-control: private=\"x\", max-age=5\r\n",
                Err(NotStorable::Private),
            ),
            (
                "authorization: Basic x\r\n",
                200,
                ok,
                Err(NotStorable::Authorization),
            ),
            (
                "authorization: Basic x\r\n",
                200,
                "cache-control: s-maxage=5\r\n",
                Ok(()),
            ),
            (
                "authorization: Basic x\r\n",
                200,
                "cache-control: public\r\n",
                Ok(()),
            ),
            ("", 200, "vary: accept, *\r\n", Err(NotStorable::VaryStar)),
            ("", 200, "set-cookie: a=b\r\n", Err(NotStorable::SetCookie)),
        ];
        for (request, status, response, want) in cases {
            assert_eq!(
                check(request, *status, response),
                *want,
                "{request:?} {status} {response:?}"
            );
        }
        let cookies = StoreRules {
            store_set_cookie: true,
        };
        let stored = with("", |req| {
            with("set-cookie: a=b\r\n", |resp| {
                storable(req, 200, resp, &cookies)
            })
        });
        assert_eq!(stored, Ok(()));
    }

    #[test]
    fn lifetimes_and_ages() {
        let fresh =
            |lines: &str, status: u16| with(lines, |f| freshness(f, status, NOW - 2, NOW, 86_400));
        let cases: &[(&str, u16, u64, u64)] = &[
            // (lines, status, lifetime, initial age)
            ("cache-control: max-age=60\r\n", 200, 60, 2),
            ("cache-control: max-age=60, s-maxage=10\r\n", 200, 10, 2),
            ("cache-control: max-age=60\r\nage: 30\r\n", 200, 60, 32),
            (
                "cache-control: max-age=60\r\nage: 7200, 0\r\n",
                200,
                60,
                7202,
            ),
            (
                "cache-control: max-age=60\r\nage: 7200\r\nage: 0\r\n",
                200,
                60,
                7202,
            ),
            (
                &format!("{DATE}expires: Sat, 05 Dec 2026 12:10:00 GMT\r\n"),
                200,
                600,
                2,
            ),
            (&format!("{DATE}expires: 0\r\n"), 200, 0, 2),
            (
                &format!("{DATE}cache-control: max-age=5\r\nexpires: 0\r\n"),
                200,
                5,
                2,
            ),
            (
                &format!("{DATE}last-modified: Sat, 05 Dec 2026 02:00:00 GMT\r\n"),
                200,
                3600,
                2,
            ),
            (
                &format!("{DATE}last-modified: Sat, 05 Dec 2026 02:00:00 GMT\r\n"),
                302,
                0,
                2,
            ),
            (
                &format!("{DATE}last-modified: Thu, 01 Jan 1970 00:00:00 GMT\r\n"),
                200,
                86_400,
                2,
            ),
            ("cache-control: max-age=1x\r\n", 200, 0, 2),
            // A Date in the past: the apparent age counts.
            (
                "date: Sat, 05 Dec 2026 11:59:00 GMT\r\ncache-control: max-age=600\r\n",
                200,
                600,
                60,
            ),
        ];
        for (lines, status, lifetime, age) in cases {
            let f = fresh(lines, *status);
            assert_eq!((f.lifetime, f.initial_age), (*lifetime, *age), "{lines:?}");
        }
        let f = fresh("cache-control: max-age=60\r\n", 200);
        assert_eq!((f.age(NOW), f.age(NOW + 10), f.age(NOW - 5)), (2, 12, 2));
        let strict = fresh(
            "cache-control: s-maxage=1, stale-while-revalidate=9\r\n",
            200,
        );
        assert!(strict.must_revalidate);
        assert_eq!(strict.stale_while_revalidate, 9);
    }

    #[test]
    fn what_a_stored_answer_may_do_now() {
        let stored = |lines: &str| with(lines, |f| freshness(f, 200, NOW, NOW, 0));
        let request = |lines: &str| with(lines, request_cache_control);
        let none = CacheControl::default();
        let plain = stored("cache-control: max-age=10\r\n");
        assert_eq!(usable(&plain, &none, true, NOW + 5), Usable::Fresh);
        assert_eq!(usable(&plain, &none, true, NOW + 10), Usable::Revalidate);
        let no_cache = request("cache-control: no-cache\r\n");
        assert_eq!(usable(&plain, &no_cache, true, NOW + 5), Usable::Revalidate);
        assert_eq!(usable(&plain, &no_cache, false, NOW + 5), Usable::Fresh);
        assert_eq!(
            usable(
                &plain,
                &request("cache-control: max-age=3\r\n"),
                true,
                NOW + 5
            ),
            Usable::Revalidate
        );
        assert_eq!(
            usable(&plain, &request("cache-control: max-age=0\r\n"), true, NOW),
            Usable::Revalidate
        );
        assert_eq!(
            usable(
                &plain,
                &request("cache-control: min-fresh=8\r\n"),
                true,
                NOW + 5
            ),
            Usable::Revalidate
        );
        assert_eq!(
            usable(
                &plain,
                &request("cache-control: max-stale=5\r\n"),
                true,
                NOW + 12
            ),
            Usable::Fresh
        );
        assert_eq!(
            usable(
                &plain,
                &request("cache-control: max-stale=5\r\n"),
                true,
                NOW + 16
            ),
            Usable::Revalidate
        );
        assert_eq!(
            usable(
                &plain,
                &request("cache-control: max-stale\r\n"),
                true,
                NOW + 1000
            ),
            Usable::Fresh
        );
        let swr =
            stored("cache-control: max-age=10, stale-while-revalidate=20, stale-if-error=5\r\n");
        assert_eq!(
            usable(&swr, &none, true, NOW + 25),
            Usable::StaleWhileRevalidate
        );
        assert_eq!(usable(&swr, &none, true, NOW + 31), Usable::Revalidate);
        assert!(usable_on_error(&swr, &none, true, NOW + 15));
        assert!(!usable_on_error(&swr, &none, true, NOW + 16));
        let asked = request("cache-control: stale-if-error=100\r\n");
        assert!(usable_on_error(&swr, &asked, true, NOW + 16));
        assert!(!usable_on_error(&swr, &asked, false, NOW + 16));
        let must = stored("cache-control: max-age=10, must-revalidate, stale-if-error=50, stale-while-revalidate=50\r\n");
        assert_eq!(
            usable(
                &must,
                &request("cache-control: max-stale\r\n"),
                true,
                NOW + 11
            ),
            Usable::Revalidate
        );
        assert!(!usable_on_error(&must, &none, true, NOW + 11));
        let revalidate = stored("cache-control: no-cache, max-age=100\r\n");
        assert_eq!(usable(&revalidate, &none, true, NOW), Usable::Revalidate);
    }

    #[test]
    fn conditions_and_validators() {
        let stored = "etag: \"v1\"\r\nlast-modified: Sat, 05 Dec 2026 10:00:00 GMT\r\n";
        let check = |request: &str| with(request, |req| with(stored, |s| not_modified(req, s)));
        let cases: &[(&str, bool)] = &[
            ("if-none-match: \"v1\"\r\n", true),
            ("if-none-match: W/\"v1\"\r\n", true),
            ("if-none-match: \"a\", \"v1\"\r\n", true),
            ("if-none-match: \"a,b\", \"c\"\r\n", false),
            ("if-none-match: *\r\n", true),
            (
                "if-none-match: \"v2\"\r\nif-modified-since: Sat, 05 Dec 2026 11:00:00 GMT\r\n",
                false,
            ),
            ("if-modified-since: Sat, 05 Dec 2026 11:00:00 GMT\r\n", true),
            ("if-modified-since: Sat, 05 Dec 2026 10:00:00 GMT\r\n", true),
            (
                "if-modified-since: Sat, 05 Dec 2026 09:00:00 GMT\r\n",
                false,
            ),
            ("if-modified-since: garbage\r\n", false),
            ("", false),
        ];
        for (request, want) in cases {
            assert_eq!(check(request), *want, "{request:?}");
        }
        let validates_with = |update: &str| with(stored, |s| with(update, |u| validates(s, u)));
        assert!(validates_with("etag: \"v1\"\r\n"));
        assert!(!validates_with("etag: \"v2\"\r\n"));
        assert!(validates_with(
            "last-modified: Sat, 05 Dec 2026 10:00:00 GMT\r\n"
        ));
        assert!(!validates_with(
            "last-modified: Sat, 05 Dec 2026 10:00:01 GMT\r\n"
        ));
        assert!(validates_with(""));
    }

    #[test]
    fn a_304_updates_the_stored_head() {
        let stored =
            "etag: \"v1\"\r\ncache-control: max-age=1\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n";
        let update =
            "cache-control: max-age=60\r\nx-a: 3\r\ncontent-length: 0\r\nconnection: close\r\n";
        let merged = with(stored, |s| {
            with(update, |u| merge_not_modified(s, 200, b"OK", u))
        });
        assert_eq!(
            String::from_utf8(merged.to_vec()).unwrap(),
            "HTTP/1.1 200 OK\r\netag: \"v1\"\r\ncontent-length: 5\r\ncache-control: max-age=60\r\nx-a: 3\r\n\r\n"
        );
    }

    #[test]
    fn vary_names_and_normalised_values() {
        assert_eq!(
            with(
                "vary: Accept-Encoding, accept\r\nvary: ACCEPT\r\n",
                vary_names
            ),
            Some(vec!["accept".into(), "accept-encoding".into()])
        );
        assert_eq!(with("vary: *\r\n", vary_names), None);
        assert_eq!(with("", vary_names), Some(vec![]));
        let names: Vec<Box<str>> = vec![
            "accept-encoding".into(),
            "accept-language".into(),
            "x-thing".into(),
        ];
        let key = |lines: &str| with(lines, |r| vary_key(r, &names));
        assert_eq!(
            key("accept-encoding: gzip, br\r\n"),
            key("accept-encoding: br,gzip;q=0.5\r\n")
        );
        assert_eq!(
            key("accept-encoding: gzip;q=0, br\r\n"),
            key("accept-encoding: br\r\n")
        );
        assert_eq!(key("accept-encoding: identity\r\n"), key(""));
        assert_eq!(
            key("accept-language: en-US, de;q=0.5\r\n"),
            key("accept-language: de; q=0.5,EN-us\r\n")
        );
        assert_ne!(key("x-thing: a, b\r\n"), key("x-thing: b, a\r\n"));
        assert_eq!(key("x-thing: a,  b\r\n"), key("x-thing: a, b\r\n"));
        assert_eq!(key(""), "accept-encoding:\naccept-language:\nx-thing:\n");
    }

    #[test]
    fn byte_ranges() {
        let range = |value: &str| with(&format!("range: {value}\r\n"), |r| byte_range(r, 10));
        type Answer = Option<Result<(u64, u64), ()>>;
        let cases: &[(&str, Answer)] = &[
            ("bytes=0-3", Some(Ok((0, 3)))),
            ("bytes=2-", Some(Ok((2, 9)))),
            ("bytes=5-100", Some(Ok((5, 9)))),
            ("bytes=-3", Some(Ok((7, 9)))),
            ("bytes=-30", Some(Ok((0, 9)))),
            ("bytes=10-20", Some(Err(()))),
            ("bytes=-0", Some(Err(()))),
            ("bytes=3-1", None),
            ("bytes=0-1,3-4", None),
            ("items=0-1", None),
            ("bytes=a-b", None),
            ("bytes=99999999999-", Some(Err(()))),
            ("bytes=", None),
        ];
        for (value, want) in cases {
            assert_eq!(range(value), *want, "{value}");
        }
        assert_eq!(with("", |r| byte_range(r, 10)), None);
        let stored = "etag: \"v1\"\r\nlast-modified: Sat, 05 Dec 2026 10:00:00 GMT\r\n";
        let matches = |request: &str| with(request, |r| with(stored, |s| if_range_matches(r, s)));
        assert!(matches(""));
        assert!(matches("if-range: \"v1\"\r\n"));
        assert!(!matches("if-range: W/\"v1\"\r\n"));
        assert!(!matches("if-range: \"v2\"\r\n"));
        assert!(matches("if-range: Sat, 05 Dec 2026 10:00:00 GMT\r\n"));
        assert!(!matches("if-range: Sat, 05 Dec 2026 10:00:01 GMT\r\n"));
    }

    #[test]
    fn tags_and_invalidations() {
        assert_eq!(
            with("surrogate-key: b  a\r\ncache-tag: c, a\r\n", tags),
            vec!["a".into(), "b".into(), "c".into()] as Vec<Box<str>>
        );
        assert!(invalidates(201) && invalidates(303) && !invalidates(404) && !invalidates(500));
        let locations = with(
            "location: /new\r\ncontent-location: http://Example.com/x?y\r\nlocation: https://other.com/z\r\ncontent-location: //example.com/w\r\n",
            |f| invalidated_locations(f, b"example.com"),
        );
        assert_eq!(locations, vec![b"/new".to_vec(), b"/x?y".to_vec()]);
    }

    #[test]
    fn malformed_input_never_panics() {
        for junk in [
            "cache-control: \"\r\n",
            "cache-control: =\r\n",
            "cache-control: max-age=\"\r\n",
            "if-none-match: W/\r\n",
            "if-none-match: \"\r\n",
            "range: bytes=-\r\n",
            "range: bytes=18446744073709551615-\r\n",
            "date: 99, Foo 9999 99:99:99 GMT\r\n",
            "age: 99999999999999999999999\r\n",
        ] {
            with(junk, |f| {
                let _ = cache_control(f);
                let _ = not_modified(f, f);
                let _ = byte_range(f, 0);
                let _ = byte_range(f, u64::MAX);
                let _ = freshness(f, 200, 0, u64::MAX, u64::MAX);
                let _ = if_range_matches(f, f);
            });
        }
    }
}

//! Request IDs: the one a client sent, when it is safe to carry on, or a new one.
//!
//! Sits at the start of the request path, right after the head is parsed: the ID chosen
//! here goes upstream in the configured header (`observability.request_id_header`), back
//! to the client in the response, and into the access log and the trace.
//!
//! Invariants: an accepted client ID is 1..=128 bytes of `[A-Za-z0-9._:+/=-]`, so it can be
//! copied into a header, a log line or a span without escaping; generating an ID takes no
//! lock and talks to no other thread (each worker owns a [`RequestIdGen`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use crate::http1::{RequestHead, Span};

/// Longest client-supplied request ID kept; a longer one is replaced.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Length of a generated ID: a UUID in its 8-4-4-4-12 hex form.
pub const GENERATED_ID_BYTES: usize = 36;

/// Generated IDs rendered per allocation: they share one buffer, so a request costs a
/// reference count rather than an allocation.
const IDS_PER_CHUNK: usize = 64;

/// Where the client's request ID sits in `raw` (a span to `Bytes::slice`), when the head
/// carries exactly one `header` field (compared case-insensitively) whose value is
/// acceptable: 1..=[`MAX_REQUEST_ID_BYTES`] bytes of `[A-Za-z0-9._:+/=-]`.
///
/// `None` (generate a new ID) when the header is absent, repeated (which one would be
/// the request's?) or unacceptable.
pub fn incoming(raw: &[u8], head: &RequestHead, header: &str) -> Option<Span> {
    let mut found = None;
    for h in &head.headers {
        if h.name(raw).eq_ignore_ascii_case(header.as_bytes()) {
            if found.is_some() {
                return None;
            }
            found = Some(h.value);
        }
    }
    let span = found?;
    let value = raw.get(span.0 as usize..span.1 as usize)?;
    is_acceptable(value).then_some(span)
}

/// Whether a client-supplied request ID may be used as is.
pub fn is_acceptable(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._:+/=-".contains(&b))
}

/// Generates request IDs without coordination between workers: a random 64-bit prefix
/// chosen once per generator and a counter, rendered as a UUID (version 4, RFC 9562
/// variant) so that tools which expect one accept it.
///
/// Layout of the 128 bits: the prefix fills the high 64 (4 of them overwritten by the
/// version nibble, leaving 60 random bits); the counter fills the low 62 below the 2
/// variant bits. IDs from one generator never repeat before 2^62 of them; two generators
/// collide only if their 60-bit prefixes do.
pub struct RequestIdGen {
    /// High 64 bits, version nibble already set.
    high: u64,
    /// Next counter value (62 bits used).
    counter: u64,
    /// Rendered IDs are split off this buffer.
    chunk: BytesMut,
}

const COUNTER_MASK: u64 = (1 << 62) - 1;
const VARIANT_BITS: u64 = 0b10 << 62;
/// Version 4 in bits 12..16 of the third group, i.e. bits 12..16 of the high word.
const VERSION_MASK: u64 = 0xf << 12;
const VERSION_4: u64 = 0x4 << 12;

impl RequestIdGen {
    pub fn new() -> Self {
        let high = (random_u64() & !VERSION_MASK) | VERSION_4;
        // Start the counter at a random point too, so that IDs do not reveal how many
        // requests a worker has served.
        let counter = random_u64() & COUNTER_MASK;
        RequestIdGen {
            high,
            counter,
            chunk: BytesMut::new(),
        }
    }

    // Not an `Iterator`: it never ends, so an `Option` would only be unwrapped.
    #[allow(clippy::should_implement_trait)]
    /// The next ID: 36 bytes, `xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx`, lower-case hex.
    pub fn next(&mut self) -> Bytes {
        let low = VARIANT_BITS | (self.counter & COUNTER_MASK);
        self.counter = self.counter.wrapping_add(1);
        let mut out = [0u8; GENERATED_ID_BYTES];
        render_uuid(self.high, low, &mut out);
        if self.chunk.capacity() - self.chunk.len() < GENERATED_ID_BYTES {
            self.chunk = BytesMut::with_capacity(GENERATED_ID_BYTES * IDS_PER_CHUNK);
        }
        self.chunk.extend_from_slice(&out);
        self.chunk.split().freeze()
    }
}

impl Default for RequestIdGen {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `high:low` as 8-4-4-4-12 lower-case hex.
fn render_uuid(high: u64, low: u64, out: &mut [u8; GENERATED_ID_BYTES]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let value = (u128::from(high) << 64) | u128::from(low);
    let mut digit = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
            continue;
        }
        let shift = 124 - 4 * digit;
        *slot = HEX[((value >> shift) & 0xf) as usize];
        digit += 1;
    }
}

/// 64 bits that differ between generators and between processes: std's per-thread
/// OS-seeded hash keys, mixed with the time and a process-wide sequence number. Not for
/// cryptography — a request ID is a correlation handle, not a secret.
fn random_u64() -> u64 {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    hasher.write_u64(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_request_head;
    use crate::http1::Limits;
    use std::collections::HashSet;

    const LIMITS: Limits = Limits {
        max_header_bytes: 4096,
        max_headers: 32,
        max_body_bytes: 1024,
        max_uri_bytes: 1024,
    };

    fn incoming_of(headers: &str) -> Option<String> {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{headers}\r\n");
        let head = parse_request_head(raw.as_bytes(), &LIMITS).unwrap();
        incoming(raw.as_bytes(), &head, "x-request-id")
            .map(|(s, e)| raw[s as usize..e as usize].to_owned())
    }

    #[test]
    fn client_ids_are_kept_only_when_acceptable() {
        let long_ok = "a".repeat(MAX_REQUEST_ID_BYTES);
        let too_long = "a".repeat(MAX_REQUEST_ID_BYTES + 1);
        let ok_header = format!("X-Request-Id: {long_ok}\r\n");
        let long_header = format!("X-Request-Id: {too_long}\r\n");
        let cases: &[(&str, Option<&str>)] = &[
            ("X-Request-Id: abc-123\r\n", Some("abc-123")),
            ("x-request-id: abc-123\r\n", Some("abc-123")),
            ("X-REQUEST-ID:   spaced  \r\n", Some("spaced")),
            (
                "X-Request-Id: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n",
                Some("0f8fad5b-d9cb-469f-a165-70867728950e"),
            ),
            ("X-Request-Id: a.b_c:d+e/f=g-h\r\n", Some("a.b_c:d+e/f=g-h")),
            ("X-Request-Id: Z\r\n", Some("Z")),
            (&ok_header, Some(&long_ok)),
            (&long_header, None),
            ("", None),
            ("X-Request-Id:\r\n", None),
            ("X-Request-Id: has space\r\n", None),
            ("X-Request-Id: quote\"d\r\n", None),
            ("X-Request-Id: semi;colon\r\n", None),
            ("X-Request-Id: comma,list\r\n", None),
            ("X-Request-Id: back\\slash\r\n", None),
            ("X-Request-Id: tab\tin\r\n", None),
            ("X-Request-Id: caf\u{e9}\r\n", None),
            ("X-Request-Id: a\r\nX-Request-Id: b\r\n", None),
            ("X-Request-Id-Other: a\r\n", None),
            ("X-Correlation-Id: a\r\n", None),
        ];
        for (headers, want) in cases {
            assert_eq!(incoming_of(headers).as_deref(), *want, "{headers:?}");
        }
    }

    #[test]
    fn the_header_name_is_configurable() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-Correlation-Id: q1\r\nX-Request-Id: q2\r\n\r\n";
        let head = parse_request_head(raw, &LIMITS).unwrap();
        let (s, e) = incoming(raw, &head, "x-correlation-id").unwrap();
        assert_eq!(&raw[s as usize..e as usize], b"q1");
    }

    fn is_uuid_v4(id: &[u8]) -> bool {
        id.len() == 36
            && id.iter().enumerate().all(|(i, &b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                14 => b == b'4',
                19 => b"89ab".contains(&b),
                _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
            })
    }

    #[test]
    fn generated_ids_are_uuid_v4_shaped_and_unique() {
        let mut gens = [
            RequestIdGen::new(),
            RequestIdGen::new(),
            RequestIdGen::new(),
        ];
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            for g in &mut gens {
                let id = g.next();
                assert!(is_uuid_v4(&id), "{:?}", String::from_utf8_lossy(&id));
                assert!(is_acceptable(&id));
                assert!(seen.insert(id));
            }
        }
        // Different generators have different prefixes.
        let prefixes: HashSet<_> = gens.iter().map(|g| g.high).collect();
        assert_eq!(prefixes.len(), gens.len());
    }

    #[test]
    fn uuid_rendering_is_exact() {
        let mut out = [0u8; GENERATED_ID_BYTES];
        render_uuid(
            0x0123_4567_89ab_4def,
            VARIANT_BITS | 0x0123_4567_89ab,
            &mut out,
        );
        assert_eq!(&out, b"01234567-89ab-4def-8000-0123456789ab");
        render_uuid(u64::MAX, u64::MAX, &mut out);
        assert_eq!(&out, b"ffffffff-ffff-ffff-ffff-ffffffffffff");
    }

    #[test]
    fn the_counter_wraps_within_its_62_bits() {
        let mut g = RequestIdGen::new();
        g.counter = COUNTER_MASK;
        let last = g.next();
        let wrapped = g.next();
        assert!(is_uuid_v4(&last) && is_uuid_v4(&wrapped));
        assert_eq!(&last[19..], b"bfff-ffffffffffff");
        assert_eq!(&wrapped[19..], b"8000-000000000000");
    }
}

//! The facts of the request being served, as templates name them
//! (`transform::template::Facts`): transforms and aggregation render over these.

use crate::auth::Identity;
use crate::config::Route;
use crate::http1::RequestHead;
use crate::transform::template::{Fact, FactValue, Facts};

/// One request's facts, borrowed from the request and its context.
pub struct RequestFacts<'a> {
    pub raw: &'a [u8],
    pub head: &'a RequestHead,
    pub route: &'a Route,
    pub client_ip: &'a [u8],
    pub request_id: &'a [u8],
    pub identity: Option<&'a Identity>,
}

impl Facts for RequestFacts<'_> {
    fn value(&self, fact: &Fact) -> Option<FactValue<'_>> {
        let (raw, head) = (self.raw, self.head);
        let value: &[u8] = match fact {
            Fact::Param(name) => {
                let path = std::str::from_utf8(head.path(raw)).ok()?;
                self.route.params.value(path, name)?.as_bytes()
            }
            Fact::Query(name) => query_value(query_of(head.target(raw)), name)?,
            Fact::Header(name) => crate::http1::headers::header_value(raw, head, name)?,
            Fact::Claim(name) => {
                let claims = &self.identity?.claims;
                &claims.iter().find(|(claim, _)| **claim == **name)?.1
            }
            Fact::ClientIp => self.client_ip,
            Fact::RequestId => self.request_id,
            Fact::Consumer => &self.identity?.consumer,
            Fact::Route => self.route.name.as_bytes(),
            Fact::Method => head.method(raw),
            Fact::Path => head.path(raw),
            Fact::Host => head.authority(raw)?,
            // Only an aggregation's steps have earlier answers.
            Fact::Step(..) => return None,
        };
        Some(FactValue::Borrowed(value))
    }
}

/// The query of a request target (without the `?`), empty when it has none.
pub fn query_of(target: &[u8]) -> &[u8] {
    memchr::memchr(b'?', target).map_or(&b""[..], |at| &target[at + 1..])
}

/// The first value of parameter `name` in `query`, as sent (`a` alone gives an empty value).
pub fn query_value<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match memchr::memchr(b'=', pair) {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        (key == name).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_found_by_name() {
        let query = query_of(b"/p?a=1&b&c=x%20y&a=2");
        assert_eq!(query, b"a=1&b&c=x%20y&a=2");
        assert_eq!(query_value(query, b"a"), Some(&b"1"[..]));
        assert_eq!(query_value(query, b"b"), Some(&b""[..]));
        assert_eq!(query_value(query, b"c"), Some(&b"x%20y"[..]));
        assert_eq!(query_value(query, b"d"), None);
        assert_eq!(query_of(b"/p"), b"");
    }
}

//! The cache key of a request, in two parts: the URL (`scheme://host/path?query`, what a
//! purge names) and the variant (the configured request headers and the consumer; the
//! `Vary` values are added at lookup, once the stored responses say which headers count).

use super::config::{KeyRules, QueryKey};
use crate::http1::headers::header_value;
use crate::http1::RequestHead;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub url: String,
    pub variant: String,
}

impl Key {
    /// What a fill of this key is claimed under (requests for it wait for the fill).
    pub fn fill_key(&self) -> String {
        format!("{}\n{}", self.url, self.variant)
    }
}

/// The key of a request under `rules`: `scheme` is `http` or `https`, `consumer` the
/// authenticated consumer, if any.
pub fn build(
    rules: &KeyRules,
    scheme: &str,
    raw: &[u8],
    head: &RequestHead,
    consumer: Option<&[u8]>,
) -> Key {
    let mut url = String::with_capacity(head.target(raw).len() + 32);
    if rules.scheme {
        url.push_str(scheme);
        url.push_str("://");
    }
    if rules.host {
        let host = head.authority(raw).unwrap_or_default();
        url.push_str(&String::from_utf8_lossy(host).to_ascii_lowercase());
    }
    let target = head.target(raw);
    let path = head.path(raw);
    url.push_str(&String::from_utf8_lossy(path));
    let query = target
        .get(path.len() + 1..)
        .filter(|_| target.len() > path.len());
    if let Some(query) = query {
        push_query(&mut url, rules, &String::from_utf8_lossy(query));
    }
    let mut variant = String::new();
    for name in &rules.headers {
        let value = header_value(raw, head, name.as_bytes()).unwrap_or_default();
        variant.push_str(name);
        variant.push('=');
        variant.push_str(&String::from_utf8_lossy(value));
        variant.push('\n');
    }
    if rules.consumer {
        variant.push_str("consumer=");
        variant.push_str(&String::from_utf8_lossy(consumer.unwrap_or_default()));
        variant.push('\n');
    }
    Key { url, variant }
}

/// Appends `?query` as the rules want it: parameters ignored, sorted or left out.
fn push_query(url: &mut String, rules: &KeyRules, query: &str) {
    if rules.query == QueryKey::None {
        return;
    }
    let ignored = |param: &&str| {
        let name = param.split('=').next().unwrap_or_default();
        !param.is_empty() && !rules.ignore_params.iter().any(|i| i == name)
    };
    let mut params: Vec<&str> = query.split('&').filter(ignored).collect();
    if rules.query == QueryKey::Sorted {
        params.sort_unstable();
    }
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse_request_head;

    fn rules(query: QueryKey, headers: &[&str], consumer: bool) -> KeyRules {
        KeyRules {
            scheme: true,
            host: true,
            query,
            ignore_params: vec!["utm_source".into()],
            headers: headers.iter().map(|h| h.to_string()).collect(),
            consumer,
        }
    }

    fn key_of(rules: &KeyRules, request: &str, consumer: Option<&[u8]>) -> Key {
        let raw = request.as_bytes();
        let limits = crate::http1::Limits {
            max_header_bytes: 4096,
            max_headers: 16,
            max_body_bytes: 1024,
            max_uri_bytes: 256,
        };
        let head = parse_request_head(raw, &limits).expect("a valid request");
        build(rules, "http", raw, &head, consumer)
    }

    #[test]
    fn keys() {
        let get = |target: &str, extra: &str| {
            format!("GET {target} HTTP/1.1\r\nHost: Example.COM:8080\r\n{extra}\r\n")
        };
        let as_sent = rules(QueryKey::AsSent, &[], false);
        let sorted = rules(QueryKey::Sorted, &["accept-language"], true);
        let none = rules(QueryKey::None, &[], false);
        // (rules, request, consumer, URL, variant)
        type Case<'a> = (&'a KeyRules, String, Option<&'a [u8]>, &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &as_sent,
                get("/a?b=1&a=2", ""),
                None,
                "http://example.com:8080/a?b=1&a=2",
                "",
            ),
            (
                &as_sent,
                get("/a?utm_source=x", ""),
                None,
                "http://example.com:8080/a",
                "",
            ),
            (
                &as_sent,
                get("/a?", ""),
                None,
                "http://example.com:8080/a",
                "",
            ),
            (
                &sorted,
                get("/a?b=1&a=2&utm_source=z", "Accept-Language: de\r\n"),
                Some(b"alice"),
                "http://example.com:8080/a?a=2&b=1",
                "accept-language=de\nconsumer=alice\n",
            ),
            (
                &sorted,
                get("/a", ""),
                None,
                "http://example.com:8080/a",
                "accept-language=\nconsumer=\n",
            ),
            (
                &none,
                get("/a?b=1", ""),
                None,
                "http://example.com:8080/a",
                "",
            ),
        ];
        for (rules, request, consumer, url, variant) in cases {
            let key = key_of(rules, request, *consumer);
            assert_eq!(
                (key.url.as_str(), key.variant.as_str()),
                (*url, *variant),
                "{request:?}"
            );
        }
    }
}

//! The `proxy_protocol` settings: a listener's table (`[server]` and each
//! `[[server.tls]]`), which sources may send a header and whether one must come, and an
//! upstream's `"v1"` or `"v2"`. The networks are parsed as the access lists parse theirs.

use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use crate::access::Cidr;
use crate::settings::Ctx;

/// A listener's `proxy_protocol = { from = [...], required = false }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProxyProtocol {
    /// Required; optional here so that its absence is reported with the other errors.
    pub from: Option<Vec<Spanned<String>>>,
    pub required: Option<bool>,
}

/// Who may open a connection to a listener with a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocolListener {
    /// Sources (the TCP peer) whose header is believed; from any other, a header closes
    /// the connection.
    pub from: Vec<Cidr>,
    /// A connection from `from` without a header is closed.
    pub required: bool,
}

impl ProxyProtocolListener {
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.from.iter().any(|cidr| cidr.contains(peer))
    }
}

/// The version of the header an upstream is sent (and a listener received).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    V1,
    V2,
}

impl ProxyVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        }
    }
}

/// A listener's table, under `key` (`server.proxy_protocol`, `server.tls[0].proxy_protocol`).
pub fn listener(
    ctx: &mut Ctx,
    file: &Spanned<FileProxyProtocol>,
    key: &str,
) -> Option<ProxyProtocolListener> {
    let Some(entries) = &file.get_ref().from else {
        ctx.error(
            file.span(),
            format!("{key}.from"),
            "required: the networks of the load balancers that send the header",
        );
        return None;
    };
    let errors = ctx.error_count();
    let from = crate::access::config::cidrs(ctx, Some(entries.as_slice()), &format!("{key}.from"));
    if from.is_empty() && ctx.error_count() == errors {
        ctx.error(
            file.span(),
            format!("{key}.from"),
            "empty: no source could send a header (leave `proxy_protocol` out instead)",
        );
        return None;
    }
    Some(ProxyProtocolListener {
        from,
        required: file.get_ref().required.unwrap_or(false),
    })
}

/// An upstream's `proxy_protocol = "v1" | "v2"`, under `key`.
pub fn version(ctx: &mut Ctx, value: &Spanned<String>, key: &str) -> Option<ProxyVersion> {
    match value.get_ref().as_str() {
        "v1" => Some(ProxyVersion::V1),
        "v2" => Some(ProxyVersion::V2),
        other => {
            ctx.error(
                value.span(),
                key,
                format!("unknown version \"{other}\": expected \"v1\" or \"v2\""),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_errors, load_str};

    fn config(server: &str, upstream: &str) -> String {
        format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n{server}\n\
             [upstreams.u]\nendpoints = [\"127.0.0.1:2\"]\n{upstream}\n\
             [[routes]]\npath = \"/\"\nupstream = \"u\"\n"
        )
    }

    #[test]
    fn settings_and_their_errors() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("proxy_protocol = { from = [\"10.0.0.0/8\", \"::1\"] }", "proxy_protocol = \"v2\"", &[]),
            ("proxy_protocol = { from = [\"10.0.0.1/8\"] }", "", &["t.toml:3:28: server.proxy_protocol.from[0]: host bits set in \"10.0.0.1/8\": the network is 10.0.0.0/8"]),
            ("proxy_protocol = { required = true }", "", &["t.toml:3:18: server.proxy_protocol.from: required: the networks of the load balancers that send the header"]),
            ("proxy_protocol = { from = [] }", "", &["t.toml:3:18: server.proxy_protocol.from: empty: no source could send a header (leave `proxy_protocol` out instead)"]),
            ("", "proxy_protocol = \"v3\"", &["t.toml:6:18: upstreams.u.proxy_protocol: unknown version \"v3\": expected \"v1\" or \"v2\""]),
        ];
        for (server, upstream, want) in cases {
            assert_eq!(
                load_errors(&config(server, upstream)),
                *want,
                "{server} {upstream}"
            );
        }
        let typo = load_errors(&config(
            "proxy_protocol = { from = [\"::1\"], requird = true }",
            "",
        ));
        assert!(typo[0].contains("unknown field `requird`"), "{typo:?}");

        let built = load_str(
            &config(
                "proxy_protocol = { from = [\"10.0.0.0/8\"], required = true }",
                "proxy_protocol = \"v1\"",
            ),
            "t.toml",
        )
        .unwrap();
        let listener = built.server.proxy_protocol.unwrap();
        assert!(listener.required);
        assert!(listener.is_trusted("10.1.2.3".parse().unwrap()));
        assert!(listener.is_trusted("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!listener.is_trusted("127.0.0.1".parse().unwrap()));
        assert_eq!(built.upstreams[0].proxy_protocol, Some(ProxyVersion::V1));
        let plain = load_str(&config("", ""), "t.toml").unwrap();
        assert_eq!(plain.server.proxy_protocol, None);
        assert_eq!(plain.upstreams[0].proxy_protocol, None);
    }
}

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

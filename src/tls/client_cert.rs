//! Client certificates on the request path: a route's `client_cert = "required"` (checked
//! by the route's `ClientCert` filter, first after the HTTPS redirect), and the verified
//! identity sent upstream in the listener's `client_identity_header`.
//!
//! The handshake has already verified the certificate against the listener's `client_ca`
//! (`accept.rs`); this module only asks whether the session has one. A listener with
//! `client_auth = "optional"` can thus serve open routes and certificate-only routes side
//! by side. A request on a plaintext listener has no session, so it never has a
//! certificate: such a route refuses it the same way.
//!
//! Invariant: a client never chooses the identity header's value. Every configured
//! identity header name is removed from every forwarded request, on every listener, and
//! only a verified certificate's value is put back.

use toml::Spanned;

use super::TlsInfo;
use crate::settings::Ctx;

/// Whether `value` (a route's `client_cert`) requires a verified client certificate.
/// `listeners` says whether any listener could ever verify one: a requirement nothing can
/// meet would refuse every request.
pub fn route_requirement(
    ctx: &mut Ctx,
    value: &Spanned<String>,
    key: &str,
    listeners: &super::ListenerFacts,
) -> bool {
    let required = match value.get_ref().as_str() {
        "required" => true,
        "none" => false,
        other => {
            let why = format!("unknown value \"{other}\": expected \"required\" or \"none\"");
            ctx.error(value.span(), key, why);
            return false;
        }
    };
    if required && listeners.complete && !listeners.verifies_clients {
        ctx.error(
            value.span(),
            key,
            "no [[server.tls]] listener asks for client certificates (client_auth = \
             \"optional\" or \"required\" with client_ca), so every request would be refused",
        );
    }
    required
}

/// Whether the request's session presented a certificate that verified. A plaintext
/// request (`None`) has none.
pub fn is_verified(tls: Option<&TlsInfo>) -> bool {
    tls.is_some_and(|tls| tls.client.is_some())
}

/// The identity header the upstream gets for this session, as (lower-case name, value):
/// only when its listener names a header and the client's certificate verified.
pub fn upstream_identity(tls: Option<&TlsInfo>) -> Option<(&[u8], &[u8])> {
    let tls = tls?;
    let name = tls.identity_header.as_ref()?;
    let client = tls.client.as_ref()?;
    Some((&name[..], &client.header_value[..]))
}

#[cfg(test)]
mod tests {
    use crate::config::load_errors as errors;

    const PLAIN: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[[routes]]\npath = \"/\"\n\
                         mock = { status = 200 }\n";

    #[test]
    fn a_requirement_is_checked_against_the_listeners() {
        let cases: &[(&str, &[&str])] = &[
            ("client_cert = \"none\"", &[]),
            (
                "client_cert = \"yes\"",
                &[
                    "t.toml:7:15: routes[0].client_cert: unknown value \"yes\": expected \
                   \"required\" or \"none\"",
                ],
            ),
            (
                "client_cert = \"required\"",
                &[
                    "t.toml:7:15: routes[0].client_cert: no [[server.tls]] listener asks for \
                   client certificates (client_auth = \"optional\" or \"required\" with \
                   client_ca), so every request would be refused",
                ],
            ),
        ];
        for (line, want) in cases {
            assert_eq!(errors(&format!("{PLAIN}{line}\n")), *want, "{line}");
        }
    }

    #[test]
    fn the_identity_header_cannot_be_one_strait_owns() {
        for name in ["Host", "x-forwarded-for", "connection", "content-length"] {
            let text = format!(
                "[server]\n[[server.tls]]\nlisten = [\"127.0.0.1:8443\"]\n\
                 certificates = [{{ cert = \"/nonexistent.pem\", key = \"/nonexistent.key\" }}]\n\
                 client_identity_header = \"{name}\"\n"
            );
            let all = errors(&text);
            let found: Vec<_> = all
                .iter()
                .filter(|e| e.contains("client_identity_header"))
                .collect();
            assert_eq!(
                found,
                [&format!(
                    "t.toml:5:26: server.tls[0].client_identity_header: \"{name}\" is a \
                     header Strait writes or drops itself: choose another name"
                )],
                "{all:?}"
            );
        }
    }
}

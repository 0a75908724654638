//! Picking a certificate by the name the client asked for (SNI): an exact name first, then
//! a `*.parent` wildcard (which covers one label, as RFC 6125 §6.4.3 has it), then the
//! default certificate, or a refusal when the listener has none. Among the certificates of
//! one name (an ECDSA and an RSA one, say), the first whose key can sign with a scheme the
//! client offers.

use std::sync::Arc;

use ahash::AHashMap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, Default)]
pub struct SniResolver {
    exact: AHashMap<String, Vec<Arc<CertifiedKey>>>,
    /// By the parent of the wildcard: `example.com` for `*.example.com`.
    wildcard: AHashMap<String, Vec<Arc<CertifiedKey>>>,
    /// For clients that send no name, or one no certificate has; `None`: refuse them.
    default: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// Serves `key` for `name` (lower case; `*.parent` for a wildcard).
    pub fn add(&mut self, name: &str, key: Arc<CertifiedKey>) {
        match name.strip_prefix("*.") {
            Some(parent) => self.wildcard.entry(parent.to_owned()),
            None => self.exact.entry(name.to_owned()),
        }
        .or_default()
        .push(key);
    }

    /// Serves `key` to clients whose name matches no certificate.
    pub fn add_default(&mut self, key: Arc<CertifiedKey>) {
        self.default.push(key);
    }

    /// The certificates for `name`, by the order above.
    fn candidates(&self, name: Option<&str>) -> &[Arc<CertifiedKey>] {
        let Some(name) = name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(keys) = self.exact.get(&name) {
            return keys;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(keys) = self.wildcard.get(parent) {
                return keys;
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.candidates(hello.server_name())
            .iter()
            .find(|key| key.key.choose_scheme(schemes).is_some())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: u8) -> Arc<CertifiedKey> {
        #[derive(Debug)]
        struct NoKey;
        impl rustls::sign::SigningKey for NoKey {
            fn choose_scheme(
                &self,
                _: &[rustls::SignatureScheme],
            ) -> Option<Box<dyn rustls::sign::Signer>> {
                None
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                rustls::SignatureAlgorithm::ECDSA
            }
        }
        let cert = rustls_pki_types::CertificateDer::from(vec![tag]);
        Arc::new(CertifiedKey::new(vec![cert], Arc::new(NoKey)))
    }

    fn tag(keys: &[Arc<CertifiedKey>]) -> Option<u8> {
        keys.first().map(|k| k.cert[0].as_ref()[0])
    }

    #[test]
    fn exact_then_one_label_wildcard_then_default() {
        let mut sni = SniResolver::default();
        sni.add("api.example.com", key(1));
        sni.add("*.example.com", key(2));
        sni.add_default(key(3));
        assert_eq!(tag(sni.candidates(Some("api.example.com"))), Some(1));
        assert_eq!(tag(sni.candidates(Some("API.Example.COM."))), Some(1));
        assert_eq!(tag(sni.candidates(Some("www.example.com"))), Some(2));
        // A wildcard covers one label only, and not the parent itself.
        assert_eq!(tag(sni.candidates(Some("a.b.example.com"))), Some(3));
        assert_eq!(tag(sni.candidates(Some("example.com"))), Some(3));
        assert_eq!(tag(sni.candidates(None)), Some(3));
    }

    #[test]
    fn without_a_default_unknown_names_are_refused() {
        let mut sni = SniResolver::default();
        sni.add("api.example.com", key(1));
        assert_eq!(tag(sni.candidates(Some("other.example.com"))), None);
        assert_eq!(tag(sni.candidates(None)), None);
    }
}

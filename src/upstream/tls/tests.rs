//! `tls` of `[upstreams.NAME]`: the forms it takes, the name each endpoint is verified
//! under, when a config is "the same" across reloads, and each error with its key and
//! message (certificates made here with rcgen, written to a scratch directory).

use std::net::SocketAddr;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use super::*;
use crate::config::{load_str_with, Config, ConfigErrors};
use crate::scratch::ScratchDir;

/// Files in a scratch directory: `ca.pem`; `client.pem` and `client.key` issued by it;
/// `other.key`, a key of no certificate; `junk.pem`, not PEM at all.
fn files() -> ScratchDir {
    let dir = ScratchDir::new("upstream-tls");
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["gateway.test".to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).unwrap();
    write("ca.pem", ca.pem());
    write("client.pem", client.pem());
    write("client.key", client_key.serialize_pem());
    write("other.key", KeyPair::generate().unwrap().serialize_pem());
    write("junk.pem", "not a certificate\n".to_owned());
    dir
}

/// A fake DNS: `api.internal:443` is 10.0.0.9, nothing else resolves.
fn resolve(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    match name {
        "api.internal:443" => Ok(vec!["10.0.0.9:443".parse().unwrap()]),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such host",
        )),
    }
}

/// Loads upstream `u` at `endpoint` with `tls = <tls>`, the config file in `dir`.
fn load(dir: &Path, endpoint: &str, tls: &str) -> Result<Config, ConfigErrors> {
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n[upstreams.u]\nendpoints = [\"{endpoint}\"]\n\
         tls = {tls}\n"
    );
    let origin = dir.join("t.toml").display().to_string();
    load_str_with(&text, &origin, &resolve)
}

fn upstream_tls(dir: &Path, endpoint: &str, tls: &str) -> Option<UpstreamTls> {
    match load(dir, endpoint, tls) {
        Ok(config) => config.upstreams[0].tls.clone(),
        Err(errors) => panic!("{tls}:\n{errors}"),
    }
}

/// The errors of `tls = <tls>`, each without the file name in front.
fn errors(dir: &Path, tls: &str) -> Vec<String> {
    let origin = dir.join("t.toml").display().to_string();
    match load(dir, "10.0.0.1:443", tls) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .errors
            .iter()
            .map(|e| e.to_string().replacen(&origin, "t.toml", 1))
            .collect(),
    }
}

#[test]
fn forms_and_names() {
    let dir = files();
    assert!(upstream_tls(&dir, "10.0.0.1:443", "false").is_none());

    // An endpoint by IP is verified under its IP, one by name under that name; a
    // configured `server_name` wins over both.
    let by_ip = Endpoint {
        addr: "10.0.0.1:443".parse().unwrap(),
        weight: 1,
        hostname: None,
    };
    let by_name = Endpoint {
        addr: "10.0.0.9:443".parse().unwrap(),
        weight: 1,
        hostname: Some("api.internal:443".to_owned()),
    };
    let tls = upstream_tls(&dir, "10.0.0.1:443", r#"{ ca = "ca.pem" }"#).unwrap();
    assert_eq!(tls.server_name(&by_ip), ServerName::from(by_ip.addr.ip()));
    assert_eq!(
        tls.server_name(&by_name),
        ServerName::try_from("api.internal").unwrap()
    );
    let named = r#"{ ca = "ca.pem", server_name = "origin.test" }"#;
    let tls = upstream_tls(&dir, "api.internal:443", named).unwrap();
    for endpoint in [&by_ip, &by_name] {
        assert_eq!(
            tls.server_name(endpoint),
            ServerName::try_from("origin.test").unwrap()
        );
    }
    assert_eq!(
        tls.client.alpn_protocols,
        [b"http/1.1".to_vec()],
        "ALPN offers HTTP/1.1 only"
    );

    assert!(upstream_tls(&dir, "10.0.0.1:443", "{ verify = false }").is_some());
    let mutual = r#"{ ca = "ca.pem", client_cert = "client.pem", client_key = "client.key" }"#;
    let tls = upstream_tls(&dir, "10.0.0.1:443", mutual).unwrap();
    assert!(tls.client.client_auth_cert_resolver.has_certs());

    // `tls = true`: the system's roots, which this machine may not have.
    match load(&dir, "10.0.0.1:443", "true") {
        Ok(config) => assert!(config.upstreams[0].tls.is_some()),
        Err(errors) => {
            assert!(crate::tls::system_roots().is_empty());
            assert!(
                errors.to_string().contains("no usable system root"),
                "{errors}"
            );
        }
    }
}

#[test]
fn the_same_settings_and_files_are_the_same_tls() {
    let dir = files();
    let settings = r#"{ ca = "ca.pem", server_name = "a.test" }"#;
    let a = upstream_tls(&dir, "10.0.0.1:443", settings).unwrap();
    let b = upstream_tls(&dir, "10.0.0.1:443", settings).unwrap();
    assert!(a.is_same_as(&b));
    let renamed = r#"{ ca = "ca.pem", server_name = "b.test" }"#;
    assert!(!a.is_same_as(&upstream_tls(&dir, "10.0.0.1:443", renamed).unwrap()));
    // A CA file rotated in place is another CA.
    std::fs::copy(dir.join("client.pem"), dir.join("ca.pem")).unwrap();
    assert!(!a.is_same_as(&upstream_tls(&dir, "10.0.0.1:443", settings).unwrap()));
}

#[test]
fn a_reload_with_the_same_settings_keeps_the_session_cache() {
    let dir = files();
    let settings = r#"{ ca = "ca.pem" }"#;
    let load_all = |tls: &str| load(&dir, "10.0.0.1:443", tls).unwrap().upstreams;
    let client = |upstreams: &[UpstreamConfig]| upstreams[0].tls.as_ref().unwrap().client.clone();
    let previous = load_all(settings);
    let mut same = load_all(settings);
    assert!(!Arc::ptr_eq(&client(&previous), &client(&same)));
    share_sessions(&mut same, &previous);
    assert!(Arc::ptr_eq(&client(&previous), &client(&same)));
    let mut changed = load_all(r#"{ ca = "ca.pem", server_name = "x.test" }"#);
    share_sessions(&mut changed, &previous);
    assert!(!Arc::ptr_eq(&client(&previous), &client(&changed)));
}

#[test]
fn errors_name_the_key_and_say_why() {
    let dir = files();
    let missing = dir.join("missing.pem").display().to_string();
    // (the `tls` value, the one error expected after "t.toml:5:C: ")
    let cases: &[(&str, &str)] = &[
        (r#"{ ca = "missing.pem" }"#, &format!("upstreams.u.tls.ca: cannot read \"{missing}\"")),
        (r#"{ ca = "junk.pem" }"#, "upstreams.u.tls.ca: no certificate in the file"),
        (r#"{ ca = "client.key" }"#, "upstreams.u.tls.ca: no certificate in the file"),
        (r#"{ ca = "ca.pem", verify = false }"#, "upstreams.u.tls.ca: `ca` is not used with `verify = false`"),
        (r#"{ ca = "ca.pem", server_name = "not a name" }"#, "upstreams.u.tls.server_name: invalid name \"not a name\": expected a DNS name or an IP address"),
        (r#"{ ca = "ca.pem", client_cert = "client.pem" }"#, "upstreams.u.tls.client_cert: client_cert needs client_key"),
        (r#"{ ca = "ca.pem", client_key = "client.key" }"#, "upstreams.u.tls.client_key: client_key needs client_cert"),
        (r#"{ ca = "ca.pem", client_cert = "junk.pem", client_key = "client.key" }"#, "upstreams.u.tls.client_cert: no certificate in the file"),
        (r#"{ ca = "ca.pem", client_cert = "client.pem", client_key = "junk.pem" }"#, "upstreams.u.tls.client_key: no private key in \"junk.pem\""),
        (r#"{ ca = "ca.pem", client_cert = "client.pem", client_key = "other.key" }"#, "upstreams.u.tls.client_key: the key in \"other.key\" does not match the certificate in client_cert"),
        (r#"{ ca = "ca.pem", sni = "a.test" }"#, "upstreams.u.tls.sni: unknown field `sni`"),
        (r#"{ ca = "ca.pem", verify = "no" }"#, "upstreams.u.tls.verify: invalid type: string \"no\", expected a boolean"),
        (r#""yes""#, "upstreams.u.tls: invalid type: string \"yes\", expected true, false, or a table"),
    ];
    for (tls, want) in cases {
        let got = errors(&dir, tls);
        assert_eq!(got.len(), 1, "{tls}: {got:#?}");
        assert!(
            got[0].starts_with("t.toml:5:"),
            "{tls}: not at line 5: {}",
            got[0]
        );
        let message = got[0]
            .splitn(4, ':')
            .nth(3)
            .unwrap_or_default()
            .trim_start();
        assert!(
            message.starts_with(want),
            "{tls}\n got: {}\nwant: {want}",
            got[0]
        );
    }

    // Positions point at the value at fault.
    let got = errors(
        &dir,
        r#"{ ca = "ca.pem", client_cert = "client.pem", client_key = "other.key" }"#,
    );
    assert!(got[0].starts_with("t.toml:5:65: "), "{}", got[0]);
}

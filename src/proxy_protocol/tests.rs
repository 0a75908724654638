//! Table-driven tests of the parser and the encoder.

use std::net::SocketAddr;

use super::*;

fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut out = v2::SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(fam);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn inet_block() -> Vec<u8> {
    let mut b = vec![192, 0, 2, 1, 198, 51, 100, 7];
    b.extend_from_slice(&56324u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// What a header announces: source and destination, when it names them.
type Addresses = Option<(SocketAddr, SocketAddr)>;

fn addrs(src: &str, dst: &str) -> Addresses {
    Some((src.parse().unwrap(), dst.parse().unwrap()))
}

fn complete(input: &[u8]) -> (ProxyHeader, usize) {
    match parse(input) {
        Parsed::Complete { header, consumed } => (header, consumed),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn valid_headers() {
    let mut with_tlvs = inet_block();
    with_tlvs.extend(tlv(0x01, b"h2"));
    with_tlvs.extend(tlv(0x04, b"\0\0\0")); // NOOP, skipped
    with_tlvs.extend(tlv(0x02, b"api.example.com"));
    let mut ssl = vec![0x01, 0, 0, 0, 0];
    ssl.extend(tlv(0x21, b"TLSv1.3"));
    ssl.extend(tlv(0x22, b"client-1"));
    ssl.extend(tlv(0x25, b"RSA2048"));
    with_tlvs.extend(tlv(0x20, &ssl));
    let mut inet6 = Vec::new();
    inet6.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    inet6.extend_from_slice(
        &"2001:db8::2"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    inet6.extend_from_slice(&[0, 80, 1, 187]);
    // (input, version, addresses)
    let cases: Vec<(Vec<u8>, ProxyVersion, Addresses)> = vec![
        (
            b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n".to_vec(),
            ProxyVersion::V1,
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
        ),
        (
            b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n".to_vec(),
            ProxyVersion::V1,
            addrs("[2001:db8::1]:0", "[::1]:65535"),
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), ProxyVersion::V1, None),
        (
            b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
            ProxyVersion::V1,
            None,
        ),
        (
            v2(0x21, 0x11, &inet_block()),
            ProxyVersion::V2,
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
        ),
        (
            v2(0x21, 0x21, &inet6),
            ProxyVersion::V2,
            addrs("[2001:db8::1]:80", "[2001:db8::2]:443"),
        ),
        // LOCAL: addresses ignored, with or without a block.
        (v2(0x20, 0x00, &[]), ProxyVersion::V2, None),
        (v2(0x20, 0x11, &inet_block()), ProxyVersion::V2, None),
        // UNSPEC and UNIX: no usable address.
        (v2(0x21, 0x00, &[]), ProxyVersion::V2, None),
        (v2(0x21, 0x31, &[0; 216]), ProxyVersion::V2, None),
        (
            v2(0x21, 0x11, &with_tlvs),
            ProxyVersion::V2,
            addrs("192.0.2.1:56324", "198.51.100.7:443"),
        ),
    ];
    for (input, version, addresses) in &cases {
        let (header, consumed) = complete(input);
        assert_eq!(consumed, input.len(), "{input:?}");
        assert_eq!(header.version, *version, "{input:?}");
        assert_eq!(header.addresses, *addresses, "{input:?}");
        // What follows the header is not consumed.
        let mut more = input.clone();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(complete(&more).1, input.len());
        // Every proper prefix needs more.
        for end in 0..input.len() {
            assert_eq!(
                parse(&input[..end]),
                Parsed::Incomplete,
                "{input:?} at {end}"
            );
        }
    }
    let (header, _) = complete(&cases[10].0);
    assert_eq!(header.tlvs.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(
        header.tlvs.authority.as_deref(),
        Some(&b"api.example.com"[..])
    );
    let ssl = header.tlvs.ssl.unwrap();
    assert!(ssl.tls && ssl.verified);
    assert_eq!(ssl.version.as_deref(), Some(&b"TLSv1.3"[..]));
    assert_eq!(ssl.common_name.as_deref(), Some(&b"client-1"[..]));
}

#[test]
fn malformed_headers() {
    let long_v1 = format!("PROXY TCP4 1.1.1.1 2.2.2.2 1 2{}\r\n", " ".repeat(80));
    let mut bad_tlv = inet_block();
    bad_tlv.extend_from_slice(&[0x01, 0x00, 0x09, b'h']);
    let mut short_tlv = inet_block();
    short_tlv.extend_from_slice(&[0x02, 0x00]);
    let mut bad_ssl = inet_block();
    bad_ssl.extend(tlv(0x20, &[1, 0, 0]));
    let mut too_long = v2::SIGNATURE.to_vec();
    too_long.extend_from_slice(&[0x21, 0x11, 0x08, 0x01]);
    let cases: Vec<(Vec<u8>, Parsed)> = vec![
        // Not PROXY at all: HTTP, a TLS ClientHello, a wrong signature.
        (b"GET / HTTP/1.1\r\n".to_vec(), Parsed::NotProxy),
        (b"POST / HTTP/1.1\r\n".to_vec(), Parsed::NotProxy),
        (b"\x16\x03\x01".to_vec(), Parsed::NotProxy),
        (b"PROXY\r\n".to_vec(), Parsed::NotProxy),
        (b"\r\n\r\nGET".to_vec(), Parsed::NotProxy),
        (b"\r\n\r\n\0\r\nQUIX\n".to_vec(), Parsed::NotProxy),
        // Version 1.
        (long_v1.into_bytes(), Parsed::Invalid(Invalid::V1TooLong)),
        (
            [b"PROXY TCP4 ".as_slice(), &[b'1'; 100]].concat(),
            Parsed::Invalid(Invalid::V1TooLong),
        ),
        (
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n".to_vec(),
            Parsed::Invalid(Invalid::V1Syntax),
        ),
        (
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Syntax),
        ),
        (
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Syntax),
        ),
        (
            b"PROXY TCP4  1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Syntax),
        ),
        (
            b"PROXY UDP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Protocol),
        ),
        (b"PROXY \r\n".to_vec(), Parsed::Invalid(Invalid::V1Protocol)),
        (
            b"PROXY TCP4 ::1 2.2.2.2 1 2\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Address),
        ),
        (
            b"PROXY TCP6 1.1.1.1 ::2 1 2\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Address),
        ),
        (
            b"PROXY TCP4 1.1.1.256 2.2.2.2 1 2\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Address),
        ),
        (
            b"PROXY TCP4 1.1.1.1 2.2.2.2 65536 2\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Port),
        ),
        (
            b"PROXY TCP4 1.1.1.1 2.2.2.2 -1 2\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Port),
        ),
        (
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 999999\r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Port),
        ),
        (
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 \r\n".to_vec(),
            Parsed::Invalid(Invalid::V1Port),
        ),
        // Version 2.
        (
            v2(0x11, 0x11, &inet_block()),
            Parsed::Invalid(Invalid::V2Version),
        ),
        (
            v2(0x22, 0x11, &inet_block()),
            Parsed::Invalid(Invalid::V2Command),
        ),
        (
            v2(0x21, 0x41, &inet_block()),
            Parsed::Invalid(Invalid::V2Family),
        ),
        (
            v2(0x21, 0x13, &inet_block()),
            Parsed::Invalid(Invalid::V2Family),
        ),
        (v2(0x21, 0x11, &[0; 11]), Parsed::Invalid(Invalid::V2Length)),
        (
            v2(0x21, 0x21, &inet_block()),
            Parsed::Invalid(Invalid::V2Length),
        ),
        (too_long, Parsed::Invalid(Invalid::V2TooLong)),
        (v2(0x21, 0x11, &bad_tlv), Parsed::Invalid(Invalid::V2Tlv)),
        (v2(0x21, 0x11, &short_tlv), Parsed::Invalid(Invalid::V2Tlv)),
        (v2(0x21, 0x11, &bad_ssl), Parsed::Invalid(Invalid::V2Tlv)),
        // Truncated: need more, never a verdict on missing bytes.
        (b"PROXY TCP4 1.1.1.1 2.2.".to_vec(), Parsed::Incomplete),
        (b"PRO".to_vec(), Parsed::Incomplete),
        (v2::SIGNATURE[..7].to_vec(), Parsed::Incomplete),
        (
            v2(0x21, 0x11, &inet_block())[..20].to_vec(),
            Parsed::Incomplete,
        ),
    ];
    for (input, want) in &cases {
        assert_eq!(parse(input), *want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn encoded_headers_parse_back() {
    let cases = [
        (
            "192.0.2.1:1234",
            "10.0.0.1:80",
            "192.0.2.1:1234",
            "10.0.0.1:80",
        ),
        (
            "[2001:db8::1]:1",
            "[::1]:8080",
            "[2001:db8::1]:1",
            "[::1]:8080",
        ),
        // Mixed families: IPv4 written mapped; mapped IPv4 written IPv4.
        ("192.0.2.1:5", "[::1]:6", "[::ffff:192.0.2.1]:5", "[::1]:6"),
        (
            "[::ffff:192.0.2.1]:5",
            "10.0.0.1:6",
            "192.0.2.1:5",
            "10.0.0.1:6",
        ),
    ];
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        for (src, dst, want_src, want_dst) in cases {
            let bytes = encode(version, src.parse().unwrap(), dst.parse().unwrap());
            let (header, consumed) = complete(&bytes);
            assert_eq!(consumed, bytes.len());
            assert_eq!(header.version, version);
            assert_eq!(
                header.addresses,
                addrs(want_src, want_dst),
                "{version:?} {src}"
            );
        }
    }
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        let bytes = encode_local(version);
        let (header, consumed) = complete(&bytes);
        assert_eq!(
            (header.version, header.addresses, consumed),
            (version, None, bytes.len())
        );
    }
    assert_eq!(
        encode(
            ProxyVersion::V1,
            "192.0.2.1:1234".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap()
        ),
        b"PROXY TCP4 192.0.2.1 10.0.0.1 1234 80\r\n"
    );
}

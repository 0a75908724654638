//! Invariant: any bytes offered as a client certificate are read without panicking, and
//! the identity that goes upstream in `client_identity_header` is one header value: the
//! SHA-256 fingerprint first, then only printable ASCII, spaces and tabs (no CR, LF or other
//! control byte a certificate could use to add a header line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait::tls::accept::client_identity;

fuzz_target!(|data: &[u8]| {
    if let Some(identity) = client_identity(data) {
        let value = &identity.header_value;
        assert!(value.starts_with(b"Hash="));
        assert_eq!(identity.fingerprint.len(), 64);
        assert!(value
            .iter()
            .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic()));
    }
});

//! `[server.http2]`: HTTP/2 to clients (`proxy/h2/`). Offered by ALPN on the TLS listeners
//! unless turned off; cleartext (`h2c` with prior knowledge) only where asked for, since a
//! plaintext port then answers both protocols. The limits are the connection's defences:
//! each bounds what one client can make the worker hold or do.

use serde::Deserialize;
use toml::Spanned;

use crate::settings::{Ctx, SizeValue};

/// Streams one connection may have open at once (nginx's `http2_max_concurrent_streams`).
const DEFAULT_MAX_CONCURRENT_STREAMS: i64 = 128;
/// Streams a client may reset before the worker has served them (Rapid Reset,
/// CVE-2023-44487): past this, the connection ends with GOAWAY `ENHANCE_YOUR_CALM`.
const DEFAULT_MAX_PENDING_RESETS: i64 = 20;
/// Streams the worker may have to reset because the client broke the protocol on them.
const DEFAULT_MAX_ERROR_RESETS: i64 = 1024;
/// Frames that ask for nothing (PING, SETTINGS, WINDOW_UPDATE…) a client may send beyond
/// what its requests and downloads earn (`proxy/h2/flood.rs`).
const DEFAULT_MAX_CONTROL_FRAMES: i64 = 1000;
const DEFAULT_STREAM_WINDOW: u64 = 256 * 1024;
const DEFAULT_CONNECTION_WINDOW: u64 = 1024 * 1024;
/// HTTP/2's window sizes are 31-bit.
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// `[server.http2]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp2 {
    /// Offer `h2` by ALPN on the TLS listeners.
    pub tls: Option<bool>,
    /// Accept HTTP/2 with prior knowledge on the plaintext listeners, next to HTTP/1.1.
    pub cleartext: Option<bool>,
    pub max_concurrent_streams: Option<Spanned<i64>>,
    pub max_pending_resets: Option<Spanned<i64>>,
    pub max_error_resets: Option<Spanned<i64>>,
    pub max_control_frames: Option<Spanned<i64>>,
    pub stream_window: Option<Spanned<SizeValue>>,
    pub connection_window: Option<Spanned<SizeValue>>,
}

/// The HTTP/2 settings of every listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2 {
    pub tls: bool,
    pub cleartext: bool,
    pub max_concurrent_streams: u32,
    pub max_pending_resets: usize,
    pub max_error_resets: usize,
    pub max_control_frames: usize,
    /// The flow-control window of each stream: how much of a request body the client may
    /// send ahead of Strait reading it.
    pub stream_window: u32,
    pub connection_window: u32,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            tls: true,
            cleartext: false,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS as u32,
            max_pending_resets: DEFAULT_MAX_PENDING_RESETS as usize,
            max_error_resets: DEFAULT_MAX_ERROR_RESETS as usize,
            max_control_frames: DEFAULT_MAX_CONTROL_FRAMES as usize,
            stream_window: DEFAULT_STREAM_WINDOW as u32,
            connection_window: DEFAULT_CONNECTION_WINDOW as u32,
        }
    }
}

pub(super) fn build(ctx: &mut Ctx, file: &FileHttp2) -> Http2 {
    let defaults = Http2::default();
    let mut count = |value: &Option<Spanned<i64>>, key: &str, default: usize, max: i64| {
        value.as_ref().map_or(default, |v| {
            ctx.count(v, &format!("server.http2.{key}"), 1, max)
                .unwrap_or(default)
        })
    };
    let max_concurrent_streams = count(
        &file.max_concurrent_streams,
        "max_concurrent_streams",
        defaults.max_concurrent_streams as usize,
        i64::from(u32::MAX),
    ) as u32;
    let max_pending_resets = count(
        &file.max_pending_resets,
        "max_pending_resets",
        defaults.max_pending_resets,
        i64::MAX,
    );
    let max_error_resets = count(
        &file.max_error_resets,
        "max_error_resets",
        defaults.max_error_resets,
        i64::MAX,
    );
    let max_control_frames = count(
        &file.max_control_frames,
        "max_control_frames",
        defaults.max_control_frames,
        i64::MAX,
    );
    let mut window = |value: &Option<Spanned<SizeValue>>, key: &str, default: u32| {
        let key = format!("server.http2.{key}");
        let n = ctx.size(value, &key, u64::from(default));
        match (u32::try_from(n), value) {
            (Ok(n), _) if u64::from(n) <= MAX_WINDOW => n,
            (_, Some(v)) => {
                ctx.error(v.span(), key, format!("{n} is above 2^31 - 1 bytes"));
                default
            }
            (_, None) => default,
        }
    };
    Http2 {
        tls: file.tls.unwrap_or(defaults.tls),
        cleartext: file.cleartext.unwrap_or(defaults.cleartext),
        max_concurrent_streams,
        max_pending_resets,
        max_error_resets,
        max_control_frames,
        stream_window: window(&file.stream_window, "stream_window", defaults.stream_window),
        connection_window: window(
            &file.connection_window,
            "connection_window",
            defaults.connection_window,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::Http2;
    use crate::config::{load_errors, load_str};

    const SERVER: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n";

    #[test]
    fn defaults_and_values() {
        let http2 = |table: &str| {
            load_str(&format!("{SERVER}{table}"), "t.toml")
                .unwrap()
                .server
                .http2
        };
        assert_eq!(http2(""), Http2::default());
        let set = http2(
            "[server.http2]\ntls = false\ncleartext = true\nmax_concurrent_streams = 10\n\
             max_pending_resets = 5\nmax_error_resets = 7\nmax_control_frames = 9\nstream_window = \"1MiB\"\n\
             connection_window = \"4MiB\"\n",
        );
        assert_eq!(
            set,
            Http2 {
                tls: false,
                cleartext: true,
                max_concurrent_streams: 10,
                max_pending_resets: 5,
                max_error_resets: 7,
                max_control_frames: 9,
                stream_window: 1 << 20,
                connection_window: 4 << 20,
            }
        );
    }

    #[test]
    fn errors_name_the_key() {
        let errors = |table: &str| load_errors(&format!("{SERVER}[server.http2]\n{table}"));
        assert_eq!(
            errors("max_concurrent_streams = 0\n"),
            ["t.toml:4:26: server.http2.max_concurrent_streams: 0 is out of range: must be 1..=4294967295"]
        );
        assert_eq!(
            errors("stream_window = \"4GiB\"\n"),
            ["t.toml:4:17: server.http2.stream_window: 4294967296 is above 2^31 - 1 bytes"]
        );
        let typo = errors("clear_text = true\n");
        assert!(typo[0].contains("clear_text"), "{typo:?}");
    }
}

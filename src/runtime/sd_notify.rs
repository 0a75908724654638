//! A minimal `sd_notify(3)` client: tells the service manager (systemd, `Type=notify`) that
//! the gateway is ready, reloading, stopping, or has a new main process after a binary
//! upgrade. Main thread only; nothing here is on the request path.
//!
//! The protocol is one datagram of `KEY=VALUE` lines sent to the unix socket named by
//! `$NOTIFY_SOCKET`: a filesystem path, or a name in the abstract namespace when it starts
//! with `@`. The kernel attaches our credentials, which is how systemd knows who sent it.
//!
//! Invariants:
//! - Never fatal: without `$NOTIFY_SOCKET` (not run by systemd) every call does nothing, and
//!   a failed send is logged at debug level and otherwise ignored. A gateway must not stop
//!   serving because its supervisor cannot hear it.
//! - `$NOTIFY_SOCKET` is read once, at the start of `main` ([`set_socket`]), and left in the
//!   environment on purpose: a process started for a binary upgrade inherits it and uses it
//!   to announce itself (`MAINPID=`, `READY=1`).
//! - Free text (`STATUS=`) cannot inject other keys: newlines in it become spaces.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// `$NOTIFY_SOCKET` as `main` read it; unset (as in unit tests) means not run by systemd.
static SOCKET: OnceLock<Option<OsString>> = OnceLock::new();

/// Takes the value of `$NOTIFY_SOCKET`, read by `main` before any thread started; later
/// calls change nothing.
pub fn set_socket(socket: Option<OsString>) {
    let _ = SOCKET.set(socket);
}

/// Sends `state` to the socket named by `$NOTIFY_SOCKET`; does nothing when it is unset.
/// Errors are logged at debug level, never returned.
pub fn notify(state: &str) {
    let Some(Some(socket)) = SOCKET.get() else {
        return;
    };
    let Some(socket) = socket.to_str() else {
        tracing::debug!(socket = ?socket, "sd_notify: NOTIFY_SOCKET is not UTF-8, ignored");
        return;
    };
    if let Err(error) = notify_to(socket, state) {
        tracing::debug!(%socket, %error, state, "sd_notify: send failed");
    }
}

/// Sends `state` as one datagram to `socket`: a filesystem path, or `@name` for the abstract
/// namespace.
pub fn notify_to(socket: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let sent = match socket.strip_prefix('@') {
        Some(name) => {
            let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(state.as_bytes(), &addr)?
        }
        None if socket.starts_with('/') => sock.send_to(state.as_bytes(), socket)?,
        // systemd only ever hands out absolute paths or abstract names (newer versions also
        // `vsock:` addresses, for virtual machines, which we do not speak).
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor an abstract name",
            ))
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "sd_notify: datagram truncated",
        ));
    }
    Ok(())
}

/// Startup finished: every listener is bound and the workers accept. `status` is shown by
/// `systemctl status`.
pub fn ready(status: &str) {
    notify(&ready_message(status));
}

/// A reload started (SIGHUP or the admin API). Must be followed by [`ready`] once the new
/// snapshot is served or rejected, or systemd keeps the unit in "reloading".
pub fn reloading() {
    notify(&reloading_message(monotonic_usec()));
}

/// Shutdown started: listeners closed, in-flight requests draining.
pub fn stopping() {
    notify("STOPPING=1");
}

/// `pid` is now the service's main process. Sent by the new process of a binary upgrade
/// (the unit needs `NotifyAccess=all`, since until this is accepted it is not the main
/// process), before its `READY=1`.
pub fn main_pid(pid: u32) {
    notify(&format!("MAINPID={pid}"));
}

/// Free-form status line for `systemctl status`.
pub fn status(text: &str) {
    notify(&status_message(text));
}

fn ready_message(status: &str) -> String {
    format!("READY=1\n{}", status_message(status))
}

/// `MONOTONIC_USEC` lets systemd match this reload to the request that caused it
/// (required for `Type=notify-reload`, harmless before systemd 253).
fn reloading_message(monotonic_usec: u64) -> String {
    format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")
}

fn status_message(text: &str) -> String {
    format!("STATUS={}", text.replace(['\n', '\r'], " "))
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC` with
/// (`std::time::Instant` does not expose its raw value).
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call; CLOCK_MONOTONIC is
    // always supported on Linux, and on the (impossible) error `ts` stays zeroed.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let micros = u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000;
    secs.saturating_mul(1_000_000).saturating_add(micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A unique name per test in this process, so parallel tests never share a socket.
    fn unique(tag: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("strait-sdnotify-{}-{tag}-{n}", std::process::id())
    }

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    struct TempSocket {
        path: PathBuf,
        sock: UnixDatagram,
    }

    impl TempSocket {
        fn bind(tag: &str) -> TempSocket {
            let path = std::env::temp_dir().join(unique(tag));
            let _ = std::fs::remove_file(&path);
            let sock = UnixDatagram::bind(&path).unwrap();
            TempSocket { path, sock }
        }
    }

    impl Drop for TempSocket {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    #[test]
    fn sends_one_datagram_to_a_path() {
        let server = TempSocket::bind("path");
        let cases = [
            "READY=1\nSTATUS=serving",
            "STOPPING=1",
            "MAINPID=4242",
            &reloading_message(123),
        ];
        for state in cases {
            notify_to(server.path.to_str().unwrap(), state).unwrap();
            assert_eq!(recv(&server.sock), state);
        }
    }

    #[test]
    fn sends_to_an_abstract_name() {
        let name = unique("abstract");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(&format!("@{name}"), "READY=1").unwrap();
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn errors_are_returned_not_panics() {
        let missing = std::env::temp_dir().join(unique("missing"));
        assert!(notify_to(missing.to_str().unwrap(), "READY=1").is_err());
        assert!(notify_to("relative/socket", "READY=1").is_err());
        assert!(notify_to("", "READY=1").is_err());
    }

    #[test]
    fn messages() {
        let cases = [
            (
                ready_message("serving 2 listeners"),
                "READY=1\nSTATUS=serving 2 listeners",
            ),
            (
                ready_message("a\nMAINPID=1\r"),
                "READY=1\nSTATUS=a MAINPID=1 ",
            ),
            (status_message("reload failed"), "STATUS=reload failed"),
            (reloading_message(42), "RELOADING=1\nMONOTONIC_USEC=42"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn monotonic_clock_is_in_microseconds_and_does_not_go_back() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0);
        assert!(b >= a);
        // Microseconds, not nanoseconds: CLOCK_MONOTONIC never runs ahead of
        // CLOCK_BOOTTIME, which /proc/uptime shows in seconds.
        if let Ok(uptime) = std::fs::read_to_string("/proc/uptime") {
            let boot_secs: f64 = uptime.split_whitespace().next().unwrap().parse().unwrap();
            assert!(
                a as f64 / 1e6 <= boot_secs + 1.0,
                "{a} us vs uptime {boot_secs} s"
            );
        }
    }
}

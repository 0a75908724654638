//! Zero-downtime binary upgrade by socket inheritance, the way nginx does it.
//!
//! On SIGUSR2 the running process starts its successor (the binary now at the path it was
//! started from, with the same arguments) and hands it every worker's listening socket as
//! an inherited file descriptor. The successor adopts those sockets — the same sockets, so
//! connections waiting in their accept queues are not lost — starts its workers, and once
//! ready sends SIGTERM to its parent, which then drains and exits. If the successor fails
//! to start, the parent keeps serving and nothing changes.
//!
//! The admin and metrics listeners are handed over the same way: their sockets have no
//! `SO_REUSEPORT` (a second process on their address must fail), so the successor could
//! not bind them while the parent holds them.
//!
//! The hand-over travels in two environment variables, which the successor takes
//! ([`Handover::take_from_env`]) at the very start of `main`, before any thread exists:
//! changing the environment while other threads may read it is unsound.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};

/// Lists the inherited listening descriptors, comma-separated.
pub const LISTEN_FDS_ENV: &str = "STRAIT_LISTEN_FDS";
/// The pid of the process being replaced, to be told when the successor is ready.
pub const PARENT_ENV: &str = "STRAIT_UPGRADE_PARENT";

/// Starts `exe` with this process's arguments and `fds` open in it.
pub fn spawn_successor(exe: &Path, fds: &[RawFd]) -> std::io::Result<Child> {
    let list: Vec<String> = fds.iter().map(ToString::to_string).collect();
    let inherit = fds.to_vec();
    let mut command = Command::new(exe);
    command
        .args(std::env::args_os().skip(1))
        .env(LISTEN_FDS_ENV, list.join(","))
        .env(PARENT_ENV, std::process::id().to_string());
    // SAFETY: between fork and exec only async-signal-safe calls run: close_range and fcntl
    // on descriptors this process owns, marking every one close-on-exec and then clearing
    // the flag on the listeners, so that only they (and stdio) survive into the successor.
    unsafe {
        command.pre_exec(move || {
            // Client connections accepted through io_uring are not close-on-exec (its
            // accept takes no flags): a successor holding them would keep every connection
            // this process closes while draining open, and the clients would hang.
            if libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                // Before Linux 5.11: one descriptor at a time, up to the limit.
                let mut limit: libc::rlimit = std::mem::zeroed();
                let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                    limit.rlim_cur.min(1 << 20) as libc::c_int
                } else {
                    1 << 16
                };
                for fd in 3..max {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                    }
                }
            }
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn()
}

/// What a predecessor handed over through the environment (nothing when this process was
/// not started for an upgrade).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Handover {
    /// `STRAIT_LISTEN_FDS`: the inherited listening descriptors, comma-separated.
    listen_fds: Option<String>,
    /// `STRAIT_UPGRADE_PARENT`: the pid of the process being replaced.
    parent: Option<libc::pid_t>,
}

impl Handover {
    /// Reads and removes both variables, so that nothing this process starts inherits them
    /// by accident (a successor gets its own, from [`spawn_successor`]).
    ///
    /// Call it first thing in `main`, while the process has one thread: removing an
    /// environment variable while another thread may read the environment is undefined
    /// behaviour in libc.
    pub fn take_from_env() -> Handover {
        let handover = Handover::parse(
            std::env::var(LISTEN_FDS_ENV).ok(),
            std::env::var(PARENT_ENV).ok().as_deref(),
        );
        std::env::remove_var(LISTEN_FDS_ENV);
        std::env::remove_var(PARENT_ENV);
        handover
    }

    /// The hand-over from the variables' values; a parent pid that is not a number is
    /// ignored.
    pub fn parse(listen_fds: Option<String>, parent: Option<&str>) -> Handover {
        Handover {
            listen_fds,
            parent: parent.and_then(|p| p.parse::<libc::pid_t>().ok()),
        }
    }
}

/// Takes the listening sockets a predecessor handed over, with their addresses (once: a
/// second call finds none). Anything in the list that is not a listening TCP socket is
/// ignored.
pub fn inherited_listeners(handover: &mut Handover) -> Vec<(SocketAddr, OwnedFd)> {
    let Some(list) = handover.listen_fds.take() else {
        return Vec::new();
    };
    list.split(',')
        .filter_map(|item| item.trim().parse::<RawFd>().ok())
        .filter(|&fd| is_listening_tcp(fd))
        .filter_map(|fd| {
            // SAFETY: the predecessor opened `fd` for us and nothing else in this process
            // owns it (we checked it is a listening socket it passed down).
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let socket = socket2::Socket::from(owned);
            let addr = socket.local_addr().ok()?.as_socket()?;
            Some((addr, OwnedFd::from(socket)))
        })
        .collect()
}

/// Takes the inherited socket listening on `addr` out of `inherited`, if there is one.
pub fn take_listener(
    inherited: &mut Vec<(SocketAddr, OwnedFd)>,
    addr: SocketAddr,
) -> Option<OwnedFd> {
    let index = inherited.iter().position(|(a, _)| *a == addr)?;
    Some(inherited.swap_remove(index).1)
}

/// Tells the predecessor, if any, that this process serves now: it will drain and exit.
pub fn release_predecessor(handover: &Handover) {
    let Some(parent) = handover.parent else {
        return;
    };
    // SAFETY: getppid and kill have no memory-safety preconditions.
    unsafe {
        // Only the process that started us: never signal a recycled pid.
        if libc::getppid() == parent {
            libc::kill(parent, libc::SIGTERM);
        }
    }
}

fn is_listening_tcp(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`; a bad fd only fails.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    ok == 0 && value == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn handover_adopts_listening_sockets_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fd = listener.into_raw_fd();
        // Not numbers, not open, not a listening socket (this file): all ignored.
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let list = format!("x, {fd},999999,{}", file.as_raw_fd());
        let mut handover = Handover::parse(Some(list), Some("42"));
        assert_eq!(handover.parent, Some(42));
        let adopted = inherited_listeners(&mut handover);
        assert_eq!(adopted.len(), 1);
        assert_eq!(adopted[0].0, addr);
        assert!(inherited_listeners(&mut handover).is_empty());
        assert_eq!(Handover::parse(None, Some("pid")), Handover::default());
    }
}

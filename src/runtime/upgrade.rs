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

/// Takes the listening sockets a predecessor handed over, with their addresses. Anything in
/// the variable that is not a listening TCP socket is ignored.
pub fn inherited_listeners() -> Vec<(SocketAddr, OwnedFd)> {
    let Ok(list) = std::env::var(LISTEN_FDS_ENV) else {
        return Vec::new();
    };
    std::env::remove_var(LISTEN_FDS_ENV);
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
pub fn release_predecessor() {
    let Some(parent) = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<libc::pid_t>().ok())
    else {
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

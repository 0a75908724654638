//! systemd readiness through the real binary: `NOTIFY_SOCKET`, read once at the start of
//! `main`, reaches the notifications sent later from the main thread (start-up, SIGHUP
//! reload) and from the admin thread (`POST /reload`).

mod common;
use common::*;

use std::os::unix::net::UnixDatagram;

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the deadline");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn notifications_reach_the_socket_named_at_start() {
    let dir = scratch_dir();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let upstream = Upstream::fixed("ok");
    let strait = Strait::start_with_env(
        &proxy_config(upstream.addr, ""),
        &["--workers", "1"],
        &[("NOTIFY_SOCKET", path.as_os_str())],
    );
    assert_eq!(recv(&sock), format!("MAINPID={}", strait.pid()));
    let ready = recv(&sock);
    assert!(ready.starts_with("READY=1\nSTATUS=serving "), "{ready}");

    // A reload from the main thread (SIGHUP)…
    strait.signal(libc::SIGHUP);
    assert!(recv(&sock).starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(recv(&sock), "READY=1\nSTATUS=serving config generation 2");

    // …and one from the admin thread.
    let mut admin = connect(strait.admin_addr());
    std::io::Write::write_all(
        &mut admin,
        b"POST /reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut admin).unwrap().status, 200);
    assert!(recv(&sock).starts_with("RELOADING=1\nMONOTONIC_USEC="));
    assert_eq!(recv(&sock), "READY=1\nSTATUS=serving config generation 3");
}

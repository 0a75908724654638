//! Startup refusals through the real binary: more workers than CPUs, and addresses another
//! running Strait already serves. Each must fail at once with a message naming the bad value
//! and where it came from, exit non-zero, and start nothing.

mod common;
use common::*;

use std::process::ExitStatus;

/// Runs strait with `config` and `args` until it exits (killed, failing the test, if it
/// still runs after the deadline); returns its exit status and everything it wrote on
/// stderr.
fn run_to_exit(config: &str, args: &[&str]) -> (ExitStatus, String) {
    let dir = scratch_dir();
    let path = dir.join("strait.toml");
    std::fs::write(&path, config).unwrap();
    run_file_to_exit(&path, args)
}

/// The number of CPUs this test (and so the strait it starts) may run on.
fn allowed_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        libc::CPU_COUNT(&set) as usize
    }
}

fn cpus_text(cpus: usize) -> String {
    format!("the {cpus} CPU{}", if cpus == 1 { "" } else { "s" })
}

fn listen_config(listen: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"{listen}\"]\n{extra}\n[[routes]]\npath = \"/\"\nmock = {{ status = 200, body = \"one\" }}\n"
    )
}

// ---- Workers above the CPU count -----------------------------------------------------------

#[test]
fn more_workers_than_cpus_on_the_command_line_are_refused_before_anything_starts() {
    let cpus = allowed_cpus();
    let too_many = (cpus + 1).to_string();
    for workers in ["100000", too_many.as_str()] {
        let (status, log) = run_to_exit(
            &listen_config("127.0.0.1:0", ""),
            &["--admin-listen", "127.0.0.1:0", "--workers", workers],
        );
        assert!(!status.success(), "{log}");
        let expected = format!(
            "strait: --workers: {workers} is more than {} this process may run on",
            cpus_text(cpus)
        );
        assert!(log.contains(&expected), "{log}");
        // Nothing started: neither the admin API nor a worker got as far as listening.
        assert!(!log.contains("listening"), "{log}");
    }
}

#[test]
fn more_workers_than_cpus_in_the_config_are_refused_with_their_position() {
    let cpus = allowed_cpus();
    let dir = scratch_dir();
    let path = dir.join("strait.toml");
    std::fs::write(&path, listen_config("127.0.0.1:0", "workers = 100000")).unwrap();
    let (status, log) = run_file_to_exit(&path, &["--admin-listen", "127.0.0.1:0"]);
    assert!(!status.success(), "{log}");
    let expected = format!(
        "strait: {}:3:11: server.workers: 100000 is more than {} this process may run on",
        path.display(),
        cpus_text(cpus)
    );
    assert!(log.contains(&expected), "{log}");
    assert!(!log.contains("listening"), "{log}");

    // `--check` judges the file, not the machine it runs on: the value is valid there.
    let (status, log) = run_file_to_exit(&path, &["--check"]);
    assert!(status.success(), "{log}");

    // The flag overrides the file.
    let config = std::fs::read_to_string(&path).unwrap();
    let s = Strait::start_with(&config, &["--workers", "1"]);
    assert_eq!(
        s.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").text(),
        "one"
    );
}

// ---- Addresses a running Strait already serves ---------------------------------------------

#[test]
fn a_second_strait_on_a_served_listen_address_fails_naming_it() {
    let port = free_port();
    let first = Strait::start(&listen_config(&format!("127.0.0.1:{port}"), ""));
    // The same address, and the wildcard address covering it.
    for listen in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        let (status, log) = run_to_exit(
            &listen_config(&listen, ""),
            &["--admin-listen", "127.0.0.1:0", "--workers", "1"],
        );
        assert!(!status.success(), "{log}");
        let expected = format!(
            "strait: starting workers: listening on {listen}: the address is in use: \
             another process (another Strait?) listens on it"
        );
        assert!(log.contains(&expected), "{log}");
    }
    // The first one still serves every connection.
    for _ in 0..20 {
        assert_eq!(
            first.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").text(),
            "one"
        );
    }
}

#[test]
fn a_second_strait_on_a_served_admin_or_metrics_address_fails_naming_it() {
    let metrics_port = free_port();
    let metrics = format!("[observability.metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    let config = format!("{}{metrics}", listen_config("127.0.0.1:0", ""));
    let first = Strait::start(&config);
    let admin = first.admin_addr();

    let (status, log) = run_to_exit(
        &listen_config("127.0.0.1:0", ""),
        &["--admin-listen", &admin.to_string(), "--workers", "1"],
    );
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("strait: starting the admin API on {admin}: ")),
        "{log}"
    );
    assert!(!log.contains("listening"), "{log}");

    let (status, log) = run_to_exit(
        &config,
        &["--admin-listen", "127.0.0.1:0", "--workers", "1"],
    );
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "strait: starting the metrics listener on 127.0.0.1:{metrics_port}: "
        )),
        "{log}"
    );
}

#[test]
fn strait_instances_on_port_zero_each_get_their_own_port() {
    let config = listen_config("127.0.0.1:0", "");
    let (a, b) = (Strait::start(&config), Strait::start(&config));
    assert_ne!(a.addr, b.addr);
    assert_ne!(a.admin_addr(), b.admin_addr());
    assert_eq!(
        a.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").text(),
        "one"
    );
    assert_eq!(
        b.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").text(),
        "one"
    );
}

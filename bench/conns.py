#!/usr/bin/env python3
"""bench/conns.py — what many client connections cost a proxy, measured from outside.

Used by bench/run (--idle, --many) against a server already answering `GET /` with
`200 hello` on 127.0.0.1; it can also be run by hand. Two measurements:

  idle  Opens --conns keep-alive connections, sends one request on each (64 in flight) and
        reads its answer, reads the server's resident memory (VmRSS of --pids, summed), then
        does the same with --conns more connections and reports the difference / conns: what
        one more idle keep-alive connection costs the process. Measuring from the first batch
        leaves out what warm-up grows once (allocator arenas, spare buffers). Kernel socket
        memory is not counted.

  many  Holds --conns keep-alive connections open at once and serves them in rounds: each
        round sends one request on every connection, at most --window in flight, and reads
        every answer. Reports per round the time, the answer latency p50/p99/max and
        whether every connection was answered (fair service: none starved, none refused),
        and the server's resident memory with all connections open.

With --tls-ca (and --tls-name), every connection is TLS: connections are opened and their
handshakes run 64 at a time, before the first requests (certificate checked against --tls-ca
for --tls-name, which is also the SNI), and the figures are then those of idle TLS keep-alive
connections (bench/tls --idle).

Beyond ~28,000 connections the client needs more than one source address: connections are
spread over 127.0.0.1, 127.0.0.2, ... (the whole 127/8 is local). Raise the open-file limits
of both sides first (bench/run does). Prints one `key=value` line per result on stdout.
"""

import argparse
import resource
import selectors
import socket
import ssl
import statistics
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: pick the port at connect(), per 4-tuple
PER_SOURCE = 20000  # connections per source address, well inside the ephemeral range


def rss_bytes(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 1024
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard), max(want, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        sys.exit(f"conns.py: open-file limit {soft} is below the {want} needed")


def open_connections(port, n, deadline, first_source=0):
    """n connected non-blocking sockets (connects in batches, so the backlog keeps up);
    numbering starts at `first_source` for the choice of source address."""
    socks = []
    sel = selectors.DefaultSelector()
    pending = 0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((f"127.0.0.{1 + (first_source + i) // PER_SOURCE}", 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE)
        socks.append(s)
        pending += 1
        if pending >= 512 or i == n - 1:
            while pending:
                if time.monotonic() > deadline:
                    sys.exit("conns.py: connecting took too long")
                for key, _ in sel.select(timeout=1):
                    err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        sys.exit(f"conns.py: connect failed: {err}")
                    sel.unregister(key.fileobj)
                    pending -= 1
    sel.close()
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return socks


def answered(data):
    """True once `data` holds one whole `200 hello` answer (Content-Length framed)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = data[:end].lower()
    at = head.find(b"content-length:")
    if at < 0:
        return False
    length = int(head[at + 15:].split(b"\r\n", 1)[0])
    return len(data) >= end + 4 + length


def check(data):
    if not data.startswith(b"HTTP/1.1 200") or not data.endswith(b"hello"):
        sys.exit(f"conns.py: unexpected answer {data[:200]!r}")


def round_trip(socks, window, deadline):
    """One request on every socket, at most `window` in flight; latencies in seconds."""
    sel = selectors.DefaultSelector()
    latencies = []
    buffers = {}
    started = {}
    next_i = 0
    in_flight = 0
    while next_i < len(socks) or in_flight:
        while in_flight < window and next_i < len(socks):
            s = socks[next_i]
            next_i += 1
            started[s] = time.monotonic()
            s.send(REQUEST)
            buffers[s] = b""
            sel.register(s, selectors.EVENT_READ)
            in_flight += 1
        if time.monotonic() > deadline:
            sys.exit(f"conns.py: round not done in time ({in_flight} answers missing)")
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
                # TLS: a record may hold more than one read gives, and select() does not see it.
                while isinstance(s, ssl.SSLSocket) and s.pending():
                    chunk += s.recv(65536)
            except ssl.SSLWantReadError:
                continue  # a partial record, or a session ticket: nothing for us yet
            if not chunk:
                sys.exit("conns.py: the server closed a keep-alive connection")
            buffers[s] += chunk
            if answered(buffers[s]):
                check(buffers[s])
                latencies.append(time.monotonic() - started[s])
                sel.unregister(s)
                in_flight -= 1
    sel.close()
    return latencies


def tls_handshakes(socks, ctx, name, window, deadline):
    """Wraps every connected socket in TLS and runs the handshakes, at most `window` at once;
    returns the TLS sockets."""
    sel = selectors.DefaultSelector()
    out = []
    pending = {}
    todo = list(reversed(socks))

    def step(t):
        try:
            t.do_handshake()
        except ssl.SSLWantReadError:
            sel.modify(t, selectors.EVENT_READ) if t in pending else sel.register(t, selectors.EVENT_READ)
            pending[t] = True
            return
        except ssl.SSLWantWriteError:
            sel.modify(t, selectors.EVENT_WRITE) if t in pending else sel.register(t, selectors.EVENT_WRITE)
            pending[t] = True
            return
        if t in pending:
            sel.unregister(t)
            del pending[t]
        out.append(t)

    while todo or pending:
        while todo and len(pending) < window:
            t = ctx.wrap_socket(todo.pop(), server_hostname=name, do_handshake_on_connect=False)
            step(t)
        if time.monotonic() > deadline:
            sys.exit(f"conns.py: TLS handshakes not done in time ({len(pending)} pending)")
        for key, _ in sel.select(timeout=1):
            step(key.fileobj)
    sel.close()
    return out


def pct(sorted_vals, p):
    return sorted_vals[min(len(sorted_vals) - 1, int(len(sorted_vals) * p))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["idle", "many"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pids", required=True, help="comma-separated pids whose VmRSS is summed")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3, help="many: rounds over all connections")
    ap.add_argument("--window", type=int, default=256, help="many: requests in flight at most")
    ap.add_argument("--timeout", type=float, default=120, help="seconds for the whole measurement")
    ap.add_argument("--tls-ca", help="speak TLS, checking the server's certificate against this PEM file")
    ap.add_argument("--tls-name", default="localhost", help="TLS: the name asked for (SNI) and checked")
    args = ap.parse_args()
    ctx = None
    if args.tls_ca:
        ctx = ssl.create_default_context(cafile=args.tls_ca)
        ctx.set_alpn_protocols(["http/1.1"])

    def connect(n, first_source=0):
        if ctx is None:
            return open_connections(args.port, n, deadline, first_source)
        # TLS: connect and shake hands 64 at a time, as clients arriving would: a server may
        # bound (and time) the connections that have not finished their handshake.
        socks = []
        for i in range(0, n, 64):
            batch = open_connections(args.port, min(64, n - i), deadline, first_source + i)
            socks += tls_handshakes(batch, ctx, args.tls_name, 64, deadline)
        return socks

    pids = [int(p) for p in args.pids.split(",") if p]
    raise_nofile(2 * args.conns if args.mode == "idle" else args.conns)
    deadline = time.monotonic() + args.timeout

    before = rss_bytes(pids)
    t0 = time.monotonic()
    socks = connect(args.conns)
    opened = time.monotonic() - t0
    if args.mode == "idle":
        round_trip(socks, 64, deadline)
        first = rss_bytes(pids)
        more = connect(args.conns, first_source=args.conns)
        round_trip(more, 64, deadline)
        second = rss_bytes(pids)
        socks += more
        print(f"conns={args.conns} rss_before={before} rss_first={first} rss_second={second} "
              f"bytes_per_idle_conn={(second - first) / args.conns:.0f}")
    else:
        for r in range(1, args.rounds + 1):
            t = time.monotonic()
            lat = sorted(round_trip(socks, args.window, deadline))
            took = time.monotonic() - t
            print(f"round={r} conns={args.conns} answered={len(lat)} took_s={took:.2f} "
                  f"req_per_s={len(lat) / took:.0f} p50_ms={statistics.median(lat) * 1e3:.2f} "
                  f"p99_ms={pct(lat, 0.99) * 1e3:.2f} max_ms={lat[-1] * 1e3:.2f} "
                  f"rss={rss_bytes(pids)}")
        after = rss_bytes(pids)
        print(f"conns={args.conns} rss_before={before} rss_open={after} "
              f"bytes_per_conn={(after - before) / args.conns:.0f} connect_s={opened:.2f}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()

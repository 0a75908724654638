#!/usr/bin/env python3
"""bench/tls-client.py — TLS handshakes in a loop against 127.0.0.1, for bench/tls.

Each of --procs processes connects, runs a TLS handshake, sends one keep-alive
`GET / HTTP/1.1` (Host: --name), reads the Content-Length framed answer, closes the connection
itself (the client's close, so the server's way of closing plays no part), and starts over,
until --seconds have passed.

  --mode new     every handshake is a full one (no session offered)
  --mode reuse   every connection offers the session of the one before it (the newest ticket
                 it received, as `openssl s_time -reuse` does), so each is a resumption: TLS 1.3
                 PSK with (EC)DHE from a ticket, or TLS 1.2 from a ticket or session ID

Prints one line: `conns=N resumed=R new=X errors=E min_bytes=B` (B: the shortest answer read;
an error is a failed connection, handshake or a non-200 answer). Exits 1 if any error.
"""
import argparse
import multiprocessing
import socket
import ssl
import sys
import time


def worker(args, out):
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.minimum_version = ctx.maximum_version = (
        ssl.TLSVersion.TLSv1_3 if args.version == "1.3" else ssl.TLSVersion.TLSv1_2)
    request = f"GET / HTTP/1.1\r\nHost: {args.name}\r\n\r\n".encode()
    conns = resumed = new = errors = 0
    min_bytes = None
    session = None
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        conns += 1
        try:
            raw = socket.create_connection(("127.0.0.1", args.port), timeout=5)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = ctx.wrap_socket(raw, server_hostname=args.name,
                                session=session if args.mode == "reuse" else None)
            s.sendall(request)
            data = b""
            while True:
                end = data.find(b"\r\n\r\n")
                if end >= 0:
                    head = data[:end].lower()
                    at = head.find(b"content-length:")
                    if at >= 0:
                        length = int(head[at + 15:].split(b"\r\n", 1)[0])
                        if len(data) >= end + 4 + length:
                            break
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before the answer was whole")
                data += chunk
            if not data.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(f"answer {data[:40]!r}")
            if s.session_reused:
                resumed += 1
            else:
                new += 1
            min_bytes = len(data) if min_bytes is None else min(min_bytes, len(data))
            # The session with the newest ticket: TLS 1.3 tickets arrive after the handshake,
            # and were read with the answer.
            session = s.session
            s.close()
        except (OSError, ssl.SSLError, ValueError) as e:
            errors += 1
            if errors <= 3:
                print(f"tls-client: {type(e).__name__}: {e}", file=sys.stderr)
            session = None
    out.put((conns, resumed, new, errors, min_bytes or 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=["new", "reuse"], required=True)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--ca", required=True, help="PEM file the server's certificate must verify against")
    ap.add_argument("--name", default="localhost", help="SNI, certificate name and Host")
    ap.add_argument("--version", choices=["1.2", "1.3"], default="1.3")
    args = ap.parse_args()
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=worker, args=(args, out)) for _ in range(args.procs)]
    for p in procs:
        p.start()
    results = [out.get(timeout=args.seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    conns = sum(r[0] for r in results)
    resumed = sum(r[1] for r in results)
    new = sum(r[2] for r in results)
    errors = sum(r[3] for r in results)
    min_bytes = min(r[4] for r in results)
    print(f"conns={conns} resumed={resumed} new={new} errors={errors} min_bytes={min_bytes}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/otlp-sink.py — a do-nothing OTLP/HTTP collector for bench/run.

Usage: bench/otlp-sink.py PORT STATS_FILE

Listens on 127.0.0.1:PORT, answers `200` (empty body, `Connection: close`) to every POST and
discards the body, after counting it: the number of POSTs, body bytes and spans (occurrences
of `"spanId"` in the OTLP JSON) are rewritten to STATS_FILE after each POST, as one line
`posts=N bytes=N spans=N`. `GET /ready` answers 200 (not counted), for the start-up check.
Exits on SIGTERM/SIGINT. bench/run pins it to CPU 0, off the measured core.
"""
import http.server
import os
import signal
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stats = {"posts": 0, "bytes": 0, "spans": 0}
    stats_file = None

    def _answer(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.close_connection = True

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        s = Sink.stats
        s["posts"] += 1
        s["bytes"] += len(body)
        s["spans"] += body.count(b'"spanId"')
        self._answer(200)
        tmp = Sink.stats_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(f"posts={s['posts']} bytes={s['bytes']} spans={s['spans']}\n")
        os.replace(tmp, Sink.stats_file)

    def do_GET(self):
        self._answer(200 if self.path == "/ready" else 404, b"ok" if self.path == "/ready" else b"")

    def log_message(self, *args):
        pass


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    port, Sink.stats_file = int(sys.argv[1]), sys.argv[2]
    with open(Sink.stats_file, "w") as fh:
        fh.write("posts=0 bytes=0 spans=0\n")
    server = http.server.HTTPServer(("127.0.0.1", port), Sink)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

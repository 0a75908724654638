#!/usr/bin/env python3
"""Summarise a bench/run results file (TSV): one table per layout and connection count, one row
per proxy, each figure as median [min-max] over the interleaved rounds.

Usage: bench/summarize.py bench/results/<file>.tsv

Columns:
  req/s         wrk's Requests/sec
  p50, p99      wrk --latency percentiles, in microseconds (shared-core latency)
  CPU us/req    the proxy's own utime+stime (all threads, all processes) per completed request;
                for `direct` it is the upstream's own cost
  added us/req  1e6/rps(proxy) - 1e6/rps(direct), paired with `direct` of the same round
  x nginx       req/s divided by nginx's req/s of the same round
  x direct      req/s divided by direct's req/s of the same round
  up conns/req  connections the upstream accepted during the run, per request: new upstream
                connections a proxy opened (0 when its pool never churns; direct: wrk's own)
  errors        wrk's Non-2xx responses + socket errors, summed over the rounds

Runs with a new connection per request (bench/run --close) get tables of their own: there
req/s is also connections accepted per second, and CPU us/req is CPU per connection.

When strait-obs, strait-guard, strait-jwt, strait-base or monolake ran, each table is followed by paired
ratios, per round then median [min-max]: strait-obs/strait, strait-guard/strait, strait-jwt/strait,
strait/strait-base, strait-obs/strait-base and strait/monolake, for req/s, CPU us/req and p99.
"""
import csv
import statistics
import sys
from collections import defaultdict

ORDER = ["direct", "strait-base", "strait", "strait-obs", "strait-guard", "strait-jwt", "nginx", "haproxy",
         "monolake"]
# (a, b): print a/b per round when both ran — what observability, authentication and rate
# limits cost, what a change costs.
PAIRS = [
    ("strait-obs", "strait"),
    ("strait-guard", "strait"),
    ("strait-jwt", "strait"),
    ("strait", "strait-base"),
    ("strait-obs", "strait-base"),
    ("strait", "monolake"),
]


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def spread(values, fmt):
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    med = fmt(statistics.median(vals))
    if len(vals) == 1:
        return med
    return f"{med} [{fmt(min(vals))}-{fmt(max(vals))}]"


def f_rps(v):
    return f"{v / 1000:.1f}k"


def f_us(v):
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"


def f_ratio(v):
    return f"{v:.2f}"


def f_conns(v):
    return f"{v:.3f}"


def f_pct(v):
    return f"{v:.3f}"


def load(path):
    with open(path, newline="") as fh:
        lines = [line for line in fh if not line.startswith("#") and line.strip()]
    return list(csv.DictReader(lines, delimiter="\t"))


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) == 2 else 2
    path = sys.argv[1]
    rows = load(path)
    if not rows:
        print(f"{path}: no results")
        return 1
    with open(path) as fh:
        for line in fh:
            if line.startswith("#"):
                print(line.rstrip())

    # (layout, mode, conns) -> round -> proxy -> row
    by = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        mode = r.get("mode") or "keepalive"
        by[(r["layout"], mode, int(r["conns"]))][r["round"]][r["proxy"]] = r

    header = ["proxy", "req/s", "p50 us", "p99 us", "CPU us/req", "added us/req",
              "x nginx", "x direct", "up conns/req", "errors"]
    for (layout, mode, conns) in sorted(by, key=lambda k: (k[0], k[1] != "keepalive", k[2])):
        rounds = by[(layout, mode, conns)]
        proxies = sorted({p for rr in rounds.values() for p in rr},
                         key=lambda p: ORDER.index(p) if p in ORDER else len(ORDER))
        table = [header]
        for p in proxies:
            rps, p50, p99, cpu, added, x_nginx, x_direct, up_conns = ([] for _ in range(8))
            errors = 0
            failed = 0
            for rr in rounds.values():
                r = rr.get(p)
                if r is None:
                    continue
                v = num(r["rps"])
                if v is None:
                    failed += 1
                    continue
                rps.append(v)
                p50.append(num(r["p50_us"]))
                p99.append(num(r["p99_us"]))
                cpu.append(num(r["proxy_cpu_us_per_req"]))
                up_conns.append(num(r.get("upstream_conns_per_req")))
                errors += int(num(r["non2xx"]) or 0) + int(num(r["socket_errors"]) or 0)
                d = num(rr.get("direct", {}).get("rps"))
                n = num(rr.get("nginx", {}).get("rps"))
                if d and p != "direct":
                    added.append(1e6 / v - 1e6 / d)
                if d:
                    x_direct.append(v / d)
                if n:
                    x_nginx.append(v / n)
            err = str(errors) + (f" ({failed} runs failed)" if failed else "")
            table.append([p, spread(rps, f_rps), spread(p50, f_us), spread(p99, f_us),
                          spread(cpu, f_us), spread(added, f_us), spread(x_nginx, f_ratio),
                          spread(x_direct, f_ratio), spread(up_conns, f_conns), err])
        n_rounds = len(rounds)
        what = "connections" if mode == "keepalive" else "connections, a new one per request"
        print(f"\n== layout {layout}, {conns} {what}, {n_rounds} round(s): "
              f"median [min-max] ==")
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            print("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                            for i, cell in enumerate(row)).rstrip())
        for a, b in PAIRS:
            if a not in proxies or b not in proxies:
                continue
            ratios = {"rps": [], "proxy_cpu_us_per_req": [], "p99_us": []}
            for rr in rounds.values():
                ra, rb = rr.get(a), rr.get(b)
                if ra is None or rb is None:
                    continue
                for key, vals in ratios.items():
                    x, y = num(ra[key]), num(rb[key])
                    if x is not None and y:
                        vals.append(x / y)
            print(f"  {a} / {b} (paired by round): "
                  f"req/s {spread(ratios['rps'], f_pct)}, "
                  f"CPU us/req {spread(ratios['proxy_cpu_us_per_req'], f_pct)}, "
                  f"p99 {spread(ratios['p99_us'], f_pct)}")
    print("\nCPU us/req: proxy's own CPU per request (direct: the upstream's); added us/req: "
          "1e6/rps - 1e6/rps_direct; x nginx / x direct: req/s ratios within the same round.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

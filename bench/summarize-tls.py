#!/usr/bin/env python3
"""Summarise a bench/tls results file (TSV): one table per certificate and scenario, one row per
proxy, each figure as median [min-max] over the interleaved rounds.

Usage: bench/summarize-tls.py bench/results/<file>-tls.tsv

Columns:
  ops/s        handshakes (full, resumed: connections the client completed) or requests (keepalive:
               wrk's) per wall-clock second; drifts with the machine, compare within a table
  CPU us/op    the proxy's own utime+stime (all threads, all processes) per operation: the
               primary figure
  ops/CPU-s    1e6 / CPU us/op: operations per CPU-second of the proxy
  x nginx      nginx's CPU us/op / the proxy's, paired by round: the proxy's operations per
               CPU-second relative to nginx's (likewise x haproxy, and x strait-base when
               bench/tls --base-bin ran)
  resumed      connections the client reports resumed / all it made, over the rounds
  p99 us       wrk --latency (keepalive only; shared-core latency, not a target)
  errors       failed connections or non-200 answers (handshake clients), or wrk's non-2xx + socket
               errors, summed over the rounds
"""
import csv
import statistics
import sys
from collections import defaultdict

ORDER = ["strait-base", "strait", "nginx", "haproxy"]
SCEN = {"full": "new full handshakes, one request each",
        "resumed": "resumed handshakes, one request each",
        "keepalive": "keep-alive requests over TLS (wrk)"}


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


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    header, lines = [], []
    with open(sys.argv[1]) as fh:
        for line in fh:
            (header if line.startswith("#") else lines).append(line.rstrip("\n"))
    rows = list(csv.DictReader(lines, delimiter="\t"))
    for h in header:
        print(h)
    groups = defaultdict(lambda: defaultdict(list))  # (cert, scenario, n) -> proxy -> rows
    order = []
    for r in rows:
        key = (r["cert"], r["scenario"], r["n"])
        if key not in groups:
            order.append(key)
        groups[key][r["proxy"]].append(r)
    f0 = lambda v: f"{v:,.0f}"
    f1 = lambda v: f"{v:.1f}"
    f2 = lambda v: f"{v:.2f}"
    for key in order:
        cert, scen, n = key
        per = groups[key]
        what = "connections" if scen == "keepalive" else "client processes"
        print(f"\n{cert}: {SCEN.get(scen, scen)}, {what} = {n}")
        peers = ["nginx", "haproxy"] + (["strait-base"] if "strait-base" in per else [])
        cols = ["proxy", "ops/s", "CPU us/op", "ops/CPU-s"] + [f"x {q}" for q in peers] + ["resumed", "p99 us", "errors"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        cpu_by_round = {p: {r["round"]: num(r["cpu_us_per_op"]) for r in per[p]} for p in per}
        for p in sorted(per, key=lambda x: ORDER.index(x) if x in ORDER else 99):
            rs = per[p]
            cpu = [num(r["cpu_us_per_op"]) for r in rs]
            ratios = {}
            for peer in peers:
                vals = []
                for r in rs:
                    mine, theirs = num(r["cpu_us_per_op"]), cpu_by_round.get(peer, {}).get(r["round"])
                    if mine and theirs:
                        vals.append(theirs / mine)
                ratios[peer] = spread(vals, f2)
            res = [int(r["resumed"]) for r in rs if r["resumed"] not in ("NA", "")]
            new = [int(r["new"]) for r in rs if r["new"] not in ("NA", "")]
            resumed = f"{sum(res)}/{sum(res) + sum(new)}" if res else "-"
            if res and sum(res) + sum(new) > 0:
                resumed += f" ({100 * sum(res) / (sum(res) + sum(new)):.1f}%)"
            errors = 0
            for r in rs:
                e = r["errors"]
                errors += 1 if e == "failed" else int(num(e) or 0)
            print("| " + " | ".join([
                p,
                spread([num(r["ops_per_s"]) for r in rs], f0),
                spread(cpu, f1),
                spread([1e6 / c if c else None for c in cpu], f0),
                *[ratios[q] for q in peers],
                resumed,
                spread([num(r["p99_us"]) for r in rs], f0) if scen == "keepalive" else "-",
                str(errors),
            ]) + " |")


if __name__ == "__main__":
    main()

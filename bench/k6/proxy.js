// bench/k6/proxy.js — the bench/run scenario for k6: a fixed number of virtual users (one
// keep-alive connection each, like wrk's connections) sending a small GET to a proxy in front of
// an upstream that answers `200 hello`.
//
// k6 is NOT installable on our machines (it is not in the package registries we can reach), so
// this script has never been run here: it is kept correct by reading, against the k6 docs
// (k6/http, constant-vus executor, checks, thresholds). bench/run with wrk is the reference
// measurement; use this one where k6 exists, e.g. to cross-check wrk's figures.
//
// Run (start the servers first: `bench/run --serve` keeps them up and prints their URLs):
//   k6 run -e TARGET=http://127.0.0.1:18080/ -e VUS=64 bench/k6/proxy.js
// Options (environment, all optional):
//   TARGET    URL to GET                    (default http://127.0.0.1:18080/, Strait)
//   VUS       virtual users = connections   (default 64; bench/run uses 16, 64 and 256)
//   DURATION  timed duration                (default 10s)
//   P99_MS    p(99) latency threshold in ms (default 50; generous: latency on a shared core
//             is not a target, this only catches stalls)
//   BODY      expected response body        (default "hello")
//
// k6 costs far more CPU per request than wrk: on a 2-core machine it saturates well below the
// proxies, so compare proxies with k6 only at equal settings, side by side, and prefer
// bench/run's "CPU us/req" for ranking.

import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

const TARGET = __ENV.TARGET || 'http://127.0.0.1:18080/';
const VUS = parseInt(__ENV.VUS || '64', 10);
const DURATION = __ENV.DURATION || '10s';
const P99_MS = parseInt(__ENV.P99_MS || '50', 10);
const BODY = __ENV.BODY === undefined ? 'hello' : __ENV.BODY;

// Only loopback targets: load tests must never leave the machine.
if (!/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\//.test(TARGET)) {
  throw new Error(`TARGET must be an http://127.x.x.x, localhost or [::1] URL, got ${TARGET}`);
}

const badStatus = new Counter('bad_status');

export const options = {
  // No per-iteration sleep: each VU sends its next request as soon as the last one completes,
  // on the same keep-alive connection (k6 reuses connections within a VU by default).
  scenarios: {
    proxy: {
      executor: 'constant-vus',
      vus: VUS,
      duration: DURATION,
      gracefulStop: '5s',
    },
  },
  // Don't keep response bodies other than for the check below; skip TLS and redirects.
  discardResponseBodies: BODY === '',
  maxRedirects: 0,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'max'],
  thresholds: {
    // Errors: like bench/run's "Non-2xx" and "socket errors" columns, there must be none.
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    bad_status: ['count==0'],
    http_req_duration: [`p(99)<${P99_MS}`],
  },
};

const params = {
  headers: { 'User-Agent': 'strait-bench-k6' },
  tags: { name: 'proxy-get' }, // one metric series whatever the URL
};

export default function () {
  const res = http.get(TARGET, params);
  const ok = check(res, {
    'status is 200': (r) => r.status === 200,
    'body is as expected': (r) => BODY === '' || r.body === BODY,
  });
  if (!ok) {
    badStatus.add(1);
  }
}

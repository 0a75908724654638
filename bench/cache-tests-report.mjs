// bench/cache-tests-report.mjs: classify, summarise and compare results of the http-tests/cache-tests
// suite (https://github.com/http-tests/cache-tests). Used by bench/cache-tests; also usable alone.
//
//   node bench/cache-tests-report.mjs classify SUITE_DIR RAW.json [META.json] > results.json
//   node bench/cache-tests-report.mjs summary RESULTS.json
//   node bench/cache-tests-report.mjs diff A.json B.json [SUITE_DIR]
//
// RAW.json is what the suite's `node test-engine/cli.mjs` prints: { test id: true | [kind, message] }.
// RESULTS.json (written by `classify`) is self-contained: every test's classification, kind, name
// and raw result, plus the counts and whatever META.json held (proxy, version, config), so two
// runs can be compared without the suite. `diff` also takes raw files (e.g. the suite's own
// results/nginx.json), which it classifies with SUITE_DIR (or $CACHE_TESTS_DIR).
//
// How a test is classified: exactly as the suite's own report (cache-tests.fyi) does, by calling
// its determineTestResult(testSuites, id, results, honorDependencies = true) from
// test-engine/lib/results.mjs. Tests with browser_only set are skipped (the suite's runner does
// not run them against a proxy); cdn_only tests are run and counted, as the runner does. Per
// test `kind` (tests/*.mjs):
//   required, or no kind   a MUST of RFC 9111/9110:          passed -> pass, failed -> fail
//   optimal                a SHOULD / what a good cache does: passed -> pass, failed -> optional_fail
//   check                  behaviour the RFC leaves open:    passed -> yes,  failed -> no
// whatever the kind:
//   setup_fail       the test's own precondition failed (e.g. an earlier request was not answered
//                    as the test needs), so its assertion is not judged
//   dependency_fail  a test listed in its depends_on did not pass (pass or yes): not judged
//   harness_fail     the request was aborted (time-out) or the harness broke
//   retry            the suite asks for the test to be run again
// The suite's published score ("nginx: 158 pass / 33 fail") is the count of pass and fail:
// pass includes optimal tests passed, fail is only required (must) tests failed and judged.
// The must-fail list printed by `summary` is every test classified fail.
import fs from 'fs'
import path from 'path'
import { pathToFileURL } from 'url'

const PASSING = new Set(['pass', 'yes'])
const ORDER = ['pass', 'fail', 'optional_fail', 'yes', 'no', 'setup_fail', 'dependency_fail',
  'harness_fail', 'retry', 'untested']

function die (msg) {
  console.error(`cache-tests-report: ${msg}`)
  process.exit(2)
}

async function loadSuite (dir) {
  if (!dir) die('needs the cache-tests suite directory (argument or $CACHE_TESTS_DIR)')
  const abs = path.resolve(dir)
  const tests = (await import(pathToFileURL(path.join(abs, 'tests/index.mjs')).href)).default
  const lib = await import(pathToFileURL(path.join(abs, 'test-engine/lib/results.mjs')).href)
  return { tests, lib, dir: abs }
}

function classify (suite, raw) {
  const { tests, lib } = suite
  const names = Object.fromEntries(Object.entries(lib.resultTypes).map(([k, v]) => [v, k]))
  const out = {}
  for (const group of tests) {
    for (const t of group.tests) {
      if (t.browser_only === true) continue
      const type = lib.determineTestResult(tests, t.id, raw, true)
      const result = names[type]
      if (result === undefined) throw new Error(`unknown result type for ${t.id}`)
      out[t.id] = {
        result,
        kind: t.kind || 'required',
        must: (t.kind || 'required') === 'required',
        group: group.id,
        name: t.name,
        depends_on: t.depends_on,
        cdn_only: t.cdn_only === true || undefined,
        raw: raw[t.id]
      }
    }
  }
  return out
}

function count (tests) {
  const c = Object.fromEntries(ORDER.map(k => [k, 0]))
  const byKind = {}
  for (const t of Object.values(tests)) {
    c[t.result] = (c[t.result] || 0) + 1
    byKind[t.kind] ??= {}
    byKind[t.kind][t.result] = (byKind[t.kind][t.result] || 0) + 1
  }
  return { all: c, by_kind: byKind, total: Object.keys(tests).length }
}

function readJson (file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    die(`${file}: ${e.message}`)
  }
}

// A results file written by `classify`, or a raw one (classified here with the suite).
async function loadResults (file, suiteDir) {
  const data = readJson(file)
  if (data && data.format === 'strait-cache-tests/1') return data
  const suite = await loadSuite(suiteDir)
  const tests = classify(suite, data)
  return { format: 'strait-cache-tests/1', proxy: path.basename(file), tests, counts: count(tests) }
}

function oneLine (v, max = 110) {
  if (v === true) return 'ok'
  if (v === undefined) return 'not run'
  let s = Array.isArray(v) ? v.join(': ') : JSON.stringify(v)
  s = s.replace(/\s+/g, ' ')
  return s.length > max ? s.slice(0, max - 1) + '…' : s
}

function label (r) {
  return `${r.proxy || '?'}${r.proxy_version ? ` (${r.proxy_version})` : ''}`
}

function summary (r) {
  const c = r.counts
  const lines = []
  lines.push(`cache-tests against ${label(r)}${r.suite_commit ? `, suite commit ${r.suite_commit}` : ''}${r.date ? `, ${r.date}` : ''}`)
  lines.push(`${c.total} tests (browser-only tests skipped)`)
  lines.push(`score: ${c.all.pass} pass / ${c.all.fail} fail / ${c.all.optional_fail} optional-fail` +
    `   (checks: ${c.all.yes} yes / ${c.all.no} no; not judged: ${c.all.setup_fail} setup-fail, ` +
    `${c.all.dependency_fail} dependency-fail, ${c.all.harness_fail} harness-fail, ${c.all.retry} retry)`)
  for (const kind of ['required', 'optimal', 'check']) {
    const k = c.by_kind[kind] || {}
    const parts = ORDER.filter(x => k[x]).map(x => `${x} ${k[x]}`)
    lines.push(`  ${kind.padEnd(8)} ${parts.join(', ')}`)
  }
  const fails = Object.entries(r.tests).filter(([, t]) => t.result === 'fail')
  lines.push('')
  lines.push(`must-level failures (kind required, judged and failed): ${fails.length}`)
  for (const [id, t] of fails) {
    lines.push(`  ${id}  [${t.group}] ${t.name}`)
    lines.push(`      ${oneLine(t.raw)}`)
  }
  const hidden = Object.entries(r.tests).filter(([, t]) => t.must && !PASSING.has(t.result) && t.result !== 'fail')
  if (hidden.length) {
    lines.push('')
    lines.push(`required tests not judged (setup, dependency or harness): ${hidden.length}`)
    for (const [id, t] of hidden) lines.push(`  ${id}  ${t.result}`)
  }
  return lines.join('\n')
}

function diff (a, b) {
  const lines = []
  const ids = [...new Set([...Object.keys(a.tests), ...Object.keys(b.tests)])].sort()
  const section = (x, y, title) => {
    const rows = ids.filter(id => PASSING.has(x.tests[id]?.result) && !PASSING.has(y.tests[id]?.result))
    lines.push(`${title}: ${rows.length}`)
    for (const id of rows) {
      const t = x.tests[id] || y.tests[id]
      const other = y.tests[id]
      lines.push(`  ${id}  kind=${t.kind}  ${label(y)}: ${other ? other.result : 'absent'}  [${t.group}] ${t.name}`)
      if (other && other.raw !== undefined && other.raw !== true) lines.push(`      ${oneLine(other.raw)}`)
    }
    lines.push('')
  }
  lines.push(`A = ${label(a)}: ${a.counts.all.pass} pass / ${a.counts.all.fail} fail / ${a.counts.all.optional_fail} optional-fail`)
  lines.push(`B = ${label(b)}: ${b.counts.all.pass} pass / ${b.counts.all.fail} fail / ${b.counts.all.optional_fail} optional-fail`)
  lines.push('')
  section(a, b, `passed (pass or yes) by A, not by B`)
  section(b, a, `passed (pass or yes) by B, not by A`)
  const changed = ids.filter(id => a.tests[id] && b.tests[id] && a.tests[id].result !== b.tests[id].result &&
    !PASSING.has(a.tests[id].result) && !PASSING.has(b.tests[id].result))
  lines.push(`other differences (neither passes): ${changed.length}`)
  for (const id of changed) lines.push(`  ${id}  A ${a.tests[id].result}, B ${b.tests[id].result}`)
  return lines.join('\n')
}

const [cmd, ...args] = process.argv.slice(2)
if (cmd === 'classify') {
  const [suiteDir, rawFile, metaFile] = args
  if (!rawFile) die('usage: classify SUITE_DIR RAW.json [META.json]')
  const suite = await loadSuite(suiteDir)
  const raw = readJson(rawFile)
  const tests = classify(suite, raw)
  const meta = metaFile ? readJson(metaFile) : {}
  const extra = Object.keys(raw).filter(id => !(id in tests))
  const out = { format: 'strait-cache-tests/1', ...meta, counts: count(tests), tests }
  if (extra.length) out.unknown_ids = extra
  console.log(JSON.stringify(out, null, 1))
} else if (cmd === 'summary') {
  if (!args[0]) die('usage: summary RESULTS.json')
  console.log(summary(await loadResults(args[0], args[1] || process.env.CACHE_TESTS_DIR)))
} else if (cmd === 'diff') {
  if (args.length < 2) die('usage: diff A.json B.json [SUITE_DIR]')
  const suiteDir = args[2] || process.env.CACHE_TESTS_DIR
  console.log(diff(await loadResults(args[0], suiteDir), await loadResults(args[1], suiteDir)))
} else {
  die('usage: classify SUITE_DIR RAW.json [META.json] | summary RESULTS.json | diff A.json B.json [SUITE_DIR]')
}

'use strict';
// Compatibility suite: every scenario in compat/ is a cluster program (primary and worker in one
// file) that prints deterministic lines. Each one runs under node:cluster and, when the addon
// loads, under corral (`CORRAL_COMPAT_MODULE=<abs path of ../index.js>`); both runs must match
// compat/expected/<name>.txt, recorded from node:cluster, and exit with the expected code.
//
//   node --test bindings/node/test/                     run it
//   CORRAL_COMPAT_BLESS=1 node --test bindings/node/test/compat.test.js
//                                                       rewrite the expectations from node:cluster
//                                                       (compat/expected/<name>.node<major>.txt
//                                                       instead, where one exists for this major)
//   CORRAL_COMPAT_REQUIRE_ADDON=1 ...                   fail (not skip) the corral runs when the
//                                                       addon does not load
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');

const COMPAT_DIR = path.join(__dirname, 'compat');
const EXPECTED_DIR = path.join(COMPAT_DIR, 'expected');
const CORRAL_INDEX = path.resolve(__dirname, '..', 'index.js');
// Each scenario arms its own 15-20 s timeout (prints TIMEOUT, exits 99); this one only catches a
// primary that cannot even do that, or workers that outlive it (they hold its stdout open).
const RUN_TIMEOUT_MS = 30_000;
// Every scenario exits by itself with code 0 unless listed here.
const EXIT_CODES = {};

const BLESS = process.env.CORRAL_COMPAT_BLESS === '1';
const REQUIRE_ADDON = process.env.CORRAL_COMPAT_REQUIRE_ADDON === '1';

const scenarios = fs.readdirSync(COMPAT_DIR)
  .filter((f) => f.endsWith('.js'))
  .map((f) => path.basename(f, '.js'))
  .sort();

const helpers = require('./helpers');

const childEnv = (extra) => helpers.childEnv(extra, ['CORRAL_COMPAT_MODULE']);
const { probeCorral } = helpers;

// Runs one scenario as its own process group (killed and reaped when the test ends).
function runScenario(t, name, extraEnv) {
  return helpers.runGroup(t, path.join(COMPAT_DIR, `${name}.js`), [], {
    cwd: COMPAT_DIR,
    env: childEnv(extraEnv),
    timeoutMs: RUN_TIMEOUT_MS,
  });
}

// expected/<name>.node<major>.txt, when present, replaces expected/<name>.txt on that Node major:
// for a scenario where node:cluster itself behaves differently between the majors corral claims
// (reuse-port: Node 20 has no reusePort). corral must match node:cluster of the Node it runs on.
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
function expectationPath(name) {
  const perMajor = path.join(EXPECTED_DIR, `${name}.node${NODE_MAJOR}.txt`);
  return fs.existsSync(perMajor) ? perMajor : path.join(EXPECTED_DIR, `${name}.txt`);
}

// Where node:cluster itself falls short of a scenario's claim on some Node majors, its run may
// print `actual` in place of the claimed line; corral's runs never may. Each entry says why.
// - rolling-restart, Node 26+: an http server's close() destroys a connection whose first
//   request has not been read yet (idle from Node 26 on), and node:cluster's worker closes its
//   server the moment the disconnect request arrives, possibly right after the primary handed it
//   a connection: 2 of 20 runs lost a request (ECONNRESET). corral's worker waits for such
//   connections' first bytes before it closes (lib/child.js, whenUnreadConnectionsRead).
const ANCHOR_SHORTFALLS = {
  'rolling-restart': {
    fromMajor: 26,
    claimed: 'failed 0',
    actual: /^failed [1-9]\d* \((?:request|response) ECONNRESET(?:, (?:request|response) ECONNRESET)*\)$/,
  },
};

// The anchor's stdout with a known shortfall (ANCHOR_SHORTFALLS) put back to the claimed line,
// reported as a diagnostic so the run still shows what node:cluster did.
function excuseAnchorShortfall(t, name, stdout) {
  const known = ANCHOR_SHORTFALLS[name];
  if (!known || NODE_MAJOR < known.fromMajor) return stdout;
  return stdout.split('\n').map((line) => {
    if (!known.actual.test(line)) return line;
    t.diagnostic(`node:cluster ${process.version} fell short (known, see ANCHOR_SHORTFALLS): ${line}`);
    return known.claimed;
  }).join('\n');
}

async function checkScenario(t, name, { env = {}, bless = false, anchor = false } = {}) {
  const expectedPath = expectationPath(name);
  const expectedCode = EXIT_CODES[name] ?? 0;
  const r = await runScenario(t, name, env);
  t.diagnostic(`${name}: ${r.ms} ms`);
  if (r.stderr) t.diagnostic(`stderr:\n${r.stderr}`);
  assert.ifError(r.spawnError);
  if (r.timedOut) {
    const what = r.exit === null
      ? 'the primary did not exit'
      : `the primary exited (code ${r.exit.code}, signal ${r.exit.signal}) but its stdout/stderr stayed open (a worker, or a child of one, outlived it)`;
    assert.fail(`${name}: not finished after ${RUN_TIMEOUT_MS} ms: ${what}. stdout so far:\n${r.stdout}`);
  }
  const stdout = anchor ? excuseAnchorShortfall(t, name, r.stdout) : r.stdout;
  if (bless && r.exit.code === expectedCode && r.exit.signal === null && r.stderr === '') {
    fs.mkdirSync(EXPECTED_DIR, { recursive: true });
    fs.writeFileSync(expectedPath, stdout);
    t.diagnostic(`blessed ${path.relative(process.cwd(), expectedPath)}`);
  }
  if (!fs.existsSync(expectedPath)) {
    assert.fail(`no expectation ${expectedPath}: record it from node:cluster with CORRAL_COMPAT_BLESS=1, ` +
      `then read it. This run printed:\n${r.stdout}`);
  }
  const expected = fs.readFileSync(expectedPath, 'utf8');
  // Line arrays give a readable diff on failure.
  assert.deepStrictEqual(
    { exitCode: r.exit.code, signal: r.exit.signal, stdout: stdout.split('\n') },
    { exitCode: expectedCode, signal: null, stdout: expected.split('\n') },
  );
  assert.strictEqual(r.stderr, '', `${name} wrote to stderr`);
}

// corral runs twice: workers receive on the JS thread's loop (the default) and on a native
// thread (CORRAL_NODE_RECV=thread, the fallback for hosts without libuv symbols).
const CORRAL_RUNS = [
  ['corral', {}],
  ['corral, receive thread', { CORRAL_NODE_RECV: 'thread' }],
];

for (const name of scenarios) {
  test(name, async (t) => {
    await t.test('node:cluster', (t) => checkScenario(t, name, { bless: BLESS, anchor: true }));
    for (const [label, env] of CORRAL_RUNS) {
      await t.test(label, async (t) => {
        const probe = probeCorral();
        if (probe.broken) assert.fail(`corral addon does not load: ${probe.broken}`);
        if (!probe.ok) {
          if (REQUIRE_ADDON) assert.fail(`corral addon not built: ${probe.reason}`);
          t.skip(`corral addon not built: ${probe.reason}`);
          return;
        }
        await checkScenario(t, name, { env: { ...env, CORRAL_COMPAT_MODULE: CORRAL_INDEX } });
      });
    }
  });
}

// node:cluster drops readableAll/writableAll under SCHED_NONE (its shared handle is bound
// without them), so listen-options leaves the mode out of that run's comparison: corral's is
// checked here.
test('listen-options under SCHED_NONE: corral applies readableAll/writableAll', async (t) => {
  if (!helpers.addonOrSkip(t)) return;
  const r = await runScenario(t, 'listen-options', {
    CORRAL_COMPAT_MODULE: CORRAL_INDEX,
    LISTEN_OPTIONS_POLICY: 'none',
    LISTEN_OPTIONS_PRINT_MODE: '1',
  });
  assert.ifError(r.spawnError);
  assert.strictEqual(r.timedOut, false, `listen-options did not finish:\n${r.stdout}`);
  assert.deepStrictEqual(r.exit, { code: 0, signal: null }, r.stdout);
  assert.strictEqual(r.stderr, '');
  // As listen-options' rr run under node:cluster: libuv 1.51 (Node 22.23) on sets the mode to
  // exactly 0o666, before it added the bits to 0o755 (umask 022).
  const [uvMajor, uvMinor] = process.versions.uv.split('.').map(Number);
  const mode = uvMajor > 1 || uvMinor >= 51 ? '666' : '777';
  assert.ok(r.stdout.split('\n').includes(`none: B: mode ${mode}`), r.stdout);
});

test('every expectation file belongs to a scenario', () => {
  const orphans = fs.readdirSync(EXPECTED_DIR)
    .filter((f) => f.endsWith('.txt') && !scenarios.includes(f.replace(/(\.node\d+)?\.txt$/, '')));
  assert.deepStrictEqual(orphans, []);
});

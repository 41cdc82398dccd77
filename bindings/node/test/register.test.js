'use strict';
// corral/register with real libraries that require('cluster') themselves: each program in
// register/ is an ordinary node:cluster program (real workers, real sockets on 127.0.0.1 port 0).
// It runs twice:
//   - 'node:cluster': `node program.js`, the control, which shows the checks hold for
//     node:cluster's own behaviour;
//   - 'corral': `node --require corral/register program.js` (or NODE_OPTIONS, or
//     `--import corral/register` for the ES module), which must print the same, but that the
//     primary's cluster module is corral's and every worker was started by corral (it saw
//     CORRAL_WORKER_ID).
// `corral/register` resolves through the package's own name (bindings/node/package.json is the
// package scope of test/register/), as it would from an app's node_modules. The libraries are
// this package's devDependencies (tests/node.rs runs `npm ci` when node_modules is missing).
//
//   node --test bindings/node/test/register.test.js
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const helpers = require('./helpers');

const DIR = path.join(__dirname, 'register');
// Each program arms its own 20 s timeout (prints TIMEOUT and where, exits 99); this one only
// catches a primary that cannot even do that, or workers that outlive it.
const RUN_TIMEOUT_MS = 40_000;

const CASES = [
  { name: 'prom-client AggregatorRegistry sums a counter over the workers', script: 'prom-client.js',
    lines: ['aggregated: corral_register_test_total 30'] },
  { name: 'prom-client from an ES module (--import corral/register)', script: 'prom-client.mjs', hook: ['--import', 'corral/register'],
    lines: ['aggregated: corral_register_test_total 30'] },
  { name: '@socket.io/cluster-adapter broadcasts across workers', script: 'socketio-adapter.js',
    lines: ['client of worker 1 got: hello everyone (from worker 1)', 'client of worker 2 got: hello everyone (from worker 1)'] },
  { name: "@socket.io/sticky long-polling sessions with serialization 'advanced'", script: 'socketio-sticky.js',
    lines: ['sessions: 4 of 4 answered 3 times, each by one worker'] },
  { name: 'express in the workers', script: 'web-servers.js', args: ['express'],
    lines: ['express: 10 of 10 answered by a worker'] },
  { name: 'fastify in the workers', script: 'web-servers.js', args: ['fastify'],
    lines: ['fastify: 10 of 10 answered by a worker'] },
  // Through NODE_OPTIONS: the workers inherit it with the environment.
  { name: 'ws in the workers (NODE_OPTIONS=--require=corral/register)', script: 'web-servers.js', args: ['ws'],
    env: { NODE_OPTIONS: '--require=corral/register' }, lines: ['ws: 10 of 10 answered by a worker'] },
];

function run(t, c, onCorral) {
  const hook = onCorral && !c.env ? c.hook || ['--require', 'corral/register'] : [];
  return helpers.runGroup(t, path.join(DIR, c.script), c.args || [], {
    cwd: DIR,
    env: helpers.childEnv(onCorral ? c.env : {}),
    execArgv: hook,
    timeoutMs: RUN_TIMEOUT_MS,
  });
}

async function check(t, c, onCorral) {
  const r = await run(t, c, onCorral);
  t.diagnostic(`${c.script} ${(c.args || []).join(' ')}: ${r.ms} ms`);
  const shown = `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
  assert.ifError(r.spawnError);
  assert.ok(!r.timedOut, `${c.script}: not finished after ${RUN_TIMEOUT_MS} ms. ${shown}`);
  assert.deepStrictEqual(r.exit, { code: 0, signal: null }, `${c.script} exited ${JSON.stringify(r.exit)}. ${shown}`);
  assert.strictEqual(r.stderr, '', `${c.script} wrote to stderr. ${shown}`);
  const expected = [
    `runtime: ${onCorral ? 'corral' : 'node:cluster'}`,
    `workers on corral: ${onCorral ? '1,2' : 'none'}`,
    ...c.lines,
    'disconnected',
  ];
  assert.deepStrictEqual(r.stdout.trimEnd().split('\n'), expected, `${c.script}: ${shown}`);
}

for (const c of CASES) {
  test(c.name, async (t) => {
    await t.test('node:cluster', (t) => check(t, c, false));
    await t.test('corral', async (t) => {
      if (!helpers.addonOrSkip(t)) return;
      await check(t, c, true);
    });
  });
}

test('every program in register/ is tested', () => {
  const programs = fs.readdirSync(DIR).filter((f) => /\.m?js$/.test(f) && f !== 'common.js').sort();
  assert.deepStrictEqual(programs, [...new Set(CASES.map((c) => c.script))].sort());
});

test('corral/register is exported for require and import, and every file it loads is published', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));
  assert.deepStrictEqual(pkg.exports['./register'], { import: './register.mjs', require: './register.js' });
  for (const file of ['register.js', 'register.mjs', 'lib/']) {
    assert.ok(pkg.files.includes(file), `package.json "files" lacks ${file}`);
  }
});

// Every way a program asks for the cluster module gets corral's one instance, and the ES module
// has node:cluster's named exports.
test('every way of asking for the cluster module gets corral', async (t) => {
  if (!helpers.addonOrSkip(t)) return;
  const code = `
    const corral = require('corral');
    const asked = {
      "require('cluster')": require('cluster'),
      "require('node:cluster')": require('node:cluster'),
      "process.getBuiltinModule('cluster')": process.getBuiltinModule('cluster'),
      "process.getBuiltinModule('node:cluster')": process.getBuiltinModule('node:cluster'),
    };
    Promise.all([import('node:cluster'), import('cluster')]).then(([a, b]) => {
      asked["import('node:cluster')"] = a.default;
      asked["import('cluster')"] = b.default;
      for (const [how, got] of Object.entries(asked)) console.log(how + ': ' + (got === corral));
      console.log('isPrimary: ' + a.isPrimary + ', fork: ' + (a.fork === undefined ? 'missing' : typeof a.fork));
    });`;
  const nodeClusterNames = ['SCHED_NONE', 'SCHED_RR', 'Worker', 'disconnect', 'fork', 'isMaster', 'isPrimary', 'isWorker',
    'schedulingPolicy', 'settings', 'setupMaster', 'setupPrimary', 'workers', 'worker'];
  for (const hook of [['--require', 'corral/register'], ['--import', 'corral/register']]) {
    const r = await helpers.runNode(t, [...hook, '-e', code], { cwd: DIR, env: helpers.childEnv() });
    assert.strictEqual(r.code, 0, `${hook.join(' ')}: ${r.err}`);
    assert.deepStrictEqual(r.lines, [
      "require('cluster'): true", "require('node:cluster'): true",
      "process.getBuiltinModule('cluster'): true", "process.getBuiltinModule('node:cluster'): true",
      "import('node:cluster'): true", "import('cluster'): true",
      'isPrimary: true, fork: function',
    ], hook.join(' '));
    const names = await helpers.runNode(t, [...hook, '--input-type=module', '-e',
      "import * as c from 'node:cluster'; console.log(Object.keys(c).join(','))"], { cwd: DIR, env: helpers.childEnv() });
    const exported = names.lines[0].split(',');
    for (const name of nodeClusterNames) assert.ok(exported.includes(name), `${hook.join(' ')}: no export ${name} (${exported})`);
  }
});

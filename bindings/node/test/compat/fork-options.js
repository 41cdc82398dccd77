'use strict';
// Scenario: what fork() takes from its env argument and cluster.settings, which node:cluster
// passes to child_process.fork(): an env value that is undefined leaves the variable out (it
// does not become the string 'undefined', and one the primary's own environment has is not
// inherited), others become `${value}`; a null byte in a variable,
// an argument, execArgv or cwd throws ERR_INVALID_ARG_VALUE from fork() (the id is spent, no
// worker appears); cwd may be a file: URL or a Buffer, and anything else throws
// ERR_INVALID_ARG_TYPE from fork() instead of a worker that fails to start.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const os = require('node:os');
const { pathToFileURL } = require('node:url');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  const tmp = os.tmpdir();
  process.env.INHERITED = 'from the primary';
  const attempts = [
    ['a null byte in a value', () => cluster.fork({ X: 'a\0b' })],
    ['a null byte in a name', () => cluster.fork({ 'Y\0Z': 'v' })],
    ['a null byte in args', () => { cluster.setupPrimary({ args: ['ok', 'b\0d'] }); return cluster.fork(); }],
    ['a null byte in execArgv', () => { cluster.setupPrimary({ args: [], execArgv: ['--no\0pe'] }); return cluster.fork(); }],
    ['a null byte in cwd', () => { cluster.setupPrimary({ execArgv: [], cwd: '/no\0where' }); return cluster.fork(); }],
    ['cwd a number', () => { cluster.setupPrimary({ cwd: 5 }); return cluster.fork(); }],
  ];
  for (const [what, f] of attempts) {
    try {
      f();
      console.log(`${what}: forked`);
    } catch (e) {
      console.log(`${what}: ${e.name} ${e.code}: ${JSON.stringify(e.message)}`);
    }
  }
  console.log(`workers after the refused forks: [${Object.keys(cluster.workers)}]`);
  const run = (settings, env) => new Promise((resolve) => {
    cluster.setupPrimary(settings);
    const w = cluster.fork(env);
    w.on('message', (m) => console.log(`worker ${w.id}: ${JSON.stringify(m)}`));
    w.on('exit', (code) => {
      console.log(`worker ${w.id}: exit ${code}`);
      resolve();
    });
  });
  (async () => {
    await run({ cwd: pathToFileURL(tmp) }, { UNDEF: undefined, INHERITED: undefined, NUL: null, NUM: 5, BOOL: false, OBJ: {} });
    await run({ cwd: Buffer.from(tmp) }, {});
  })();
} else {
  const env = {};
  for (const k of ['UNDEF', 'INHERITED', 'NUL', 'NUM', 'BOOL', 'OBJ']) env[k] = k in process.env ? process.env[k] : '(unset)';
  process.send({ cwdIsTmp: process.cwd() === os.tmpdir(), env }, () => process.disconnect());
}

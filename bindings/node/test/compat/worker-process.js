'use strict';
// Scenario: worker.process in the primary is a ChildProcess, as child_process.fork() returns:
// instanceof ChildProcess, spawnfile the node binary and spawnargs [node, ...execArgv, exec,
// ...args] (what process monitors print), also for a worker whose spawn failed (a cwd that does
// not exist), whose 'error' carries spawnargs without the node binary.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const { ChildProcess } = require('node:child_process');
const path = require('node:path');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  const show = (a) => JSON.stringify(a).split(process.execPath).join('<node>').split(__dirname).join('<dir>');
  const describe = (w) => `instanceof ChildProcess ${w.process instanceof ChildProcess}, ` +
    `spawnfile is node ${w.process.spawnfile === process.execPath}, spawnargs ${show(w.process.spawnargs)}`;
  cluster.setupPrimary({ exec: __filename, execArgv: ['--no-warnings'], args: ['a', 'b'] });
  const w = cluster.fork();
  console.log(`worker 1: ${describe(w)}`);
  w.on('exit', (code) => {
    console.log(`worker 1: exit ${code}`);
    cluster.setupPrimary({ cwd: path.join(__dirname, 'no-such-dir'), args: [] });
    const f = cluster.fork();
    console.log(`worker 2 (spawn fails): ${describe(f)}`);
    f.on('error', (e) => console.log(`worker 2: 'error' ${e.code}, spawnargs ${show(e.spawnargs)}`));
  });
} else {
  process.disconnect();
}

'use strict';
// Scenario: cumulative setupPrimary(). cluster.settings starts as {}; each call builds a new
// settings object from the defaults, the previous settings and the options (unknown keys are
// kept); 'setup' is emitted on the next tick with that call's object; fork() calls it again
// ('setup' then 'fork'). The worker runs with the merged args, execArgv and its fork() env.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const path = require('node:path');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  const show = (s) => Object.keys(s).map((k) => `${k}=${k === 'exec' ? path.basename(s[k]) : JSON.stringify(s[k])}`).join(' ');

  console.log(`setupMaster is setupPrimary ${cluster.setupMaster === cluster.setupPrimary}`);
  console.log(`settings before: ${JSON.stringify(cluster.settings)}`);
  cluster.on('setup', (settings) => {
    console.log(`'setup' event: ${show(settings)} (is cluster.settings ${settings === cluster.settings})`);
  });
  cluster.on('fork', (w) => console.log(`'fork' event: worker ${w.id}`));

  console.log(`setupPrimary({ execArgv, args, custom }) returned ${cluster.setupPrimary({ execArgv: ['--no-warnings'], args: ['first'], custom: 'kept' })}`);
  const first = cluster.settings;
  console.log(`settings after call 1: ${show(first)}`);
  cluster.setupPrimary({ args: ['second', 'x'] });
  console.log(`settings after call 2: ${show(cluster.settings)} (new object ${cluster.settings !== first}, call 1 object unchanged: ${show(first)})`);

  setImmediate(() => {
    console.log('fork()');
    const w = cluster.fork({ FROM_FORK_ENV: 'yes' });
    console.log(`settings after fork: ${show(cluster.settings)}`);
    w.on('message', (msg) => {
      console.log(`worker: argv ${JSON.stringify(msg.argv)} execArgv ${JSON.stringify(msg.execArgv)} ` +
        `FROM_FORK_ENV=${msg.env} settings ${msg.settings}`);
      w.disconnect();
    });
  });
} else {
  process.send({
    argv: process.argv.slice(2),
    execArgv: process.execArgv,
    env: process.env.FROM_FORK_ENV,
    settings: JSON.stringify(cluster.settings),
  });
}

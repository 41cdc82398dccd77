'use strict';
// Scenario: fork() with settings the worker's process cannot start with. As child_process's
// spawn, a run-time error (a cwd that does not exist: ENOENT) does not throw: fork() returns a
// worker with no pid whose process emits 'error' (errno, code, syscall "spawn <node>", path,
// spawnargs) on the next tick, then 'close' and 'disconnect', never 'exit'; the worker is dead,
// leaves cluster.workers, and a send() reports ERR_IPC_CHANNEL_CLOSED. Other spawn errors (a
// cwd that is a file: ENOTDIR) throw from fork(), spending the worker id. An exec that is a
// directory or a bad execArgv flag is no spawn error: the worker's node fails (exit 1, exit 9).
// The primary then exits by itself.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const path = require('node:path');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  const node = (s) => String(s).split(process.execPath).join('<node>').split(__dirname).join('<dir>');
  const cases = [
    ['cwd missing', { cwd: path.join(__dirname, 'no-such-dir') }],
    ['cwd missing, silent', { cwd: path.join(__dirname, 'no-such-dir'), silent: true }],
    ['cwd is a file', { cwd: __filename }],
    ['exec is a directory', { exec: __dirname, silent: true }],
    ['execArgv has a bad flag', { execArgv: ['--no-such-flag'], silent: true }],
    ['good settings again', {}],
  ];
  (async () => {
    for (const [name, settings] of cases) {
      cluster.setupPrimary({ exec: __filename, execArgv: [], silent: false, cwd: undefined, ...settings });
      const lines = [];
      let w;
      try {
        w = cluster.fork();
      } catch (e) {
        console.log(`${name}: fork() throws ${e.code} syscall=${e.syscall} errno=${e.errno} "${e.message}"`);
        continue;
      }
      lines.push(`pid ${typeof w.process.pid}`);
      const stdio = () => `stdout ${w.process.stdout ? `ended=${w.process.stdout.readableEnded}` : 'null'}`;
      w.on('error', (e) => {
        lines.push(`worker 'error' ${e.code} errno=${e.errno} syscall=${node(e.syscall)} path=${node(e.path)} ` +
          `spawnargs=${node(JSON.stringify(e.spawnargs))} "${node(e.message)}"`);
        lines.push(`after 'error': dead=${w.isDead()} exitCode=${w.process.exitCode} connected=${w.isConnected()}`);
      });
      cluster.once('fork', (x) => lines.push(`cluster 'fork' ${x === w}`));
      // 'close' and 'online' are left out of the order: after a spawn error, 'close' comes before
      // or after 'disconnect' depending on the Node version, and a worker whose exec is a
      // directory comes online on Node 20, not on 26.
      let closed = 'no close';
      w.process.on('close', (code, signal) => (closed = `process 'close' ${code} ${signal}`));
      let stderr = '';
      if (w.process.stderr) w.process.stderr.on('data', (d) => (stderr += d));
      const done = new Promise((resolve) => {
        w.on('exit', (code, signal) => {
          lines.push(`'exit' ${code} ${signal}`);
          if (name === 'good settings again') resolve();
        });
        w.on('disconnect', () => {
          lines.push(`'disconnect' state=${w.state} in workers=${w.id in cluster.workers}`);
          // An 'exit' would come within this time; Node sends none after a spawn error.
          setTimeout(resolve, 200);
        });
      });
      await done;
      await new Promise((resolve) => w.send('anyone?', (err) => {
        lines.push(`send: ${err ? err.code : 'sent'}`);
        resolve();
      }));
      lines.push(closed, stdio());
      if (/Cannot find module/.test(stderr)) lines.push('stderr: Cannot find module');
      if (/bad option: --no-such-flag/.test(stderr)) lines.push('stderr: bad option: --no-such-flag');
      console.log(`${name}: worker ${w.id}, ${lines.join('; ')}`);
    }
  })();
} else {
  process.on('message', () => {});
  cluster.worker.disconnect();
}

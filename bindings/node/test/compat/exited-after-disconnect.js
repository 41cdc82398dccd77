'use strict';
// Scenario: worker.exitedAfterDisconnect for each way a worker can end. It is undefined until
// the end begins; true after worker.disconnect() (at once, in the primary) and after the worker's
// own cluster.worker.kill()/disconnect(); false after worker.kill() in the primary (which only
// sends the signal), after process.exit() and after a raw process.disconnect() in the worker.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');

// Worker i (id i+1) ends by ACTIONS[i]. "primary:" actions run in the primary, "worker:" ones
// in the worker, on the primary's order.
const ACTIONS = [
  'primary: worker.disconnect()',
  'primary: worker.kill()',
  "primary: worker.kill('SIGKILL')",
  'worker: cluster.worker.kill()',
  'worker: cluster.worker.disconnect()',
  'worker: process.exit(0)',
  'worker: process.disconnect()',
];

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  const info = new Map(); // id -> { action, lines }
  let ended = 0;

  for (const action of ACTIONS) {
    const w = cluster.fork();
    const lines = [`at fork: ${w.exitedAfterDisconnect}`];
    info.set(w.id, { action, lines, events: 0 });
    w.on('listening', () => {
      lines.push(`at listening: ${w.exitedAfterDisconnect}`);
      let ret;
      switch (action) {
        case 'primary: worker.disconnect()': ret = w.disconnect() === w ? 'the worker' : 'other'; break;
        case 'primary: worker.kill()': ret = w.kill(); break;
        case "primary: worker.kill('SIGKILL')": ret = w.kill('SIGKILL'); break;
        default: ret = w.send({ action });
      }
      lines.push(`right after the action (returned ${ret}): ${w.exitedAfterDisconnect}`);
    });
    // 'disconnect' and 'exit' can come in either order: record them apart.
    w.on('disconnect', () => {
      info.get(w.id).disconnect = `at 'disconnect': ${w.exitedAfterDisconnect}`;
      done();
    });
    w.on('exit', (code, signal) => {
      info.get(w.id).exit = `at 'exit': ${w.exitedAfterDisconnect} (code=${code} signal=${signal})`;
      done();
    });
  }

  function done() {
    if (++ended < 2 * ACTIONS.length) return;
    for (const [id, { action, lines, disconnect, exit }] of info) {
      console.log(`worker ${id} ended by ${action}`);
      for (const line of [...lines, disconnect, exit]) console.log(`  exitedAfterDisconnect ${line}`);
    }
  }
} else {
  const server = http.createServer((req, res) => res.end('ok'));
  server.listen(0, '127.0.0.1');
  process.on('message', ({ action }) => {
    switch (action) {
      case 'worker: cluster.worker.kill()': cluster.worker.kill(); break;
      case 'worker: cluster.worker.disconnect()': cluster.worker.disconnect(); break;
      case 'worker: process.exit(0)': process.exit(0); break;
      case 'worker: process.disconnect()': process.disconnect(); break;
    }
  });
}

'use strict';
// Scenario: when a worker leaves cluster.workers. fork() adds it at once (key = String(id)).
// worker.disconnect() in the primary removes it at once, before any event. Otherwise a worker
// stays in the map until it has both exited and disconnected: it is still there at the first of
// its 'exit'/'disconnect' events (which come in either order) and gone at the second.
// cluster.workers stays the same object; in a worker it is undefined.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');

const ACTIONS = [
  'primary: worker.disconnect()',
  'worker: process.exit(3)',
  "primary: worker.kill('SIGKILL')",
  'worker: cluster.worker.disconnect()',
];

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  const map = cluster.workers;
  const inMap = (w) => cluster.workers[w.id] === w;
  const info = new Map();
  let ended = 0;

  for (const action of ACTIONS) {
    const w = cluster.fork();
    const st = { action, lines: [`right after fork(): ${inMap(w)} (key ${JSON.stringify(Object.keys(cluster.workers).at(-1))})`], late: [] };
    info.set(w.id, st);
    w.on('online', () => st.lines.push(`at 'online': ${inMap(w)}`));
    w.on('message', (msg) => { st.workerSide = msg.workers; });
    w.on('listening', () => {
      st.lines.push(`at 'listening': ${inMap(w)}`);
      if (action === 'primary: worker.disconnect()') w.disconnect();
      else if (action === "primary: worker.kill('SIGKILL')") w.kill('SIGKILL');
      else w.send({ action });
      st.lines.push(`right after the action: ${inMap(w)}`);
    });
    for (const type of ['disconnect', 'exit']) {
      w.on(type, () => {
        st.late.push(inMap(w));
        if (++ended === 2 * ACTIONS.length) setImmediate(report);
      });
    }
  }

  function report() {
    for (const [id, st] of info) {
      console.log(`worker ${id} ended by ${st.action}; in cluster.workers:`);
      for (const line of st.lines) console.log(`  ${line}`);
      console.log(`  at its first 'exit'/'disconnect' event: ${st.late[0]}`);
      console.log(`  at its second 'exit'/'disconnect' event: ${st.late[1]}`);
    }
    console.log(`cluster.workers at the end ${JSON.stringify(Object.keys(cluster.workers))}, same object ${cluster.workers === map}`);
    console.log(`typeof cluster.workers in the workers: ${[...info.values()].map((st) => st.workerSide).join(',')}`);
  }
} else {
  process.on('message', ({ action }) => {
    if (action === 'worker: process.exit(3)') process.exit(3);
    if (action === 'worker: cluster.worker.disconnect()') cluster.worker.disconnect();
  });
  http.createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1', () => {
    process.send({ workers: typeof cluster.workers });
  });
}

'use strict';
// Scenario: the cluster.disconnect(cb) callback. With no workers, it is called on a later tick.
// With workers, cluster.disconnect() calls worker.disconnect() on each, which empties
// cluster.workers at once; the callback is then called (with no arguments) from inside the
// 'exit'/'disconnect' handling of the first worker to have both exited and disconnected, before
// that worker's second event is emitted: so not after every worker is gone.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');

const N = 3;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  // Part 1: no workers.
  let sync = true;
  const ret = cluster.disconnect(function () {
    console.log(`no workers: callback called, synchronously ${sync}, ${arguments.length} arguments`);
    part2();
  });
  sync = false;
  console.log(`no workers: cluster.disconnect() returned ${ret}`);

  function part2() {
    const events = new Map(); // id -> events seen, in the order seen
    const workers = [];
    let listening = 0;
    let atCallback = null;
    for (let i = 0; i < N; i++) {
      const w = cluster.fork();
      workers.push(w);
      events.set(w.id, []);
      w.on('listening', () => {
        if (++listening === N) disconnectAll();
      });
      for (const type of ['disconnect', 'exit']) {
        w.on(type, () => {
          events.get(w.id).push(type);
          if ([...events.values()].every((e) => e.length === 2)) setImmediate(report);
        });
      }
    }

    function disconnectAll() {
      cluster.disconnect(function () {
        const complete = [...events.values()].filter((e) => e.length === 2).length;
        const partial = [...events.values()].filter((e) => e.length === 1).length;
        atCallback = `${arguments.length} arguments, workers ${JSON.stringify(Object.keys(cluster.workers))}, ` +
          `workers with both events ${complete}, with one event at least ${partial >= 1}`;
      });
      console.log(`with workers: right after cluster.disconnect(): workers ${JSON.stringify(Object.keys(cluster.workers))}, ` +
        `exitedAfterDisconnect ${workers.map((w) => w.exitedAfterDisconnect).join(',')}`);
    }

    function report() {
      console.log(`with workers: callback ${atCallback === null ? 'not called' : `called: ${atCallback}`}`);
      for (const [id, e] of events) console.log(`worker ${id}: ${[...e].sort().join(', ')}`);
    }
  }
} else {
  http.createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1');
}

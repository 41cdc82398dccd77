'use strict';
// respawn: keep the cluster at full strength. When a worker dies unexpectedly the primary forks a
// replacement from its 'exit' handler; a worker that exits because it was told to (disconnect())
// has `worker.exitedAfterDisconnect === true` and is not replaced.
//
//   node respawn.js                  serve on PORT (default 8000); GET /crash kills the worker
//                                    that answers it, and a new one takes its place
//   PORT=0 node respawn.js --respawns 3
//       bounded: every worker crashes 300 ms after it starts listening (--crash-after-ms T to
//       change it); the primary replaces the first 3 that die, then stops respawning, prints
//       "respawned 3 workers" and shuts down with cluster.disconnect() (exit code 0).
//
// Real code should also slow down when workers keep dying (a backoff), or it will fork in a
// tight loop when a worker cannot even start.
//
// It is node:cluster code: replace require('corral') with require('node:cluster') and it runs
// the same.
const cluster = require('corral');
const { countOption, hardTimeout } = require('./support/bounded');
const http = require('node:http');
const os = require('node:os');

const PORT = Number(process.env.PORT ?? 8000);
// PORT=0 is how the tests run it: an ephemeral port, on loopback only.
const HOST = PORT === 0 ? '127.0.0.1' : undefined;
const RESPAWNS = countOption('--respawns'); // null: respawn forever
const CRASH_AFTER_MS = countOption('--crash-after-ms') ?? 300;

if (cluster.isPrimary) {
  const numWorkers = os.availableParallelism();
  console.log(`primary ${process.pid}: starting ${numWorkers} workers`);
  let stage = 'waiting for workers to crash';
  if (RESPAWNS !== null) hardTimeout(cluster, 20_000, () => stage);
  process.on('exit', (code) => console.log(`primary exiting (code ${code})`));

  let respawns = 0;
  let stopping = false;
  cluster.on('online', (worker) => console.log(`worker ${worker.id} online (pid ${worker.process.pid})`));
  cluster.on('exit', (worker, code, signal) => {
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (worker.exitedAfterDisconnect) {
      console.log(`worker ${worker.id} exited after disconnect (${how})`);
      return;
    }
    if (stopping || (RESPAWNS !== null && respawns >= RESPAWNS)) {
      console.log(`worker ${worker.id} died (${how}), not respawning`);
      if (!stopping) stop();
      return;
    }
    respawns++;
    console.log(`worker ${worker.id} died (${how}), respawning (${respawns}${RESPAWNS === null ? '' : `/${RESPAWNS}`})`);
    cluster.fork();
  });

  function stop() {
    stopping = true;
    stage = 'waiting for the workers to exit after cluster.disconnect()';
    console.log(`respawned ${respawns} workers`);
    console.log('cluster.disconnect()');
    cluster.disconnect();
  }

  for (let i = 0; i < numWorkers; i++) cluster.fork();
} else {
  const server = http.createServer((req, res) => {
    if (req.url === '/crash') {
      res.end(`worker ${cluster.worker.id} crashing\n`, () => process.exit(1));
      return;
    }
    res.end(`hello world from worker ${cluster.worker.id}\n`);
  });
  server.listen(PORT, HOST, () => {
    if (RESPAWNS === null) return;
    // The bug this primary survives. unref(): once the primary disconnects this worker (its
    // server closed), the pending crash does not keep it alive, and it exits with code 0.
    setTimeout(() => process.exit(1), CRASH_AFTER_MS).unref();
  });
}

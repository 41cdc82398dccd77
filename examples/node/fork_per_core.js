'use strict';
// fork_per_core: the classic cluster server. The primary starts one worker per core; every worker
// runs the same HTTP server on the same port, and incoming connections are spread across them.
//
//   node fork_per_core.js                    serve on PORT (default 8000) until Ctrl-C
//   PORT=0 node fork_per_core.js --requests 20
//       bounded: once every worker listens, the primary itself sends 20 GET requests, prints how
//       many each worker served, then cluster.disconnect() lets every process exit (code 0).
//
// It is node:cluster code: replace require('corral') with require('node:cluster') and it runs
// the same.
const cluster = require('corral');
const { get, countOption, hardTimeout } = require('./support/bounded');
const http = require('node:http');
const os = require('node:os');

const PORT = Number(process.env.PORT ?? 8000);
// PORT=0 is how the tests run it: an ephemeral port, on loopback only.
const HOST = PORT === 0 ? '127.0.0.1' : undefined;
const REQUESTS = countOption('--requests'); // null: serve until stopped

if (cluster.isPrimary) {
  const numWorkers = os.availableParallelism();
  console.log(`primary ${process.pid}: starting ${numWorkers} workers`);
  let stage = 'waiting for every worker to listen';
  if (REQUESTS !== null) hardTimeout(cluster, 20_000, () => stage);
  process.on('exit', (code) => console.log(`primary exiting (code ${code})`));

  cluster.on('online', (worker) => console.log(`worker ${worker.id} online (pid ${worker.process.pid})`));
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
  });

  let listening = 0;
  cluster.on('listening', (worker, address) => {
    if (++listening !== numWorkers) return;
    console.log(`all ${numWorkers} workers listening on port ${address.port}`);
    if (REQUESTS === null) return;
    stage = `sending ${REQUESTS} requests`;
    sendRequests(address.port, REQUESTS).then(() => {
      stage = 'waiting for the workers to exit after cluster.disconnect()';
      // Every worker closes its server, finishes what it is serving, and exits; then the primary
      // has nothing left to do and exits by itself.
      console.log('cluster.disconnect()');
      cluster.disconnect();
    });
  });

  for (let i = 0; i < numWorkers; i++) cluster.fork();
} else {
  // Workers share the port: all of them listen on it, the cluster hands out the connections.
  http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`hello world from worker ${cluster.worker.id}\n`);
  }).listen(PORT, HOST);
}

// Sends `count` GET requests one after the other, each on a new connection, and prints how many
// each worker answered.
async function sendRequests(port, count) {
  const served = new Map(Object.keys(cluster.workers).map((id) => [Number(id), 0]));
  let failed = 0;
  for (let i = 0; i < count; i++) {
    try {
      const body = await get(port, '/');
      const id = Number(/worker (\d+)/.exec(body)[1]);
      served.set(id, (served.get(id) ?? 0) + 1);
    } catch (err) {
      failed++;
      console.log(`request ${i + 1} failed: ${err.message}`);
    }
  }
  console.log(`sent ${count} requests: ${count - failed} ok, ${failed} failed`);
  for (const [id, n] of [...served].sort((a, b) => a[0] - b[0])) console.log(`worker ${id} served ${n}`);
}

'use strict';
// ipc_counter: state shared by all workers lives in the primary, reached by messages. Each worker
// tells the primary about every request it gets ({ cmd: 'notifyRequest' }); the primary counts
// them across the cluster and replies with the running total, which the worker puts in its
// answer ("you are visitor #N"), whichever worker served it.
//
//   node ipc_counter.js              serve on PORT (default 8000); the primary prints the count
//                                    every few seconds when it changed
//   PORT=0 node ipc_counter.js --requests 20
//       bounded: once every worker listens, the primary itself sends 20 GET requests one after
//       the other, checks that they were visitors #1 to #20 in order, prints the count per
//       worker, then shuts down with cluster.disconnect() (exit code 0).
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

  // The cluster-wide state: only the primary writes it, so there is nothing to lock.
  let numReqs = 0;
  const perWorker = new Map();
  cluster.on('message', (worker, msg) => {
    if (msg && msg.cmd === 'notifyRequest') {
      numReqs++;
      perWorker.set(worker.id, (perWorker.get(worker.id) ?? 0) + 1);
      // The reply goes to the worker that asked; `seq` lets it match the reply to its request.
      worker.send({ cmd: 'requestCount', seq: msg.seq, total: numReqs });
    }
  });

  cluster.on('online', (worker) => console.log(`worker ${worker.id} online (pid ${worker.process.pid})`));
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
  });

  let listening = 0;
  cluster.on('listening', (worker, address) => {
    if (++listening !== numWorkers) return;
    console.log(`all ${numWorkers} workers listening on port ${address.port}`);
    if (REQUESTS === null) {
      let shown = 0;
      setInterval(() => {
        if (numReqs !== shown) console.log(`numReqs = ${(shown = numReqs)}`);
      }, 5000);
      return;
    }
    stage = `sending ${REQUESTS} requests`;
    sendRequests(address.port, REQUESTS).then(() => {
      console.log(`primary counted ${numReqs} requests`);
      for (const [id, n] of [...perWorker].sort((a, b) => a[0] - b[0])) console.log(`worker ${id} notified ${n}`);
      stage = 'waiting for the workers to exit after cluster.disconnect()';
      console.log('cluster.disconnect()');
      cluster.disconnect();
    });
  });

  for (let i = 0; i < numWorkers; i++) cluster.fork();
} else {
  // Requests waiting for the primary's reply, by sequence number.
  const waiting = new Map();
  let seq = 0;
  process.on('message', (msg) => {
    if (msg && msg.cmd === 'requestCount' && waiting.has(msg.seq)) {
      waiting.get(msg.seq)(msg.total);
      waiting.delete(msg.seq);
    }
  });

  http.createServer((req, res) => {
    const mine = ++seq;
    waiting.set(mine, (total) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`hello, you are visitor #${total} (worker ${cluster.worker.id})\n`);
    });
    // Notify the primary about the request.
    process.send({ cmd: 'notifyRequest', seq: mine });
  }).listen(PORT, HOST);
}

// Sends `count` GET requests one after the other, each on a new connection, and checks the
// visitor numbers in the answers.
async function sendRequests(port, count) {
  const visitors = [];
  let failed = 0;
  for (let i = 0; i < count; i++) {
    try {
      const body = await get(port, '/');
      visitors.push(Number(/visitor #(\d+)/.exec(body)[1]));
    } catch (err) {
      failed++;
      console.log(`request ${i + 1} failed: ${err.message}`);
    }
  }
  console.log(`sent ${count} requests: ${count - failed} ok, ${failed} failed`);
  const inOrder = visitors.length === count && visitors.every((n, i) => n === i + 1);
  console.log(inOrder ? `visitor numbers: 1 to ${count}, in order` : `visitor numbers: ${visitors.join(' ')}`);
}

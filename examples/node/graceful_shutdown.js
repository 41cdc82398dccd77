'use strict';
// graceful_shutdown: stop without cutting anyone off. On SIGTERM or SIGINT (Ctrl-C) the primary
// calls cluster.disconnect(): every worker closes its servers (server.close(): no new
// connections), finishes the requests it is serving, and exits with code 0; then the primary,
// with nothing left to do, exits 0 as well. A worker still busy after 10 s is killed.
//
//   node graceful_shutdown.js        serve on PORT (default 8000); GET /slow takes 1 s to answer:
//                                    start one, press Ctrl-C, and it still gets its answer
//   PORT=0 node graceful_shutdown.js --self-test
//       bounded: once every worker listens, the primary starts GET /slow; when a worker has it,
//       the primary sends itself SIGTERM, then checks that the slow request still completes.
//
// It is node:cluster code: replace require('corral') with require('node:cluster') and it runs
// the same.
const cluster = require('corral');
const { hardTimeout } = require('./support/bounded');
const http = require('node:http');
const os = require('node:os');

const PORT = Number(process.env.PORT ?? 8000);
// PORT=0 is how the tests run it: an ephemeral port, on loopback only.
const HOST = PORT === 0 ? '127.0.0.1' : undefined;
const SELF_TEST = process.argv.includes('--self-test');
const SLOW_MS = 1000;
const FORCE_KILL_MS = 10_000;

if (cluster.isPrimary) {
  const numWorkers = os.availableParallelism();
  console.log(`primary ${process.pid}: starting ${numWorkers} workers`);
  let stage = 'waiting for every worker to listen';
  if (SELF_TEST) hardTimeout(cluster, 20_000, () => stage);
  process.on('exit', (code) => console.log(`primary exiting (code ${code})`));

  cluster.on('online', (worker) => console.log(`worker ${worker.id} online (pid ${worker.process.pid})`));
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
  });

  let shuttingDown = false;
  const shutdown = (signal) => {
    if (shuttingDown) {
      console.log(`${signal}: already shutting down`);
      return;
    }
    shuttingDown = true;
    stage = 'waiting for the workers to finish their requests and exit';
    // cluster.disconnect() takes the workers out of cluster.workers at once: keep them to be
    // able to kill the ones that never finish.
    const draining = Object.values(cluster.workers);
    console.log(`${signal}: cluster.disconnect(), waiting for ${draining.length} workers to finish their requests`);
    cluster.disconnect();
    setTimeout(() => {
      for (const worker of draining) {
        if (worker.isDead()) continue;
        console.log(`worker ${worker.id} still busy after ${FORCE_KILL_MS} ms, killing it`);
        worker.process.kill('SIGKILL');
      }
    }, FORCE_KILL_MS).unref(); // never keeps the primary alive by itself
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);

  let listening = 0;
  cluster.on('listening', (worker, address) => {
    if (++listening !== numWorkers) return;
    console.log(`all ${numWorkers} workers listening on port ${address.port}`);
    if (!SELF_TEST) return;
    stage = 'waiting for GET /slow to reach a worker';
    slowRequest(address.port);
  });

  // Self-test: the worker that gets GET /slow says so, and the primary sends itself SIGTERM while
  // that request is in flight.
  cluster.on('message', (worker, msg) => {
    if (SELF_TEST && msg && msg.cmd === 'slowRequestStarted') {
      console.log(`self-test: GET /slow is in flight in worker ${worker.id}, sending SIGTERM to the primary`);
      process.kill(process.pid, 'SIGTERM');
    }
  });

  function slowRequest(port) {
    http.get({ host: '127.0.0.1', port, path: '/slow', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => console.log(`self-test: GET /slow answered ${res.statusCode}: ${body.trim()}`));
    }).on('error', (err) => console.log(`self-test: GET /slow failed: ${err.code || err.message}`));
  }

  for (let i = 0; i < numWorkers; i++) cluster.fork();
} else {
  const server = http.createServer((req, res) => {
    if (req.url !== '/slow') {
      res.end(`hello world from worker ${cluster.worker.id}\n`);
      return;
    }
    if (SELF_TEST) process.send({ cmd: 'slowRequestStarted' });
    setTimeout(() => {
      // Once the primary has asked this worker to disconnect, its server no longer accepts
      // connections, but this request, already accepted, still gets its answer.
      res.end(`slow response from worker ${cluster.worker.id} (server still accepting: ${server.listening})\n`);
    }, SLOW_MS);
  });
  server.listen(PORT, HOST);

  // Ctrl-C sends SIGINT to every process of the terminal's process group, and a service manager
  // may send SIGTERM to every process of the service: the workers too. Their default action would
  // kill the worker in the middle of its requests, so the workers ignore them and let the primary
  // drive the shutdown (if the primary dies, the workers exit on their own).
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
}

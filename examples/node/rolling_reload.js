'use strict';
// rolling_reload: replace every worker (to load new code, say) without refusing a single
// request. On SIGHUP the primary replaces the workers one at a time: fork a new one, wait until it
// is 'listening', then disconnect the old one, which stops taking connections, finishes the
// requests it has, and exits. There is always a worker listening.
//
//   node rolling_reload.js           serve on PORT (default 8000); `kill -HUP <primary pid>`
//                                    reloads
//   PORT=0 node rolling_reload.js --requests 300
//       bounded: a client loop in the primary keeps 4 requests in flight; after 30 answers the
//       primary sends itself SIGHUP, once. When the reload is done and at least 300 requests
//       were sent, it prints how many failed ("failed 0") and shuts down with cluster.disconnect().
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
// An old worker that has not exited this long after disconnect() (a client that never closes
// its connection) is killed.
const DISCONNECT_TIMEOUT_MS = 10_000;

if (cluster.isPrimary) {
  const numWorkers = os.availableParallelism();
  console.log(`primary ${process.pid}: starting ${numWorkers} workers`);
  let stage = 'waiting for every worker to listen';
  if (REQUESTS !== null) hardTimeout(cluster, 30_000, () => stage);
  process.on('exit', (code) => console.log(`primary exiting (code ${code})`));

  cluster.on('online', (worker) => console.log(`worker ${worker.id} online (pid ${worker.process.pid})`));
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
  });

  let reloading = false;
  let reloadsDone = 0;
  process.on('SIGHUP', async () => {
    if (reloading) {
      console.log('SIGHUP: a reload is already running');
      return;
    }
    reloading = true;
    try {
      await reload();
      reloadsDone++;
    } catch (err) {
      console.log(`reload failed: ${err.message}`);
    }
    reloading = false;
  });

  async function reload() {
    const old = Object.values(cluster.workers);
    console.log(`SIGHUP: replacing ${old.length} workers one by one`);
    for (const worker of old) {
      const fresh = cluster.fork();
      await listeningOrExit(fresh);
      console.log(`worker ${fresh.id} listening, disconnecting worker ${worker.id}`);
      await disconnectAndWait(worker);
    }
    console.log(`reload done, workers ${Object.keys(cluster.workers).join(',')}`);
  }

  let listening = 0;
  const initialListening = (worker, address) => {
    if (++listening !== numWorkers) return;
    cluster.off('listening', initialListening);
    console.log(`all ${numWorkers} workers listening on port ${address.port}`);
    if (REQUESTS === null) return;
    stage = 'running the client loop and the reload';
    clientLoop(address.port, REQUESTS).then(() => {
      stage = 'waiting for the workers to exit after cluster.disconnect()';
      console.log('cluster.disconnect()');
      cluster.disconnect();
    });
  };
  cluster.on('listening', initialListening);

  for (let i = 0; i < numWorkers; i++) cluster.fork();

  // Bounded mode: keeps `concurrency` requests in flight, sends SIGHUP to this process after 30
  // answers, and ends once the reload is done and `count` requests (20 of them after the
  // reload) were sent. Resolves after the last answer.
  function clientLoop(port, count, concurrency = 4) {
    return new Promise((resolve) => {
      const initial = new Set(Object.keys(cluster.workers));
      let started = 0;
      let startedAfter = 0;
      let completed = 0;
      let failed = 0;
      let servedAfterByOld = 0;
      const next = () => {
        const reloaded = reloadsDone > 0;
        if (reloaded && started >= count && startedAfter >= 20) {
          if (completed === started) finish();
          return;
        }
        started++;
        if (reloaded) startedAfter++;
        get(port, '/').then((body) => {
          const id = /worker (\d+)/.exec(body)?.[1];
          if (reloaded && initial.has(id)) servedAfterByOld++;
        }, (err) => {
          failed++;
          console.log(`request failed: ${err.code || err.message}`);
        }).finally(() => {
          completed++;
          if (completed === 30) process.kill(process.pid, 'SIGHUP');
          next();
        });
      };
      const finish = () => {
        console.log(`client: ${started} requests sent (at least ${count}: ${started >= count})`);
        console.log(`failed ${failed}`);
        console.log(`requests sent after the reload answered by old workers: ${servedAfterByOld}`);
        resolve();
      };
      for (let i = 0; i < concurrency; i++) next();
    });
  }
} else {
  http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`hello world from worker ${cluster.worker.id}\n`);
  }).listen(PORT, HOST);
}

// Resolves when the worker listens; rejects if it dies first (then the old worker stays).
function listeningOrExit(worker) {
  return new Promise((resolve, reject) => {
    const onExit = (code, signal) => {
      reject(new Error(`worker ${worker.id} exited (${signal || code}) before listening`));
    };
    worker.once('exit', onExit);
    worker.once('listening', () => {
      worker.off('exit', onExit);
      resolve();
    });
  });
}

// worker.disconnect(): the worker closes its servers, lets its in-flight requests finish, then
// exits. Resolves on its 'exit'; kills it if that takes longer than DISCONNECT_TIMEOUT_MS.
function disconnectAndWait(worker) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      console.log(`worker ${worker.id} still running ${DISCONNECT_TIMEOUT_MS} ms after disconnect(), killing it`);
      worker.kill('SIGKILL');
    }, DISCONNECT_TIMEOUT_MS);
    worker.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    worker.disconnect();
  });
}

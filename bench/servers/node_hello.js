'use strict';
// Hello-world HTTP server for the benchmarks: answers every request with "hello\n".
//
// Environment:
//   BENCH_CLUSTER_MODULE  module providing the cluster API (default 'node:cluster'); set to the
//                         absolute path of bindings/node/index.js to run the same code on corral.
//   BENCH_WORKERS         number of workers (default 2); 0 runs one plain server, no cluster.
//   BENCH_EXIT_ON_EOF=1   exit when stdin closes (bench/run sets it: if the harness dies, so do we)
//   BENCH_STICKY_COOKIE=NAME  corral only: setupPrimary({ sticky: { cookie: NAME } }), sticky by key
//                         (the primary peeks at each connection's first bytes for the cookie);
//                         bench/lib/wrk.lua sends a random NAME cookie per request then.
//   BENCH_SKEW=N:MS       skewed service times: a request is slow with probability 1/N, drawn
//                         independently in each worker, and blocks its worker's event loop for MS
//                         ms before answering without using CPU (Atomics.wait: a handler stuck on
//                         synchronous I/O). Not every N-th request of a worker: rr keeps the
//                         workers' counts in step, so they all stalled at the same moment and no
//                         policy could route around them. Not a busy loop: on 2 cores shared with
//                         wrk it starves the other worker and the primary, which no policy helps.
//
// Protocol with bench/run (stdout of the primary, one line each):
//   listening <port>      once every worker is listening (127.0.0.1, port 0)
//   startup <json>        per-worker fork->listening times in ms and pids, printed before `listening`
//   counts <json>         answer to the stdin line `counts`: requests served per worker since the
//                         last `reset` (stdin line `reset`), asked over the cluster IPC channel
// SIGTERM in the primary stops the workers and exits once they are gone.

const http = require('node:http');
const readline = require('node:readline');

const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);

const [SKEW_EVERY, SKEW_MS] = (process.env.BENCH_SKEW || '0:0').split(':').map(Number);

function serve(onRequest) {
  const stall = SKEW_EVERY > 0 ? new Int32Array(new SharedArrayBuffer(4)) : null;
  const server = http.createServer((req, res) => {
    onRequest();
    if (stall && Math.random() * SKEW_EVERY < 1) {
      Atomics.wait(stall, 0, 0, SKEW_MS); // nothing wakes it: a timed, blocking wait
    }
    res.end('hello\n');
  });
  server.listen(0, '127.0.0.1');
  return server;
}

function onStdinLine(handler, onEof) {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (l) => handler(l.trim()));
  if (process.env.BENCH_EXIT_ON_EOF === '1') rl.on('close', onEof);
}

if (WORKERS === 0) {
  let served = 0;
  const server = serve(() => served++);
  server.on('listening', () => console.log(`listening ${server.address().port}`));
  onStdinLine((cmd) => {
    if (cmd === 'reset') served = 0;
    if (cmd === 'counts') console.log(`counts ${JSON.stringify([served])}`);
  }, () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
} else {
  const cluster = require(process.env.BENCH_CLUSTER_MODULE || 'node:cluster');
  if (cluster.isPrimary) runPrimary(cluster);
  else runWorker(cluster.worker);
}

function runPrimary(cluster) {
  const forkedAt = new Map(); // worker id -> hrtime at fork()
  const startup = [];
  let port = null;
  if (process.env.BENCH_STICKY_COOKIE) cluster.setupPrimary({ sticky: { cookie: process.env.BENCH_STICKY_COOKIE } });

  for (let i = 0; i < WORKERS; i++) {
    const t = process.hrtime.bigint();
    forkedAt.set(cluster.fork().id, t);
  }
  cluster.on('listening', (worker, address) => {
    const ms = Number(process.hrtime.bigint() - forkedAt.get(worker.id)) / 1e6;
    startup.push({ id: worker.id, pid: worker.process.pid, ms });
    port = address.port;
    if (startup.length === WORKERS) {
      console.log(`startup ${JSON.stringify(startup)}`);
      console.log(`listening ${port}`);
    }
  });

  // `counts`: ask every worker, print once all have answered (or after 2 s with what we have).
  let pending = null;
  cluster.on('message', (worker, msg) => {
    if (!pending || !msg || msg.bench !== 'counts') return;
    pending.answers.set(worker.id, msg.served);
    if (pending.answers.size === pending.expected) finishCounts();
  });
  function finishCounts() {
    clearTimeout(pending.timer);
    const counts = [...pending.answers.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
    pending = null;
    console.log(`counts ${JSON.stringify(counts)}`);
  }
  onStdinLine((cmd) => {
    const workers = Object.values(cluster.workers);
    if (cmd === 'reset') for (const w of workers) w.send({ bench: 'reset' });
    if (cmd === 'counts' && !pending) {
      pending = { answers: new Map(), expected: workers.length, timer: setTimeout(finishCounts, 2000) };
      for (const w of workers) w.send({ bench: 'counts' });
    }
  }, stop);

  let stopping = false;
  process.on('SIGTERM', stop);
  function stop() {
    if (stopping) return;
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
    const done = () => Object.keys(cluster.workers).length === 0 && process.exit(0);
    cluster.on('exit', done);
    done();
    setTimeout(() => process.exit(0), 2000).unref();
  }
}

function runWorker(worker) {
  let served = 0;
  serve(() => served++);
  worker.on('message', (msg) => {
    if (!msg || typeof msg.bench !== 'string') return;
    if (msg.bench === 'reset') served = 0;
    if (msg.bench === 'counts') worker.send({ bench: 'counts', served });
  });
  process.on('SIGTERM', () => process.exit(0));
}

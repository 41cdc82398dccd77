'use strict';
// Scenario: the basic life of two workers. fork() is synchronous; the primary sees the states
// none -> online -> listening -> disconnected/dead, per-worker events before cluster events,
// a 'listening' address with exactly {addressType, address, port, fd}; the worker sees itself as
// a worker and its own children are not workers. Ends with worker.disconnect() on both.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');

const N = 2;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  console.log(`primary: isPrimary ${cluster.isPrimary} isWorker ${cluster.isWorker} isMaster ${cluster.isMaster}`);
  console.log(`primary: SCHED_NONE ${cluster.SCHED_NONE} SCHED_RR ${cluster.SCHED_RR} schedulingPolicy ${cluster.schedulingPolicy}`);
  console.log(`primary: typeof cluster.worker ${typeof cluster.worker}, workers ${JSON.stringify(Object.keys(cluster.workers))}`);

  // Lines per worker id, printed at the end in id order. 'disconnect' and 'exit' can arrive in
  // either order, so their lines are kept apart and printed disconnect first.
  const log = new Map();
  const rec = (w, line, group = 'early') => log.get(w.id)[group].push(line);
  const reports = new Map();

  for (const type of ['fork', 'online']) {
    cluster.on(type, (w) => rec(w, `cluster ${type} state=${w.state}`));
  }
  cluster.on('listening', (w, address) => rec(w, `cluster listening state=${w.state} ${describeAddress(address)}`));
  cluster.on('disconnect', (w) => {
    rec(w, `cluster disconnect state=${w.state} isConnected=${w.isConnected()}`, 'disconnect');
    setImmediate(maybeFinish);
  });
  cluster.on('exit', (w, code, signal) => {
    rec(w, `cluster exit state=${w.state} code=${code} signal=${signal} ` +
      `exitedAfterDisconnect=${w.exitedAfterDisconnect} isDead=${w.isDead()}`, 'exit');
    setImmediate(maybeFinish);
  });

  const workers = [];
  for (let i = 0; i < N; i++) {
    const w = cluster.fork();
    workers.push(w);
    log.set(w.id, { early: [], disconnect: [], exit: [] });
    rec(w, `fork() returned: id=${w.id} state=${w.state} exitedAfterDisconnect=${w.exitedAfterDisconnect} ` +
      `inWorkers=${cluster.workers[w.id] === w} isConnected=${w.isConnected()} isDead=${w.isDead()} ` +
      `pid=${typeof w.process.pid}`);
    w.on('online', () => rec(w, `worker online state=${w.state}`));
    w.on('listening', (address) => {
      rec(w, `worker listening state=${w.state} ${describeAddress(address)}`);
      w.listenAddress = address;
    });
    w.on('disconnect', () => rec(w, `worker disconnect state=${w.state}`, 'disconnect'));
    w.on('exit', (code, signal) => rec(w, `worker exit state=${w.state} code=${code} signal=${signal}`, 'exit'));
    w.on('message', (msg) => {
      // Sent from the worker's listen callback, which runs before the worker tells the primary.
      rec(w, `worker message sent from the listen callback, state=${w.state}`);
      reports.set(w.id, msg);
      maybeRequest();
    });
  }
  console.log(`primary: after fork: workers ${JSON.stringify(Object.keys(cluster.workers))}`);

  // Every worker must be listening and have reported before the primary talks to the server.
  cluster.on('listening', maybeRequest);
  function maybeRequest() {
    if (reports.size !== N || workers.some((w) => w.state !== 'listening')) return;
    cluster.removeListener('listening', maybeRequest);
    const port = workers[0].listenAddress.port;
    get(port, (status, body) => {
      console.log(`primary: GET -> ${status} ${body}`);
      for (const w of workers) {
        const ret = w.disconnect();
        console.log(`primary: worker ${w.id} disconnect() returned worker=${ret === w} state=${w.state} ` +
          `exitedAfterDisconnect=${w.exitedAfterDisconnect} inWorkers=${w.id in cluster.workers}`);
      }
    });
  }

  let finished = false;
  function maybeFinish() {
    const done = [...log.values()].every((l) => l.disconnect.length === 2 && l.exit.length === 2);
    if (finished || !done) return;
    finished = true;
    for (const w of workers) {
      const r = reports.get(w.id);
      const l = log.get(w.id);
      console.log(`worker ${w.id}:`);
      for (const line of [...l.early, ...l.disconnect, ...l.exit]) console.log(`  ${line}`);
      console.log(`  listening port equals worker-side server.address().port: ${r.port === w.listenAddress.port}`);
      console.log(`  worker-side: ${r.lines.join('; ')}`);
    }
    console.log(`primary: workers at the end ${JSON.stringify(Object.keys(cluster.workers))}`);
  }

  function describeAddress(a) {
    return `keys=${Object.keys(a).join(',')} addressType=${a.addressType} address=${a.address} ` +
      `port>0=${Number.isInteger(a.port) && a.port > 0} fd=${a.fd} hasOwnFd=${Object.hasOwn(a, 'fd')}`;
  }
} else {
  const { execFileSync } = require('node:child_process');
  const w = cluster.worker;
  const lines = [
    `isPrimary=${cluster.isPrimary} isWorker=${cluster.isWorker} isMaster=${cluster.isMaster}`,
    `id=${w.id} state at start=${w.state} exitedAfterDisconnect=${w.exitedAfterDisconnect}`,
    `typeof cluster.workers=${typeof cluster.workers} worker.process===process ${w.process === process}`,
  ];
  // A process started by a worker is a primary again, not a worker.
  const childIsPrimary = execFileSync(process.execPath, ['-e',
    `const c = require(${JSON.stringify(process.env.CORRAL_COMPAT_MODULE || 'node:cluster')}); ` +
    'process.stdout.write(String(c.isPrimary))'], { encoding: 'utf8' });
  lines.push(`a child of the worker has isPrimary=${childIsPrimary}`);

  const server = http.createServer((req, res) => {
    res.setHeader('Connection', 'close');
    res.end('hello');
  });
  server.listen(0, '127.0.0.1', () => {
    lines.push(`state after listen callback=${w.state}`);
    process.send({ port: server.address().port, lines });
  });
  w.on('disconnect', () => {
    // Unref'd: this only reports a worker that never exits.
    setTimeout(() => { console.error('worker still alive 5 s after disconnect'); }, 5000).unref();
  });
}

function get(port, cb) {
  http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (d) => { body += d; });
    res.on('end', () => cb(res.statusCode, body));
  }).on('error', (err) => cb(`error ${err.code}`, ''));
}

'use strict';
// Scenario: a rolling restart under load. Two workers serve HTTP; a client loop in the primary
// (4 concurrent requests, keep-alive disabled) runs at least 300 requests. After 30 responses
// the primary replaces each worker in turn: fork a new one, wait for its 'listening', then
// disconnect the old one and wait for its 'exit'. No request may fail, the port never changes,
// and every request started after the restart is served by a new worker.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');

const MIN_REQUESTS = 300;
const CONCURRENCY = 4;
const RESTART_AFTER = 30;
const AFTER_RESTART = 30; // requests that must start after the restart ended

if (cluster.isPrimary) {
  armTimeout(cluster, 20000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  let port = null;
  let portChanged = false;
  let started = 0;
  let completed = 0;
  let failed = 0;
  const failures = [];
  let restartState = 'not started'; // -> 'running' -> 'done'
  let startedAfterRestart = 0;
  const servedAfterRestart = new Set();
  const servedBy = new Set();

  cluster.on('listening', (w, address) => {
    if (port === null) port = address.port;
    else if (address.port !== port) portChanged = true;
  });

  const initial = [cluster.fork(), cluster.fork()];
  let readyCount = 0;
  for (const w of initial) {
    w.once('listening', () => {
      if (++readyCount === initial.length) {
        for (let i = 0; i < CONCURRENCY; i++) next();
      }
    });
  }

  function next() {
    const loadDone = restartState === 'done' && started >= MIN_REQUESTS && startedAfterRestart >= AFTER_RESTART;
    if (loadDone) {
      if (started === completed) report();
      return;
    }
    const afterRestart = restartState === 'done';
    started++;
    if (afterRestart) startedAfterRestart++;
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        if (res.statusCode !== 200) fail(`status ${res.statusCode}`);
        servedBy.add(body);
        if (afterRestart) servedAfterRestart.add(body);
        settle();
      });
      res.on('error', (err) => { fail(`response ${err.code || err.message}`); settle(); });
    });
    req.on('error', (err) => { fail(`request ${err.code || err.message}`); settle(); });
  }

  function fail(what) {
    failed++;
    if (failures.length < 5) failures.push(what);
  }

  function settle() {
    completed++;
    if (completed === RESTART_AFTER) restart();
    next();
  }

  async function restart() {
    restartState = 'running';
    for (const old of initial) {
      const fresh = cluster.fork();
      await once(fresh, 'listening');
      console.log(`worker ${fresh.id} listening, disconnecting worker ${old.id}`);
      old.disconnect();
      const [code, signal] = await once(old, 'exit');
      console.log(`worker ${old.id} exited code=${code} signal=${signal} exitedAfterDisconnect=${old.exitedAfterDisconnect}`);
    }
    restartState = 'done';
    console.log(`restart done, workers ${JSON.stringify(Object.keys(cluster.workers))}`);
  }

  function report() {
    console.log(`requests >= ${MIN_REQUESTS} ${started >= MIN_REQUESTS}`);
    console.log(`failed ${failed}${failures.length ? ` (${failures.join(', ')})` : ''}`);
    // Which worker serves which request depends on the scheduling policy: check membership only.
    const oldIds = initial.map((w) => String(w.id));
    const newIds = Object.keys(cluster.workers);
    const servedBeforeByOld = [...servedBy].some((id) => oldIds.includes(id));
    const onlyNew = servedAfterRestart.size > 0 && [...servedAfterRestart].every((id) => newIds.includes(id));
    console.log(`old workers served requests ${servedBeforeByOld}`);
    console.log(`requests started after the restart served only by new workers ${onlyNew}`);
    console.log(`port unchanged ${!portChanged}`);
    cluster.disconnect();
  }
} else {
  const server = http.createServer((req, res) => {
    res.setHeader('Connection', 'close');
    res.end(String(cluster.worker.id));
  });
  server.listen(0, '127.0.0.1');
}

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

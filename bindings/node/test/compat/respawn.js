'use strict';
// Scenario: respawn on crash. Workers 1..3 exit with code 3 (on the primary's order, once they
// are listening); the primary's 'exit' handler forks a replacement for every unexpected exit.
// Worker 4 stays, serves a request, and cluster.disconnect() ends it (no respawn: it exited after
// disconnect). Ids count up and are never reused; every worker is a new process.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');

const CRASHES = 3;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  let crashes = 0;
  let disconnectCallback = 'not called';
  let forks = 0;
  const pids = new Set();

  cluster.on('fork', (w) => {
    forks++;
    pids.add(w.process.pid);
    console.log(`fork ${w.id}`);
  });
  cluster.on('online', (w) => console.log(`online ${w.id}`));
  cluster.on('listening', (w, address) => {
    console.log(`listening ${w.id}`);
    if (crashes < CRASHES) {
      w.send({ cmd: 'crash' });
      return;
    }
    get(address.port, (status, body) => {
      console.log(`GET -> ${status} from worker ${body}`);
      // The callback and worker 4's 'exit' can come in either order: report it at the end.
      cluster.disconnect(() => {
        disconnectCallback = `called, workers ${JSON.stringify(Object.keys(cluster.workers))}`;
      });
    });
  });
  cluster.on('exit', (w, code, signal) => {
    console.log(`exit ${w.id} code=${code} signal=${signal} exitedAfterDisconnect=${w.exitedAfterDisconnect}`);
    if (code !== 0 && !w.exitedAfterDisconnect) {
      crashes++;
      console.log(`respawn after crash ${crashes}`);
      cluster.fork();
    }
  });
  process.on('exit', (code) => {
    console.log(`cluster.disconnect callback ${disconnectCallback}`);
    console.log(`forks ${forks} crashes ${crashes} distinct pids ${pids.size}`);
    console.log(`primary exit ${code}`);
  });

  cluster.fork();
} else {
  const server = http.createServer((req, res) => {
    res.setHeader('Connection', 'close');
    res.end(String(cluster.worker.id));
  });
  server.listen(0, '127.0.0.1');
  process.on('message', (msg) => {
    if (msg.cmd === 'crash') process.exit(3);
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

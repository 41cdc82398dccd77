'use strict';
// 3 HTTP workers on one fixed port under cluster.schedulingPolicy = 'kernel-rr'; worker 1
// closes its server and listens again on the same port (as node:cluster allows: the listen
// index of a closed server is free again). Then 30 requests (Connection: close): prints the
// requests each worker served, by worker id, and the corral warnings the process got.
const cluster = require(process.env.CORRAL_MODULE);
const watchdog = require('./watchdog');
const http = require('node:http');
const net = require('node:net');

const N = 30;
if (cluster.isPrimary) {
  cluster.schedulingPolicy = 'kernel-rr';
  const warnings = [];
  process.on('warning', (w) => {
    if (w.name === 'CorralWarning') warnings.push(w);
  });
  const timer = watchdog(cluster, 20000);
  const probe = net.createServer().listen(0, '127.0.0.1', () => {
    const port = probe.address().port;
    probe.close(() => start(port));
  });
  function start(port) {
    const workers = [];
    let listening = 0;
    for (let i = 0; i < 3; i++) {
      const w = cluster.fork({ PORT: String(port) });
      workers.push(w);
      w.on('message', (m) => {
        if (m === 'relistened') run(port);
        else if (typeof m === 'string' && m.startsWith('error ')) {
          console.log(m);
          finish();
        }
      });
    }
    cluster.on('listening', () => {
      if (++listening === 3) workers[0].send('relisten');
    });
  }
  async function run(port) {
    const per = new Map();
    for (let i = 0; i < N; i++) {
      const id = await new Promise((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, agent: false, headers: { connection: 'close' } }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve(body));
          })
          .on('error', reject);
      });
      per.set(id, (per.get(id) || 0) + 1);
    }
    console.log(`served ${['1', '2', '3'].map((id) => per.get(id) || 0).join('/')}`);
    finish();
  }
  function finish() {
    for (const w of warnings) console.log(`warning ${w.code} ${w.errno} ${w.message}`);
    console.log(`warnings ${warnings.length}`);
    clearTimeout(timer);
    cluster.disconnect();
  }
} else {
  const port = Number(process.env.PORT);
  const server = http.createServer((req, res) => res.end(String(cluster.worker.id)));
  server.on('error', (e) => process.send(`error ${e.code}`));
  server.listen(port, '127.0.0.1');
  process.on('message', (m) => {
    if (m !== 'relisten') return;
    server.close(() => server.listen(port, '127.0.0.1', () => process.send('relistened')));
  });
}

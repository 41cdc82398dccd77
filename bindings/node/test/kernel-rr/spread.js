'use strict';
// N requests (Connection: close) over 3 HTTP workers under cluster.schedulingPolicy =
// 'kernel-rr' (unless CORRAL_SCHED_POLICY names it): prints the requests each worker served,
// sorted, and the corral warnings the process got (the rr fallback without CAP_BPF).
const cluster = require(process.env.CORRAL_MODULE);
const watchdog = require('./watchdog');
const http = require('node:http');

const N = Number(process.env.REQUESTS || 300);
if (cluster.isPrimary) {
  if (!process.env.CORRAL_SCHED_POLICY) cluster.schedulingPolicy = 'kernel-rr';
  const warnings = [];
  process.on('warning', (w) => {
    if (w.name === 'CorralWarning') warnings.push(w);
  });
  const timer = watchdog(cluster, 20000);
  let listening = 0;
  let port = 0;
  let own = 0; // workers accepting on a socket of their own (kernel-rr), not dealt by the primary
  for (let i = 0; i < 3; i++) cluster.fork().on('message', (m) => (own += m.ownSocket ? 1 : 0));
  cluster.on('listening', async (_w, address) => {
    port = address.port;
    if (++listening < 3) return;
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
    console.log(`policy ${cluster.schedulingPolicy}`);
    console.log(`served ${[...per.values()].sort((a, b) => a - b).join('/')}`);
    console.log(`own sockets ${own}`);
    for (const w of warnings) console.log(`warning ${w.code} ${w.errno} ${w.message}`);
    console.log(`warnings ${warnings.length}`);
    clearTimeout(timer);
    cluster.disconnect();
  });
} else {
  const server = http
    .createServer((req, res) => res.end(String(cluster.worker.id)))
    .listen(0, '127.0.0.1', () => process.send({ ownSocket: server._handle.fd >= 0 }));
}

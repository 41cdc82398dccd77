'use strict';
// A worker whose loop is blocked (a synchronous handler, 1500 ms) under kernel-rr, 2 HTTP
// workers: 40 clients arrive meanwhile, one every 5 ms. Prints who answered them and the
// slowest, then who answers 20 sequential requests once the block is over.
const cluster = require(process.env.CORRAL_MODULE);
const watchdog = require('./watchdog');
const http = require('node:http');

const BLOCK_MS = 1500;

function get(port, path) {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false, headers: { connection: 'close' } }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ id: body, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
      })
      .on('error', reject);
  });
}

if (cluster.isPrimary) {
  if (!process.env.CORRAL_SCHED_POLICY) cluster.schedulingPolicy = 'kernel-rr';
  const timer = watchdog(cluster, 20000);
  let listening = 0;
  for (let i = 0; i < 2; i++) cluster.fork();
  cluster.on('listening', async (_w, { port }) => {
    if (++listening < 2) return;
    const blocked = get(port, '/block');
    // Give the blocking request its worker before the others come.
    await new Promise((r) => setTimeout(r, 50));
    const during = [];
    for (let i = 0; i < 40; i++) {
      during.push(get(port, '/'));
      await new Promise((r) => setTimeout(r, 5));
    }
    const answers = await Promise.all(during);
    const b = await blocked;
    const by = answers.filter((a) => a.id === b.id).length;
    const slowest = Math.max(...answers.map((a) => a.ms));
    console.log(`blocked worker answered ${by} of 40`);
    console.log(`slowest ${slowest < BLOCK_MS / 2 ? 'under' : 'over'} ${BLOCK_MS / 2} ms (${slowest.toFixed(1)} ms)`);
    // Back once it reads again: it takes its turns.
    await new Promise((r) => setTimeout(r, 200));
    const after = new Set();
    for (let i = 0; i < 20; i++) after.add((await get(port, '/')).id);
    console.log(`after the block ${after.size} workers`);
    clearTimeout(timer);
    cluster.disconnect();
  });
} else {
  http
    .createServer((req, res) => {
      if (req.url === '/block') {
        const end = Date.now() + BLOCK_MS;
        while (Date.now() < end);
      }
      res.end(String(cluster.worker.id));
    })
    .listen(0, '127.0.0.1');
}

'use strict';
// least: worker 1 takes 200 ms per request, the others answer at once; 6 clients send 20
// requests each. Prints "share <slow worker's share> <requests per worker>" and exits 0.
// Without the workers' close reports the counts only grow and least deals in turn (a third).
const cluster = require(process.env.CORRAL_MODULE);
const net = require('node:net');

const WORKERS = 3;

if (cluster.isPrimary) {
  setTimeout(() => {
    console.log('timed out');
    process.exit(1);
  }, 25_000).unref();
  cluster.schedulingPolicy = process.argv[2] === 'rr' ? cluster.SCHED_RR : cluster.SCHED_LEAST;
  for (let i = 0; i < WORKERS; i++) cluster.fork({ SLOW_MS: i === 0 ? '200' : '0' });
  let listening = 0;
  cluster.on('listening', (_w, address) => {
    if (++listening === WORKERS) run(address.port).catch((e) => {
      console.log(`failed: ${e.stack}`);
      process.exit(1);
    });
  });
} else {
  const slow = Number(process.env.SLOW_MS);
  net.createServer((s) => {
    s.once('data', () => setTimeout(() => s.end(`${cluster.worker.id}\n`), slow));
  }).listen(0, '127.0.0.1');
}

function ask(port) {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => c.write('hi\n'));
    let out = '';
    c.on('data', (d) => (out += d));
    c.on('end', () => resolve(out.trim()));
    c.on('error', reject);
  });
}

async function run(port) {
  const per = {};
  await Promise.all(Array.from({ length: 6 }, async () => {
    for (let i = 0; i < 20; i++) {
      const w = await ask(port);
      per[w] = (per[w] || 0) + 1;
    }
  }));
  console.log(`share ${((per['1'] || 0) / 120).toFixed(3)} ${JSON.stringify(per)}`);
  cluster.disconnect();
}

'use strict';
// settings.silent: the worker's stdout reaches the primary through worker.process.stdout.
const cluster = require(process.env.CORRAL_MODULE);
if (cluster.isPrimary) {
  cluster.setupPrimary({ silent: true });
  const w = cluster.fork();
  let out = '';
  w.process.stdout.on('data', (d) => (out += d));
  w.process.stdout.on('end', () => console.log(`captured: ${out.trim()}`));
  w.on('exit', (code) => console.log(`exit ${code}`));
} else {
  process.stdout.write(`hello from worker ${cluster.worker.id}\n`, () => process.exit(0));
}

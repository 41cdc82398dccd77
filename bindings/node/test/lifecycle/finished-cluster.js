'use strict';
// A cluster whose workers all exit lets the primary's process exit with no explicit exit().
const cluster = require(process.env.CORRAL_MODULE);
if (cluster.isPrimary) {
  for (let i = 0; i < 2; i++) cluster.fork();
  cluster.on('exit', (w, code) => console.log(`worker ${w.id} exit ${code}`));
  process.on('exit', () => console.log('primary exits by itself'));
} else {
  setTimeout(() => process.exit(0), 50 * cluster.worker.id);
}

// prom-client.js as an ES module, for `--import corral/register`: `import cluster from
// 'node:cluster'` here, and prom-client's own require('cluster') inside.
// common.js first: imports are evaluated in order, and it reads CORRAL_WORKER_ID before the
// cluster module consumes it.
import common from './common.js';
import cluster, { isPrimary } from 'node:cluster';
import client from 'prom-client';

const WORKERS = 2;
// In every process, as prom-client's docs say: the workers answer the primary's requests from it.
const registry = new client.AggregatorRegistry();

if (common.runAsTestFile(import.meta.url)) {
  // run by register.test.js only
} else if (isPrimary) {
  common.armTimeout();
  console.log(`runtime: ${common.runtime(cluster)}`);
  common.setStage('waiting for the workers to count');
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  const hellos = await common.collectHellos(cluster, WORKERS);
  console.log(`workers on corral: ${common.onCorral(hellos)}`);
  common.setStage('collecting the cluster metrics');
  const text = await registry.clusterMetrics();
  for (const line of text.split('\n')) {
    if (line.startsWith('corral_register_test_total')) console.log(`aggregated: ${line}`);
  }
  common.finish(cluster);
} else {
  const counter = new client.Counter({ name: 'corral_register_test_total', help: 'counted in every worker' });
  counter.inc(cluster.worker.id * 10);
  process.send(common.workerHello(cluster));
}

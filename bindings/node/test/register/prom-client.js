'use strict';
// prom-client's AggregatorRegistry: clusterMetrics() asks every worker for its metrics over the
// cluster's channels (it finds the workers through its own require('cluster')) and sums them.
// Worker N increments a counter by N * 10, so the sum is 30 with two workers.
const common = require('./common');

if (common.runAsTestFile(__filename)) return;
const cluster = require('cluster');
const client = require('prom-client');

const WORKERS = 2;
// In every process, as prom-client's docs say: the workers answer the primary's requests from it.
const registry = new client.AggregatorRegistry();

if (cluster.isPrimary) {
  common.armTimeout();
  console.log(`runtime: ${common.runtime(cluster)}`);
  common.setStage('waiting for the workers to count');
  common.collectHellos(cluster, WORKERS).then(async (hellos) => {
    console.log(`workers on corral: ${common.onCorral(hellos)}`);
    common.setStage('collecting the cluster metrics');
    const text = await registry.clusterMetrics();
    for (const line of text.split('\n')) {
      if (line.startsWith('corral_register_test_total')) console.log(`aggregated: ${line}`);
    }
    common.finish(cluster);
  });
  for (let i = 0; i < WORKERS; i++) cluster.fork();
} else {
  const counter = new client.Counter({ name: 'corral_register_test_total', help: 'counted in every worker' });
  counter.inc(cluster.worker.id * 10);
  process.send(common.workerHello(cluster));
}

'use strict';
// prom_client: Prometheus metrics for the whole cluster with prom-client's AggregatorRegistry.
// Every worker counts its requests in its own registry; the primary serves /metrics, asking every
// worker for its metrics over the cluster's channels and summing them. prom-client finds the
// workers through its own require('cluster'), so the first line below puts corral under it
// (and under this program's require('node:cluster')); `node --require corral/register` does the
// same without editing the file.
//
//   npm install corral prom-client
//   node prom_client.js                      serve on PORT (default 8000), metrics on
//                                            METRICS_PORT (default 9100) until Ctrl-C
//   PORT=0 node prom_client.js --requests 20
//       bounded: once every worker listens, the primary sends 20 GET requests, reads its own
//       /metrics, prints the cluster-wide request count, then shuts down (code 0).
//
// Remove the first line and it is a node:cluster program that runs the same.
require('corral/register');
const cluster = require('node:cluster');
const { get, countOption, hardTimeout } = require('./support/bounded');
const http = require('node:http');
const os = require('node:os');
const client = require('prom-client');

const PORT = Number(process.env.PORT ?? 8000);
// PORT=0 is how the tests run it: ephemeral ports, on loopback only.
const HOST = PORT === 0 ? '127.0.0.1' : undefined;
const METRICS_PORT = PORT === 0 ? 0 : Number(process.env.METRICS_PORT ?? 9100);
const REQUESTS = countOption('--requests'); // null: serve until stopped

// In every process: the workers answer the primary's requests for metrics from it.
const aggregatorRegistry = new client.AggregatorRegistry();

if (cluster.isPrimary) {
  const numWorkers = os.availableParallelism();
  console.log(`primary ${process.pid}: starting ${numWorkers} workers`);
  let stage = 'waiting for every worker to listen';
  if (REQUESTS !== null) hardTimeout(cluster, 20_000, () => stage);
  process.on('exit', (code) => console.log(`primary exiting (code ${code})`));

  cluster.on('online', (worker) => console.log(`worker ${worker.id} online (pid ${worker.process.pid})`));
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
  });

  const metricsServer = http.createServer(async (req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    try {
      const text = await aggregatorRegistry.clusterMetrics();
      res.writeHead(200, { 'Content-Type': aggregatorRegistry.contentType }).end(text);
    } catch (err) {
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${err.message}\n`);
    }
  });

  let listening = 0;
  cluster.on('listening', async (worker, address) => {
    if (++listening !== numWorkers) return;
    console.log(`all ${numWorkers} workers listening on port ${address.port}`);
    if (REQUESTS === null) return;
    stage = `sending ${REQUESTS} requests`;
    let ok = 0;
    for (let i = 0; i < REQUESTS; i++) if (await get(address.port, '/').then(() => true, () => false)) ok++;
    console.log(`sent ${REQUESTS} requests: ${ok} ok`);
    stage = 'reading /metrics';
    const metrics = await get(metricsServer.address().port, '/metrics');
    // One line per worker that served (the `worker` label), summed here to the cluster's total.
    const counts = [...metrics.matchAll(/^http_requests_total\{worker="\d+"\} (\d+)$/gm)].map((m) => Number(m[1]));
    console.log(`/metrics: http_requests_total ${counts.reduce((a, b) => a + b, 0)} in all`);
    stage = 'waiting for the workers to exit after cluster.disconnect()';
    metricsServer.close();
    console.log('cluster.disconnect()');
    cluster.disconnect();
  });

  metricsServer.listen(METRICS_PORT, HOST, () => {
    console.log(`metrics on http://${HOST ?? 'localhost'}:${metricsServer.address().port}/metrics`);
    for (let i = 0; i < numWorkers; i++) cluster.fork();
  });
} else {
  const requests = new client.Counter({
    name: 'http_requests_total',
    help: 'HTTP requests served',
    labelNames: ['worker'],
  });
  http.createServer((req, res) => {
    requests.inc({ worker: cluster.worker.id });
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`hello from worker ${cluster.worker.id}\n`);
  }).listen(PORT, HOST);
}

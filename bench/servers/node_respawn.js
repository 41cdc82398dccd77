'use strict';
// HTTP server for bench/chaos: 4 workers (BENCH_WORKERS) that the primary restarts whenever
// one exits, as every node:cluster tutorial does. The cluster module comes from
// BENCH_CLUSTER_MODULE (default 'node:cluster'), so node:cluster and corral run the same code.
//
// stdout of the primary: `listening <port>` once, then `worker <pid>` each time a worker listens.
// Stdin EOF or SIGTERM: stop restarting, disconnect, exit.

const http = require('node:http');
const cluster = require(process.env.BENCH_CLUSTER_MODULE || 'node:cluster');

if (cluster.isPrimary) {
  let port = null;
  let stopping = false;
  for (let i = 0; i < Number(process.env.BENCH_WORKERS || 4); i++) cluster.fork();
  cluster.on('listening', (worker, address) => {
    if (port === null) {
      port = address.port;
      console.log(`listening ${port}`);
    }
    console.log(`worker ${worker.process.pid}`);
  });
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
  });
  const stop = () => {
    stopping = true;
    cluster.disconnect(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on('SIGTERM', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
} else {
  http.createServer((req, res) => res.end('hello\n')).listen(0, '127.0.0.1');
}

'use strict';
// register_hook: a node:cluster program that knows nothing of corral, run on corral anyway.
//
//   node --require corral/register register_hook.js                 (CommonJS)
//   NODE_OPTIONS=--require=corral/register node register_hook.js    (also reaches the workers'
//                                                                     own child processes)
//   node --import corral/register app.mjs                           (ES modules)
//   PORT=0 node --require corral/register register_hook.js --requests 10
//       bounded: once every worker listens, the primary sends 10 GET requests, then
//       cluster.disconnect() lets every process exit (code 0).
//
// The hook makes every require('cluster'), require('node:cluster') and import from
// 'node:cluster' in the process return corral, the workers included (fork() passes the
// primary's execArgv and environment on, as Node does). That is also how libraries that use the
// cluster module themselves (prom-client's AggregatorRegistry, @socket.io/sticky,
// @socket.io/cluster-adapter, ...) end up on corral: see prom_client.js. Without the hook this is
// a plain node:cluster program and runs the same.
const cluster = require('node:cluster');
const { get, countOption, hardTimeout } = require('./support/bounded');
const http = require('node:http');
const os = require('node:os');

const PORT = Number(process.env.PORT ?? 8000);
// PORT=0 is how the tests run it: an ephemeral port, on loopback only.
const HOST = PORT === 0 ? '127.0.0.1' : undefined;
const REQUESTS = countOption('--requests'); // null: serve until stopped

if (cluster.isPrimary) {
  const numWorkers = os.availableParallelism();
  // supervise() is corral's own: only there when the hook is in.
  const engine = typeof cluster.supervise === 'function' ? 'corral' : 'node:cluster';
  console.log(`primary ${process.pid}: starting ${numWorkers} workers on ${engine}`);
  let stage = 'waiting for every worker to listen';
  if (REQUESTS !== null) hardTimeout(cluster, 20_000, () => stage);
  process.on('exit', (code) => console.log(`primary exiting (code ${code})`));

  cluster.on('online', (worker) => console.log(`worker ${worker.id} online (pid ${worker.process.pid})`));
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
  });

  let listening = 0;
  cluster.on('listening', async (worker, address) => {
    if (++listening !== numWorkers) return;
    console.log(`all ${numWorkers} workers listening on port ${address.port}`);
    if (REQUESTS === null) return;
    stage = `sending ${REQUESTS} requests`;
    const answers = [];
    for (let i = 0; i < REQUESTS; i++) answers.push(await get(address.port, '/').catch((err) => err.message));
    // Each answer says which engine its worker runs on: the same as the primary's.
    const ok = answers.filter((a) => new RegExp(`^hello from worker \\d+ on ${engine}\n$`).test(a)).length;
    console.log(`sent ${REQUESTS} requests: ${ok} answered by workers on ${engine}`);
    stage = 'waiting for the workers to exit after cluster.disconnect()';
    console.log('cluster.disconnect()');
    cluster.disconnect();
  });

  for (let i = 0; i < numWorkers; i++) cluster.fork();
} else {
  // So is worker.ready(), in a worker.
  const engine = typeof cluster.worker.ready === 'function' ? 'corral' : 'node:cluster';
  http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`hello from worker ${cluster.worker.id} on ${engine}\n`);
  }).listen(PORT, HOST);
}

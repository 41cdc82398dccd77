'use strict';
// What a client waiting for a full cluster costs (server.maxConnections under round-robin):
// 2 workers with maxConnections = 1, both held full by one client each, one more client
// waiting for WAIT_MS; then one of the first clients leaves and the time until the waiting one
// is served is measured. Prints, per round, the primary's CPU time while the client waited and
// that latency; then the medians.
//
//   node bench/max_connections.js                                   node:cluster
//   BENCH_CLUSTER_MODULE=$PWD/bindings/node/index.js node bench/max_connections.js   corral
//
// ROUNDS (default 5) and WAIT_MS (default 1000) change the run. node:cluster bounces the waiting
// connection between its full workers as fast as its IPC goes; corral's primary offers it again
// to a refusing worker after 1 ms, doubling up to 50 ms.
const cluster = require(process.env.BENCH_CLUSTER_MODULE || 'node:cluster');
const net = require('node:net');

const ROUNDS = Number(process.env.ROUNDS || 5);
const WAIT_MS = Number(process.env.WAIT_MS || 1000);

if (cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_RR;
  setTimeout(() => {
    console.error('max_connections: no result after 120 s');
    process.exit(1);
  }, 120_000).unref();
  const workers = [cluster.fork(), cluster.fork()];
  let listening = 0;
  for (const w of workers) {
    w.on('message', (m) => {
      if (m.port && ++listening === workers.length) main(m.port).catch((e) => {
        console.error(e);
        process.exit(1);
      });
    });
  }

  async function main(port) {
    const cpu = [];
    const latency = [];
    for (let r = 0; r < ROUNDS; r++) {
      const a = await open(port);
      const b = await open(port);
      const c = open(port);
      const before = process.cpuUsage();
      await new Promise((resolve) => setTimeout(resolve, WAIT_MS));
      const used = process.cpuUsage(before);
      if (c.greeted) throw new Error('the waiting client was served while both workers were full');
      const t0 = process.hrtime.bigint();
      a.socket.end();
      await c;
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      cpu.push((used.user + used.system) / 1000);
      latency.push(ms);
      console.log(`round ${r + 1}: primary CPU while waiting ${cpu[r].toFixed(1)} ms of ${WAIT_MS} ms, ` +
        `served ${ms.toFixed(2)} ms after room appeared`);
      for (const x of [b, await c]) x.socket.end();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const median = (v) => [...v].sort((x, y) => x - y)[Math.floor(v.length / 2)];
    console.log(`${process.env.BENCH_CLUSTER_MODULE ? 'corral' : 'node:cluster'} ${process.version}: ` +
      `median primary CPU ${median(cpu).toFixed(1)} ms per ${WAIT_MS} ms of waiting, ` +
      `median ${median(latency).toFixed(2)} ms from room to served`);
    cluster.disconnect();
  }
} else {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.write('hi\n');
    s.resume();
  });
  server.maxConnections = 1;
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
}

// A client that resolves once greeted (with { socket, greeted }).
function open(port) {
  const socket = net.connect(port, '127.0.0.1');
  const state = { socket, greeted: false };
  const p = new Promise((resolve, reject) => {
    socket.once('data', () => {
      state.greeted = true;
      resolve(state);
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error('closed before the greeting')));
  });
  Object.defineProperty(p, 'greeted', { get: () => state.greeted });
  return p;
}

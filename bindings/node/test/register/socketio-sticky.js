'use strict';
// @socket.io/sticky: the primary owns the listening socket, reads the first chunk of each
// connection and hands the socket to the worker that owns the socket.io session
// (worker.send(message, socket)), or, for a request with a body, relays it over the channel
// (Buffers: hence serialization 'advanced'). Long-polling clients need several HTTP requests
// per session, each of which must reach the same worker.
const common = require('./common');

if (common.runAsTestFile(__filename)) return;
const cluster = require('cluster');
const http = require('http');

const WORKERS = 2;
const CLIENTS = 4;
const ROUNDS = 3;

if (cluster.isPrimary) {
  common.armTimeout();
  console.log(`runtime: ${common.runtime(cluster)}`);
  cluster.setupPrimary({ serialization: 'advanced' });
  const { setupMaster } = require('@socket.io/sticky');
  const { setupPrimary } = require('@socket.io/cluster-adapter');
  const { io } = require('socket.io-client');
  const httpServer = http.createServer();
  setupMaster(httpServer, { loadBalancingMethod: 'least-connection' });
  // Connections sticky relays (a request with a body) stay the primary's, and its http server
  // never parsed them, so close() would wait for the clients' idle keep-alive sockets: ended here.
  const connections = new Set();
  httpServer.on('connection', (c) => connections.add(c.once('close', () => connections.delete(c))));
  setupPrimary();
  common.setStage('starting the workers');
  const hellos = common.collectHellos(cluster, WORKERS);
  httpServer.listen(0, '127.0.0.1', async () => {
    for (let i = 0; i < WORKERS; i++) cluster.fork();
    console.log(`workers on corral: ${common.onCorral(await hellos)}`);
    const url = `http://127.0.0.1:${httpServer.address().port}`;
    common.setStage(`running ${CLIENTS} long-polling sessions`);
    const results = await Promise.all(Array.from({ length: CLIENTS }, (_, c) => session(io, url, c)));
    const sticky = results.filter((r) => r.ok).length;
    console.log(`sessions: ${sticky} of ${CLIENTS} answered ${ROUNDS} times, each by one worker`);
    if (sticky !== CLIENTS) console.log(`results: ${JSON.stringify(results)}`);
    httpServer.close();
    for (const c of connections) c.destroy();
    common.finish(cluster);
  });
} else {
  const { Server } = require('socket.io');
  const { setupWorker } = require('@socket.io/sticky');
  const { createAdapter } = require('@socket.io/cluster-adapter');
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter() });
  setupWorker(io);
  io.on('connection', (socket) => {
    socket.on('whoami', (n, ack) => ack({ n, worker: cluster.worker.id }));
  });
  process.send(common.workerHello(cluster));
  // When the primary disconnects it: this http server never listened (sticky injects its
  // connections), so its close() ends no connection, and socket.io can keep a session's timer
  // running after close() (1 run in 7 under node:cluster on Node 20): the worker closes what it
  // has and leaves. The test is about the routing, not about socket.io's shutdown.
  const connections = new Set();
  httpServer.on('connection', (c) => connections.add(c.once('close', () => connections.delete(c))));
  cluster.worker.on('disconnect', () => {
    io.close();
    for (const c of connections) c.destroy();
    setImmediate(() => process.exit(0));
  });
}

// One long-polling session: ROUNDS acknowledged emits (each a POST, answered on a GET poll).
async function session(io, url, c) {
  const socket = io(url, { transports: ['polling'], reconnection: false });
  try {
    await new Promise((resolve, reject) => {
      socket.on('connect', resolve);
      socket.on('connect_error', reject);
    });
    const workers = new Set();
    for (let n = 0; n < ROUNDS; n++) {
      const answer = await socket.timeout(5000).emitWithAck('whoami', n);
      if (answer.n !== n) return { c, ok: false, why: `answer ${JSON.stringify(answer)} to ${n}` };
      workers.add(answer.worker);
    }
    return { c, ok: workers.size === 1, workers: [...workers] };
  } catch (e) {
    return { c, ok: false, why: e.message };
  } finally {
    socket.close();
  }
}

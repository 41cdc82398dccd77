'use strict';
// @socket.io/cluster-adapter: a broadcast emitted in one worker reaches the clients of every
// worker, through the primary (the adapter's setupPrimary() relays between the workers with
// the cluster module it requires itself). Each worker listens on its own port (exclusive), so
// the primary's two clients are connected to two different workers.
const common = require('./common');

if (common.runAsTestFile(__filename)) return;
const cluster = require('cluster');
const http = require('http');

const WORKERS = 2;

if (cluster.isPrimary) {
  common.armTimeout();
  console.log(`runtime: ${common.runtime(cluster)}`);
  require('@socket.io/cluster-adapter').setupPrimary();
  const { io } = require('socket.io-client');
  const ports = {};
  cluster.on('message', (worker, m) => {
    if (m && m.port) ports[worker.id] = m.port;
  });
  common.setStage('waiting for the workers to listen');
  common.collectHellos(cluster, WORKERS).then(async (hellos) => {
    console.log(`workers on corral: ${common.onCorral(hellos)}`);
    common.setStage('connecting a client to each worker');
    const clients = await Promise.all([1, 2].map((id) => new Promise((resolve) => {
      const socket = io(`http://127.0.0.1:${ports[id]}`, { transports: ['websocket'], reconnection: false });
      socket.on('connect', () => resolve({ id, socket }));
      socket.on('connect_error', (e) => console.log(`client of worker ${id}: ${e.message}`));
    })));
    common.setStage('waiting for the broadcast to reach both clients');
    const got = clients.map(({ id, socket }) => new Promise((resolve) => {
      socket.on('news', (text) => resolve(`client of worker ${id} got: ${text}`));
    }));
    // The adapter learns of the other workers through its heartbeats; a broadcast sent before
    // then still goes out to every worker (it is published, not addressed).
    clients[0].socket.emit('shout', 'hello everyone');
    for (const line of await Promise.all(got)) console.log(line);
    for (const { socket } of clients) socket.close();
    common.finish(cluster);
  });
  for (let i = 0; i < WORKERS; i++) cluster.fork();
} else {
  const { Server } = require('socket.io');
  const { createAdapter } = require('@socket.io/cluster-adapter');
  const httpServer = http.createServer();
  const io = new Server(httpServer, { adapter: createAdapter() });
  io.on('connection', (socket) => {
    socket.on('shout', (text) => io.emit('news', `${text} (from worker ${cluster.worker.id})`));
  });
  httpServer.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
    process.send({ port: httpServer.address().port });
    process.send(common.workerHello(cluster));
  });
  // The adapter's heartbeat timer and the exclusive server keep a worker alive: close both when
  // the primary disconnects it (a socket.io server closes its http server and its adapters).
  cluster.worker.on('disconnect', () => io.close());
}

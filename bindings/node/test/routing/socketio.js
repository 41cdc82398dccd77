'use strict';
// socket.io with long-polling only (each poll is a new HTTP request) on 4 workers, broadcasts
// through @socket.io/cluster-adapter, without @socket.io/sticky. Run with corral/register (the
// adapter requires node:cluster itself) and the policy as argv[2]: 'sticky' routes every
// request of a client by its `client` query parameter (which socket.io-client adds to each
// request); 'rr' deals them in turn, so a poll reaches a worker that does not know the session.
// Prints "connected <n>/<clients> got <n>/<clients> errors <n> workers <n>", stops the workers
// and exits 0.
const cluster = require('node:cluster');
const http = require('node:http');

const WORKERS = 4;
const CLIENTS = 8;
const policy = process.argv[2];

if (cluster.isPrimary) {
  const { io } = require('socket.io-client');
  require('@socket.io/cluster-adapter').setupPrimary();
  setTimeout(() => {
    console.log('timed out');
    process.exit(1);
  }, 30_000).unref();
  cluster.schedulingPolicy = policy;
  if (policy === 'sticky') cluster.setupPrimary({ sticky: { query: 'client' } });
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  let listening = 0;
  cluster.on('listening', (_w, address) => {
    if (++listening === WORKERS) run(io, address.port);
  });
} else {
  const { Server } = require('socket.io');
  const { createAdapter } = require('@socket.io/cluster-adapter');
  const server = http.createServer();
  const ioServer = new Server(server, { transports: ['polling'], adapter: createAdapter() });
  ioServer.on('connection', (socket) => {
    socket.emit('hello', cluster.worker.id);
  });
  process.on('message', (m) => {
    if (m === 'broadcast') ioServer.emit('news', `from worker ${cluster.worker.id}`);
  });
  server.listen(0, '127.0.0.1');
}

function run(io, port) {
  const sockets = [];
  const workers = new Set();
  let connected = 0;
  let got = 0;
  let errors = 0;
  let settled = 0;
  const done = () => {
    console.log(`connected ${connected}/${CLIENTS} got ${got}/${CLIENTS} errors ${errors} workers ${workers.size}`);
    for (const s of sockets) s.close();
    // Polling keeps HTTP connections open that a graceful disconnect would wait for: the
    // workers are stopped, and the primary leaves once they are gone.
    let left = Object.keys(cluster.workers).length;
    cluster.on('exit', () => {
      if (--left === 0) process.exit(0);
    });
    for (const w of Object.values(cluster.workers)) w.kill();
  };
  const settle = () => {
    if (++settled !== CLIENTS) return;
    if (connected === 0) return done();
    // Every client that connected waits for one broadcast, sent by one worker to all of them.
    cluster.workers[Object.keys(cluster.workers)[0]].send('broadcast');
    setTimeout(done, 2000);
  };
  for (let c = 0; c < CLIENTS; c++) {
    const s = io(`http://127.0.0.1:${port}`, {
      transports: ['polling'],
      query: { client: `c${c}` },
      reconnection: false,
      forceNew: true,
      timeout: 5000,
    });
    sockets.push(s);
    let counted = false;
    s.on('hello', (w) => {
      workers.add(w);
      if (counted) return;
      counted = true;
      connected++;
      // Stay a few polls before counting as connected: rr loses a session on a later poll.
      setTimeout(settle, 1500);
    });
    s.on('news', () => got++);
    const fail = () => {
      errors++;
      if (counted) return;
      counted = true;
      settle();
    };
    s.on('connect_error', fail);
    s.on('disconnect', (reason) => {
      if (reason === 'io client disconnect') return;
      errors++;
      // Lost before its hello (a poll reached a worker that does not know the session): it
      // will never count, so it settles now, as a failed connect does.
      if (!counted) {
        counted = true;
        settle();
      } else if (connected > 0) {
        connected--;
      }
    });
  }
}

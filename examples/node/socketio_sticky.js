'use strict';
// socketio_sticky: socket.io with long-polling on every core, without @socket.io/sticky.
// Long-polling makes each poll a new HTTP request, and socket.io keeps the session in the worker
// that answered the handshake: every request of a client must reach that worker. corral's
// 'sticky' policy does it in the primary (here by the client's `client` query parameter, which
// socket.io-client adds to every request; by address when absent), and
// @socket.io/cluster-adapter carries broadcasts between the workers.
//
//   node socketio_sticky.js                    serve on PORT (default 8000) until Ctrl-C
//   PORT=0 node socketio_sticky.js --clients 8
//       bounded: once every worker listens, the primary connects 8 polling clients, has one
//       worker broadcast to all of them, prints how many connected and how many got it, then
//       stops the workers and exits (code 0).
//
// Under node:cluster (which has no sticky policy) the same file runs round-robin, and the
// polling clients lose their sessions: that is the difference this example shows.
require('corral/register');
const cluster = require('node:cluster');
const { countOption, hardTimeout } = require('./support/bounded');
const http = require('node:http');
const os = require('node:os');

const PORT = Number(process.env.PORT ?? 8000);
const HOST = PORT === 0 ? '127.0.0.1' : undefined;
const CLIENTS = countOption('--clients'); // null: serve until stopped

if (cluster.isPrimary) {
  const numWorkers = os.availableParallelism();
  console.log(`primary ${process.pid}: starting ${numWorkers} workers`);
  let stage = 'waiting for every worker to listen';
  if (CLIENTS !== null) hardTimeout(cluster, 30_000, () => stage);
  process.on('exit', (code) => console.log(`primary exiting (code ${code})`));
  require('@socket.io/cluster-adapter').setupPrimary();
  if (cluster.SCHED_STICKY !== undefined) {
    cluster.schedulingPolicy = cluster.SCHED_STICKY;
    cluster.setupPrimary({ sticky: { query: 'client' } });
    console.log('policy: sticky (by the client query parameter)');
  } else {
    console.log('policy: round-robin (this cluster module has no sticky policy)');
  }
  cluster.on('online', (worker) => console.log(`worker ${worker.id} online (pid ${worker.process.pid})`));
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.id} exited (${signal ? `signal ${signal}` : `code ${code}`})`);
    // Bounded: done once the workers are. socket.io-client can keep a polling request of a lost
    // session pending in this process, which would keep it alive.
    if (CLIENTS !== null && Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  for (let i = 0; i < numWorkers; i++) cluster.fork();
  let listening = 0;
  cluster.on('listening', (_worker, address) => {
    if (++listening !== numWorkers) return;
    console.log(`all ${numWorkers} workers listening on port ${address.port}`);
    if (CLIENTS === null) return;
    stage = `running ${CLIENTS} polling clients`;
    runClients(address.port, CLIENTS).then(({ connected, got }) => {
      console.log(`connected ${connected}/${CLIENTS}, broadcast received by ${got}/${CLIENTS}`);
      stage = 'stopping the workers';
      // Polling clients keep HTTP connections open: each worker closes socket.io and exits.
      for (const worker of Object.values(cluster.workers)) worker.send('stop');
    });
  });
} else {
  const { Server } = require('socket.io');
  const { createAdapter } = require('@socket.io/cluster-adapter');
  const server = http.createServer();
  const io = new Server(server, { transports: ['polling'], adapter: createAdapter() });
  io.on('connection', (socket) => socket.emit('welcome', cluster.worker.id));
  process.on('message', (m) => {
    if (m === 'broadcast') io.emit('news', `from worker ${cluster.worker.id}`);
    if (m === 'stop') io.close(() => process.exit(0));
  });
  server.listen(PORT, HOST);
}

// `n` polling clients; each counts as connected once it got its welcome and kept its session
// for a second of polls; then one worker broadcasts and each client counts the news.
function runClients(port, n) {
  const { io } = require('socket.io-client');
  return new Promise((resolve) => {
    const sockets = [];
    let settled = 0;
    let connected = 0;
    let got = 0;
    const finish = () => {
      for (const s of sockets) s.close();
      resolve({ connected, got });
    };
    const settle = () => {
      if (++settled < n) return;
      if (connected === 0) return finish();
      cluster.workers[Object.keys(cluster.workers)[0]].send('broadcast');
      setTimeout(finish, 1000);
    };
    for (let c = 0; c < n; c++) {
      const s = io(`http://127.0.0.1:${port}`, {
        transports: ['polling'], query: { client: `c${c}` }, reconnection: false, forceNew: true, timeout: 5000,
      });
      sockets.push(s);
      let done = false;
      let lost = false;
      s.on('welcome', () => setTimeout(() => {
        if (done) return;
        done = true;
        if (!lost) connected++;
        settle();
      }, 1000));
      s.on('news', () => { if (!lost) got++; });
      const fail = () => {
        lost = true;
        if (done) return;
        done = true;
        settle();
      };
      s.on('connect_error', fail);
      s.on('disconnect', (reason) => { if (reason !== 'io client disconnect') fail(); });
    }
  });
}

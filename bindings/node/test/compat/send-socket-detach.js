'use strict';
// Scenario: sending a socket detaches it from the sender, as Node does (handleConversion
// 'net.Socket'), instead of destroying it: the sender's server stops counting it, the socket
// keeps no handle and emits no 'close', the client sees no reset and is answered by the worker.
// The server's getConnections() counts the socket the worker holds (it asks the worker), and its
// close() waits for the worker's sockets. With keepOpen: true the sender keeps it usable: both
// the primary and the worker write on it.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const net = require('node:net');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  const w = cluster.fork();
  let senderCloses = 0;
  let clientErrors = 0;
  let round = 0;
  let counted;
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on('close', () => { senderCloses++; });
    const keepOpen = round === 2;
    console.log(`round ${round}: server counts ${server._connections} before the send`);
    w.send({ round, keepOpen }, socket, { keepOpen }, (err) => {
      console.log(`round ${round}: send callback err ${err}`);
      if (!keepOpen) return;
      // Still the primary's too: write on it, then let the worker write and end.
      socket.write('from the primary\n', () => w.send('your turn'));
    });
    console.log(`round ${round}: after the send: server counts ${server._connections}, ` +
      `socket has a handle ${socket._handle !== null}, destroyed ${socket.destroyed}`);
    if (round === 1) {
      // Asked while the worker holds the socket; printed once the round is over (the answer
      // and the client's data come on different sockets).
      counted = new Promise((resolve) => server.getConnections((err, n) => resolve(`err ${err} count ${n}`)));
    }
  });

  const connect = (port) => new Promise((resolve) => {
    const client = net.connect(port, '127.0.0.1');
    let data = '';
    client.setEncoding('utf8');
    client.on('data', (d) => { data += d; });
    client.on('error', (err) => {
      clientErrors++;
      console.log(`round ${round}: client error ${err.code}`);
    });
    client.on('close', () => resolve(data));
    client.write(`ping ${round}\n`);
  });

  w.on('online', () => {
    server.listen(0, '127.0.0.1', async () => {
      const port = server.address().port;
      round = 1;
      console.log(`round 1: client received ${JSON.stringify(await connect(port))}`);
      console.log(`round 1: getConnections right after the send: ${await counted}`);
      round = 2;
      console.log(`round 2: client received ${JSON.stringify(await connect(port))}`);
      console.log(`sender 'close' events ${senderCloses}, client errors ${clientErrors}`);
      server.close(() => {
        console.log('primary: server closed');
        w.disconnect();
      });
    });
  });
  w.on('exit', (code, signal) => console.log(`worker exit code=${code} signal=${signal}`));
} else {
  let kept = null;
  process.on('message', (msg, handle) => {
    if (msg === 'your turn') {
      kept.end('from the worker\n');
      return;
    }
    if (msg.keepOpen) {
      kept = handle;
      handle.resume();
      return;
    }
    let line = '';
    handle.setEncoding('utf8');
    handle.on('data', (d) => {
      line += d;
      if (line.endsWith('\n')) handle.end(`pong from the worker: ${line}`);
    });
  });
}

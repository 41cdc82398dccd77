'use strict';
// A connection the primary handed to a worker just before asking it to disconnect, whose
// request bytes arrive only afterwards: the worker's http server must not destroy it as idle
// (Node 26's close() counts a connection with no request read yet as idle). MODE=silent: a
// client that never sends is really idle: Node 26 destroys it once the grace ends; 20-24 leave
// it open (close() waits for it) until the client leaves, here after CLIENT_GIVES_UP_MS.
const cluster = require(process.env.CORRAL_MODULE);
const http = require('node:http');
const net = require('node:net');

const LATE_MS = 100; // the request follows the disconnect request by this much
const CLIENT_GIVES_UP_MS = 3000;

if (cluster.isPrimary) {
  setTimeout(() => {
    console.log('TIMEOUT');
    process.exit(99);
  }, 15000).unref();
  const silent = process.env.MODE === 'silent';
  const w = cluster.fork();
  let client;
  let reply = '';
  let disconnectedAt = 0;
  w.on('listening', (address) => {
    client = net.connect(address.port, '127.0.0.1');
    client.setEncoding('utf8');
    client.on('data', (d) => (reply += d));
    client.on('error', (e) => console.log(`client error ${e.code}`));
    client.on('close', () => console.log(`client got ${JSON.stringify(reply.split('\r\n')[0])}`));
  });
  w.on('message', (m) => {
    if (m !== 'connection') return;
    w.disconnect();
    disconnectedAt = Date.now();
    if (!silent) setTimeout(() => client.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), LATE_MS);
    else setTimeout(() => client.destroy(), CLIENT_GIVES_UP_MS).unref();
  });
  w.on('exit', (code) => {
    const ms = Date.now() - disconnectedAt;
    console.log(`worker exit ${code} exitedAfterDisconnect=${w.exitedAfterDisconnect}`);
    // The grace is 1000 ms: a silent client holds the worker about that long on Node 26.
    if (silent) {
      const held = ms >= 900 && ms < 2500 ? 'about the grace' : ms >= CLIENT_GIVES_UP_MS ? 'until the client left' : `${ms} ms`;
      console.log(`held ${held}`);
    }
  });
} else {
  const server = http.createServer((req, res) => res.end('served'));
  server.on('connection', () => process.send('connection'));
  server.listen(0, '127.0.0.1');
}

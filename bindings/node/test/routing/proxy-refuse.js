'use strict';
// A connection refused at maxConnections keeps the client its PROXY header named: one worker,
// server.maxConnections = 1, the PROXY protocol on. Client A (header: 198.51.100.1:1111) holds
// the worker; client B (header: 127.0.0.9:4242) is dealt to it, refused (its header already
// consumed by the primary) and waits; after WAIT ms A leaves and B is dealt again. The worker
// answers each with its socket's remoteAddress and remotePort. Prints "A ..." and "B ...", then
// "done".
const cluster = require(process.env.CORRAL_MODULE);
const net = require('node:net');

const WAIT = 200;

if (cluster.isPrimary) {
  setTimeout(() => {
    console.log('TIMEOUT');
    process.exit(99);
  }, 20000).unref();
  cluster.setupPrimary({ proxyProtocol: true });
  const w = cluster.fork();
  cluster.on('listening', async (_w, address) => {
    const a = await greeted(address.port, 'PROXY TCP4 198.51.100.1 127.0.0.1 1111 80\r\n');
    console.log(`A ${a.line}`);
    const b = greeted(address.port, 'PROXY TCP4 127.0.0.9 127.0.0.1 4242 80\r\n');
    await new Promise((resolve) => setTimeout(resolve, WAIT));
    a.socket.end();
    const bb = await b;
    console.log(`B ${bb.line}`);
    bb.socket.end();
    console.log('done');
    w.disconnect();
  });
} else {
  const server = net.createServer((s) => {
    s.write(`${s.remoteAddress} ${s.remotePort}\n`);
    s.resume();
  });
  server.maxConnections = 1;
  server.listen(0, '127.0.0.1');
}

function greeted(port, header) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(header));
    let line = '';
    socket.on('data', (d) => {
      line += d;
      if (line.includes('\n')) resolve({ socket, line: line.trim() });
    });
    socket.on('error', reject);
  });
}

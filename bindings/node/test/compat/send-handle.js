'use strict';
// Scenario: sending a handle. The primary accepts a TCP connection on its own net.Server
// (pauseOnConnect) and hands the socket to a worker with worker.send(msg, socket); the worker
// gets a net.Socket as the second 'message' argument, reads the client's line from it and
// answers on it. The client in the primary sees the worker's answer.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const net = require('node:net');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  // The worker's report (IPC) and the client's data (TCP) travel on different sockets: collect
  // both and print them once the worker has exited.
  let report = 'none';
  let received = 'none';
  const w = cluster.fork();
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    const ret = w.send({ cmd: 'take this socket' }, socket, (err) => {
      console.log(`primary: send callback err ${err}`);
    });
    console.log(`primary: worker.send(msg, socket) returned ${ret}`);
  });
  w.on('online', () => {
    server.listen(0, '127.0.0.1', () => {
      const client = net.connect(server.address().port, '127.0.0.1');
      let data = '';
      client.setEncoding('utf8');
      client.on('data', (d) => { data += d; });
      client.on('end', () => {
        received = JSON.stringify(data);
        server.close();
        w.disconnect();
      });
      client.on('error', (err) => console.log(`client error ${err.code}`));
      client.write('ping\n');
    });
  });
  w.on('message', (msg) => { report = msg; });
  w.on('exit', (code, signal) => {
    console.log(`worker report: ${report}`);
    console.log(`client received: ${received}`);
    console.log(`worker exit code=${code} signal=${signal}`);
  });
} else {
  process.on('message', (msg, handle) => {
    if (msg.cmd !== 'take this socket') return;
    process.send(`message ${JSON.stringify(msg)}, handle is a net.Socket ${handle instanceof net.Socket}, ` +
      `remoteAddress ${handle.remoteAddress}, readable ${handle.readable} writable ${handle.writable}`);
    let line = '';
    handle.setEncoding('utf8');
    handle.on('data', (d) => {
      line += d;
      if (line.endsWith('\n')) handle.end(`pong from worker ${cluster.worker.id}: ${line}`);
    });
  });
}

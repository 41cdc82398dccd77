'use strict';
// Scenario: sending the same handle twice (lib/internal/child_process.js handleConversion). A
// socket sent without keepOpen is detached from the sender, so the second message goes out
// without a handle, and nothing throws; a server sent is not closed in the sender. The worker
// answers the client on the socket it got; the client sees the answer.
// (Not compared: what send() returns for a third message while a handle waits for the
// receiver's acknowledgement, false on Node, true on corral; and a server sent twice, which
// arrives twice on Node 22+ and once on Node 20.)
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const net = require('node:net');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  const reports = [];
  let received = 'none';
  const w = cluster.fork();
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    const sent = [];
    try {
      sent.push(w.send({ n: 1, what: 'socket' }, socket));
      sent.push(w.send({ n: 2, what: 'socket again' }, socket));
      w.send({ n: 3, what: 'server' }, server, () => {
        console.log(`primary: last send callback, server still listening ${server.listening}`);
      });
      console.log(`primary: sends returned ${sent.join(' ')}, nothing thrown`);
    } catch (e) {
      console.log(`primary: send threw ${e.code}`);
    }
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
        w.send('done');
      });
      client.on('error', (err) => console.log(`client error ${err.code}`));
      client.write('ping\n');
    });
  });
  w.on('message', (msg) => { reports.push(msg); });
  w.on('exit', (code, signal) => {
    for (const r of reports) console.log(`worker: ${r}`);
    console.log(`client received: ${received}`);
    console.log(`worker exit code=${code} signal=${signal}`);
  });
} else {
  const servers = [];
  process.on('message', (msg, handle) => {
    if (msg === 'done') {
      for (const s of servers) s.close();
      cluster.worker.disconnect();
      return;
    }
    const kind = handle === undefined ? 'no handle' : handle instanceof net.Socket ? 'a net.Socket'
      : handle instanceof net.Server ? 'a net.Server' : handle.constructor.name;
    process.send(`message ${msg.n} (${msg.what}) came with ${kind}`);
    if (handle instanceof net.Server) servers.push(handle);
    if (handle instanceof net.Socket) {
      let line = '';
      handle.setEncoding('utf8');
      handle.on('data', (d) => {
        line += d;
        if (line.endsWith('\n')) handle.end(`pong: ${line}`);
      });
    }
  });
}

'use strict';
// Scenario: a server (or datagram socket) that a worker closes in its own listen callback, as
// the "find a free port" idiom does (listen(0), read address().port, close()). node:cluster's
// worker sends 'listening' to the primary only while the listen key still has an open server
// (lib/internal/cluster/child.js: "short-lived sockets might have been closed"), so the primary
// hears nothing of it and the worker's state stays 'online' until a server that stays open
// listens. Run under both scheduling policies (a stand-in handle under rr, the shared socket
// under none).
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const dgram = require('node:dgram');
const net = require('node:net');

const policy = require('../compat-support/each-policy')(cluster, 'LISTEN_SHORT_LIVED_POLICY');
if (policy === null) return;
const log = (s) => console.log(`${policy}: ${s}`);

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  const w = cluster.fork();
  cluster.on('listening', (worker, a) => {
    log(`primary: 'listening' ${a.addressType} port>0 ${a.port > 0} keys ${Object.keys(a).join(',')}, ` +
      `worker state ${worker.state}`);
  });
  w.on('message', (m) => {
    log(`primary: message ${JSON.stringify(m)}, worker state ${w.state}`);
    if (m.step === 'kept open') w.disconnect();
  });
  w.on('exit', (code, signal) => log(`primary: exit ${code} ${signal}`));
} else {
  const state = () => cluster.worker.state;
  // 1. TCP: listen, take the port, close at once.
  const probe = net.createServer().listen(0, '127.0.0.1', () => {
    const found = probe.address().port > 0;
    probe.close(() => {
      process.send({ step: 'tcp probe closed', found, state: state() });
      // 2. UDP: bind, take the port, close at once.
      const sock = dgram.createSocket('udp4');
      sock.bind(0, '127.0.0.1', () => {
        const udpFound = sock.address().port > 0;
        sock.close(() => {
          process.send({ step: 'udp probe closed', found: udpFound, state: state() });
          // 3. A server that stays open: the primary hears of this one.
          const server = net.createServer().listen(0, '127.0.0.1', () => {
            process.send({ step: 'kept open', state: state() });
          });
        });
      });
    });
  });
}

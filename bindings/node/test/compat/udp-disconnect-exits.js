'use strict';
// Scenario: a worker's shared dgram sockets close when it disconnects, so an idle worker exits
// by itself. Worker 1 is disconnected by the primary (worker.disconnect()), worker 2 calls
// cluster.worker.disconnect() itself; neither calls close() nor process.exit(). Both exit 0 with
// exitedAfterDisconnect true, and once both left the port binds again.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const dgram = require('node:dgram');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  let port = 0;
  let listening = 0;
  cluster.on('listening', (w, address) => {
    port = address.port;
    if (++listening === 2) {
      cluster.workers[1].disconnect();
      cluster.workers[2].send('disconnect yourself');
    }
  });
  const exits = [];
  cluster.on('exit', (w, code, signal) => {
    exits.push(`worker ${w.id} code ${code} signal ${signal} exitedAfterDisconnect ${w.exitedAfterDisconnect}`);
    if (exits.length === 2) {
      for (const e of exits.sort()) console.log(e);
      const s = dgram.createSocket('udp4');
      s.on('error', (e) => console.log(`bind after both left: ${e.code}`));
      s.bind({ port, address: '127.0.0.1', exclusive: true }, () => {
        console.log('bind after both left: free');
        s.close();
      });
    }
  });
  cluster.fork();
  cluster.fork();
} else {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, rinfo) => s.send('pong', rinfo.port, rinfo.address));
  s.bind(0, '127.0.0.1');
  process.on('message', () => cluster.worker.disconnect());
}

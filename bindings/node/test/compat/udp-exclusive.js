'use strict';
// Scenario: dgram bind({ exclusive: true }) in a worker binds privately: two workers binding
// port 0 exclusively get two ports, and the primary sees no 'listening' for them. A second
// worker asking for the first one's port exclusively gets EADDRINUSE in the worker (syscall
// bind); asking for it without exclusive, the primary's bind fails the same way and the error
// reaches the worker's socket. A non-exclusive bind(0) next to them still works and reports
// 'listening'; one from a socket made with reuseAddr: true is bound with SO_REUSEADDR by the
// primary, so another reuseAddr socket can bind its port.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const dgram = require('node:dgram');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  const listening = [];
  cluster.on('listening', (w, address) => listening.push(`worker ${w.id} ${address.addressType}`));
  const w1 = cluster.fork();
  w1.once('message', (r1) => {
    const w2 = cluster.fork({ TAKEN: String(r1.port) });
    w2.once('message', (r2) => {
      console.log(`worker 1 exclusive bind(0): a port ${r1.port > 0}`);
      console.log(`worker 2 exclusive bind(0): a port ${r2.zero > 0}, another one ${r2.zero !== r1.port}`);
      console.log(`worker 2 exclusive bind(taken): ${r2.exclusive}`);
      console.log(`worker 2 shared bind(taken): ${r2.shared}`);
      console.log(`worker 2 shared bind(0): ${r2.sharedZero}`);
      console.log(`primary 'listening' events: ${listening.join(', ') || 'none'}`);
      const other = dgram.createSocket({ type: 'udp4', reuseAddr: true });
      other.on('error', (e) => {
        console.log(`worker 2 shared reuseAddr bind(0): another reuseAddr socket on its port ${e.code}`);
        cluster.disconnect(() => console.log('disconnected'));
      });
      other.bind({ port: r2.reuse, address: '127.0.0.1', exclusive: true }, () => {
        console.log('worker 2 shared reuseAddr bind(0): another reuseAddr socket on its port ok');
        other.close();
        cluster.disconnect(() => console.log('disconnected'));
      });
    });
  });
} else {
  const bind = (opts, reuseAddr = false) => new Promise((resolve) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr });
    s.on('error', (e) => {
      s.close();
      const port = process.env.TAKEN;
      resolve(`${e.code} syscall ${e.syscall} errno ${e.errno === -require('node:os').constants.errno[e.code]} ` +
        `message ${e.message.replace(port, 'TAKEN')}`);
    });
    s.bind(opts, () => resolve(s));
  });
  (async () => {
    const zero = await bind({ port: 0, address: '127.0.0.1', exclusive: true });
    if (!process.env.TAKEN) {
      process.send({ port: zero.address().port });
      process.on('disconnect', () => zero.close());
      return;
    }
    const port = Number(process.env.TAKEN);
    const exclusive = await bind({ port, address: '127.0.0.1', exclusive: true });
    const shared = await bind({ port, address: '127.0.0.1' });
    const sharedZero = await bind({ port: 0, address: '127.0.0.1' });
    const reuse = await bind({ port: 0, address: '127.0.0.1' }, true);
    process.send({
      zero: zero.address().port,
      exclusive,
      shared,
      sharedZero: typeof sharedZero === 'string' ? sharedZero : `a port ${sharedZero.address().port > 0}`,
      reuse: typeof reuse === 'string' ? reuse : reuse.address().port,
    });
    process.on('disconnect', () => zero.close());
  })();
}

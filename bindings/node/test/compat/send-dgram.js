'use strict';
// Scenario: sending dgram.Socket handles, both ways (handleConversion 'dgram.Socket'). The
// primary sends a bound udp4 and a bound udp6 socket with worker.send(msg, socket); the worker
// gets each as a bound dgram.Socket of the same type and port, which receives the datagrams
// sent to that port and answers them. The worker sends its own bound udp4 socket with
// process.send(msg, socket); the primary gets it the same way. The sender's socket stays open
// (Node does not close it); each sender closes its copy once the send callback ran, so only
// the receiver reads the port afterwards.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const dgram = require('node:dgram');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  const w = cluster.fork();
  const reports = [];
  w.on('message', async (msg, handle) => {
    if (typeof msg === 'string') {
      reports.push(msg);
      return;
    }
    if (msg.cmd !== 'take my socket') return;
    // The worker's socket, received here.
    console.log(`primary: got ${describe(handle, msg.port)}`);
    handle.on('message', (data, rinfo) => handle.send(`echo ${data} from the primary`, rinfo.port, rinfo.address));
    console.log(`primary: ${await ping('udp4', '127.0.0.1', msg.port)}`);
    handle.close();
    w.send('bye');
  });
  w.on('online', async () => {
    for (const [type, address] of [['udp4', '127.0.0.1'], ['udp6', '::1']]) {
      const s = dgram.createSocket(type);
      await new Promise((resolve) => s.bind(0, address, resolve));
      const port = s.address().port;
      await new Promise((resolve) => {
        const ret = w.send({ cmd: 'take this socket', type, port }, s, (err) => {
          console.log(`primary: ${type} send callback err ${err}, still bound ${s.address().port === port}`);
          resolve();
        });
        console.log(`primary: worker.send(msg, ${type} socket) returned ${ret}`);
      });
      s.close();
      console.log(`primary: ${await ping(type, address, port)}`);
    }
    w.send('your turn');
  });
  w.on('exit', (code, signal) => {
    for (const r of reports) console.log(`worker: ${r}`);
    console.log(`worker exit code=${code} signal=${signal}`);
  });
} else {
  process.on('message', async (msg, handle) => {
    if (msg === 'bye') {
      process.disconnect();
      return;
    }
    if (msg === 'your turn') {
      const s = dgram.createSocket('udp4');
      await new Promise((resolve) => s.bind(0, '127.0.0.1', resolve));
      const port = s.address().port;
      process.send({ cmd: 'take my socket', port }, s, (err) => {
        process.send(`udp4 send callback err ${err}`);
        s.close();
      });
      return;
    }
    if (msg.cmd !== 'take this socket') return;
    process.send(`got ${describe(handle, msg.port)}`);
    handle.on('message', (data, rinfo) => {
      handle.send(`echo ${data} from the worker`, rinfo.port, rinfo.address, () => handle.close());
    });
  });
}

function describe(handle, port) {
  if (!(handle instanceof dgram.Socket)) return `not a dgram.Socket: ${handle}`;
  const a = handle.address();
  return `a dgram.Socket type ${handle.type}, bound to the sender's port ${a.port === port}, address ${a.address}`;
}

// Sends one datagram to the port from a new socket; resolves with the answer.
function ping(type, address, port) {
  return new Promise((resolve) => {
    const c = dgram.createSocket(type);
    c.on('message', (data) => {
      c.close();
      resolve(`${type} client received ${JSON.stringify(String(data))}`);
    });
    c.send('ping', port, address);
  });
}

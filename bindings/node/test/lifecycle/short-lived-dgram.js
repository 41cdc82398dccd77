'use strict';
// A worker's dgram socket closed by its own bind callback while another socket of the worker
// shares its key (address, port 0, type): the primary hears 'listening' only for the one that
// stays open, and the worker goes on. (node:cluster's worker crashes here with
// ERR_SOCKET_DGRAM_NOT_RUNNING: its check for a closed socket only looks at the key.)
const cluster = require(process.env.CORRAL_MODULE);
const dgram = require('node:dgram');
if (cluster.isPrimary) {
  const listening = [];
  cluster.on('listening', (w, a) => listening.push(`${a.addressType} ${a.address}`));
  const w = cluster.fork();
  w.on('message', (m) => {
    console.log(m);
    w.disconnect();
  });
  w.on('exit', (code) => {
    console.log(`worker exit ${code}`);
    console.log(`'listening' events: ${listening.join(', ')}`);
  });
} else {
  const keep = dgram.createSocket('udp4');
  const short = dgram.createSocket('udp4');
  short.bind(0, '127.0.0.1', () => short.close());
  keep.bind(0, '127.0.0.1', () => {
    setTimeout(() => process.send(`kept socket bound ${keep.address().port > 0}`), 50);
  });
}

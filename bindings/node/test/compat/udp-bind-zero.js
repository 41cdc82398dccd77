'use strict';
// Scenario: dgram bind(0) in a cluster. Three workers each bind two udp4 sockets, A with bind()
// (no arguments: every interface, port 0) and B with bind(0, '127.0.0.1'). Every worker's A gets
// the same kernel-chosen port, every worker's B too, and a second socket of the same worker on
// the same address is another socket (node:cluster's per-worker index): a third socket C, again
// bind(0, '127.0.0.1') in each worker, gets a port of its own, shared by the three workers.
// Datagrams to A (through 127.0.0.1) and B are answered; once cluster.disconnect() has ended
// every worker, every port is free: the primary keeps none of them.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout, allExited } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const dgram = require('node:dgram');

const N = 3;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  const reports = new Map();
  let listening = 0;
  const types = new Set();
  cluster.on('listening', (w, address) => {
    listening++;
    types.add(`${address.addressType} ${address.address} fd ${address.fd}`);
    maybeCheck();
  });
  cluster.on('message', (w, msg) => {
    reports.set(w.id, msg);
    maybeCheck();
  });
  for (let i = 0; i < N; i++) cluster.fork();

  function maybeCheck() {
    if (reports.size === N && listening === 3 * N) check();
  }

  async function check() {
    const all = [...reports.values()];
    const { a, b, c } = all[0];
    console.log(`workers reporting ${all.length}`);
    console.log(`A same port ${all.every((r) => r.a === a)}, B same port ${all.every((r) => r.b === b)}, ` +
      `C same port ${all.every((r) => r.c === c)}`);
    console.log(`A, B and C differ ${a !== b && b !== c && a !== c}`);
    for (const t of [...types].sort()) console.log(`'listening': ${t}`);
    console.log(`A answers ${await ask(a)}`);
    console.log(`B answers ${await ask(b)}`);
    console.log(`C answers ${await ask(c)}`);
    cluster.disconnect(async () => {
      await allExited(cluster);
      console.log(`after cluster.disconnect: A ${await tryBind('0.0.0.0', a)}, B ${await tryBind('127.0.0.1', b)}, ` +
        `C ${await tryBind('127.0.0.1', c)}`);
    });
  }

  function ask(port) {
    return new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      const t = setTimeout(() => { s.close(); resolve('nothing'); }, 5000);
      s.on('message', (m) => { clearTimeout(t); s.close(); resolve(String(m).replace(/\d+/, 'N')); });
      s.send('hi', port, '127.0.0.1');
    });
  }
} else {
  const bindOne = (...args) => new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.on('message', (m, rinfo) => s.send(`worker ${cluster.worker.id}`, rinfo.port, rinfo.address));
    s.on('error', (e) => resolve(`error ${e.code}`));
    s.bind(...args, () => resolve(s.address().port));
  });
  (async () => {
    const a = await bindOne();
    const b = await bindOne(0, '127.0.0.1');
    const c = await bindOne(0, '127.0.0.1');
    process.send({ a, b, c });
  })();
}

function tryBind(host, port) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.on('error', (e) => resolve(e.code));
    s.bind({ port, address: host, exclusive: true }, () => {
      s.close();
      resolve('free');
    });
  });
}

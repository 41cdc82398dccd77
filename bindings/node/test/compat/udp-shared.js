'use strict';
// Scenario: dgram sockets shared through the primary, under both scheduling policies (UDP is
// never round-robined: the primary binds once and every worker gets the same socket). Two
// workers each bind a udp4 socket on 127.0.0.1 and a udp6 one on ::1, both on port 0: both
// workers get the same two ports; the primary sees 'listening' with addressType 'udp4' and
// 'udp6' and fd -1 for each; every worker answers datagrams sent to those ports (the kernel
// picks which one reads each). Once cluster.disconnect() has ended both workers (they exit by
// themselves), both ports bind again: the primary keeps neither socket.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout, allExited } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const dgram = require('node:dgram');

const POLICY = require('../compat-support/each-policy')(cluster, 'UDP_SHARED_POLICY');
const N = 2;

if (POLICY === null) {
  // The driver ran one cluster per policy.
} else if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  const out = (line) => console.log(`${POLICY}: ${line}`);
  const events = [];
  const reports = new Map();
  cluster.on('listening', (w, address) => {
    events.push({ id: w.id, address });
    maybeCheck();
  });
  cluster.on('message', (w, msg) => {
    reports.set(w.id, msg);
    maybeCheck();
  });
  const exits = [];
  cluster.on('exit', (w, code, signal) => exits.push(`${code}/${signal}`));
  for (let i = 0; i < N; i++) cluster.fork();

  function maybeCheck() {
    if (reports.size === N && events.length === 2 * N) check();
  }

  async function check() {
    const all = [...reports.values()];
    const { v4, v6 } = all[0];
    out(`workers reporting ${all.length}`);
    out(`same udp4 port ${all.every((r) => r.v4 === v4)}, same udp6 port ${all.every((r) => r.v6 === v6)}`);
    const shapes = new Set(events.map((e) => `${Object.keys(e.address).sort().join(',')} ` +
      `${e.address.addressType} ${e.address.address} fd ${e.address.fd} ` +
      `port ${e.address.port === (e.address.addressType === 'udp4' ? v4 : v6) ? 'same' : e.address.port}`));
    for (const s of [...shapes].sort()) out(`'listening': ${s}`);
    out(`'listening' per worker ${[...new Set(events.map((e) => e.id))].map((id) => events.filter((e) => e.id === id).length).join(',')}`);
    out(`udp4 answered by ${(await askUntilAll('udp4', '127.0.0.1', v4)).size} workers`);
    out(`udp6 answered by ${(await askUntilAll('udp6', '::1', v6)).size} workers`);
    cluster.disconnect(async () => {
      await allExited(cluster);
      out(`after cluster.disconnect: bind udp4 ${await tryBind('udp4', '127.0.0.1', v4)}, ` +
        `bind udp6 ${await tryBind('udp6', '::1', v6)}`);
      out(`exits ${exits.join(' ')}`);
    });
  }

  // Datagrams until every worker answered one (at most 400, 200 ms each).
  async function askUntilAll(type, host, port) {
    const c = dgram.createSocket(type);
    const seen = new Set();
    c.on('message', (m) => seen.add(String(m)));
    await new Promise((r) => c.bind(0, host, r));
    for (let i = 0; i < 400 && seen.size < N; i++) {
      c.send('hi', port, host);
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 50));
    c.close();
    return seen;
  }
} else {
  // After each answer the worker's loop stops for 5 ms: meanwhile the other worker, also woken,
  // reads the next datagram (so both answer some, whatever the scheduler prefers).
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const bindOne = (type, host) => new Promise((resolve) => {
    const s = dgram.createSocket(type);
    s.on('message', (m, rinfo) => {
      s.send(`worker ${cluster.worker.id}`, rinfo.port, rinfo.address);
      Atomics.wait(pause, 0, 0, 5);
    });
    s.on('error', (e) => resolve(`error ${e.code}`));
    s.bind(0, host, () => resolve(s.address().port));
  });
  Promise.all([bindOne('udp4', '127.0.0.1'), bindOne('udp6', '::1')])
    .then(([v4, v6]) => process.send({ v4, v6 }));
}

function tryBind(type, host, port) {
  return new Promise((resolve) => {
    const s = dgram.createSocket(type);
    s.on('error', (e) => resolve(e.code));
    s.bind({ port, address: host, exclusive: true }, () => {
      s.close();
      resolve('ok');
    });
  });
}

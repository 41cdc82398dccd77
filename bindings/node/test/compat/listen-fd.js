'use strict';
// Scenario: listen({ fd }) and bind({ fd }) in a worker name the primary's fd, as with socket
// activation: the primary is started with a listening TCP socket as fd 3 and a bound UDP
// socket as fd 4 (the driver holds them and runs the primary once per policy). Two workers
// listen({ fd: 3 }) and bind({ fd: 4 }): HTTP requests and datagrams are served by the workers,
// the primary sees 'listening' for each (address null, the fd, the port), and an fd the primary
// does not have gives EINVAL (net: syscall bind; dgram: syscall open). (node:cluster closes the
// primary's fd N when the last worker leaves, corral keeps it: not compared here.)
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const { spawnSync } = require('node:child_process');
const dgram = require('node:dgram');
const http = require('node:http');
const net = require('node:net');

const POLICY = process.env.LISTEN_FD_POLICY;
const N = 2;

if (cluster.isPrimary && !POLICY) {
  // The driver: the sockets the primaries inherit, as a service manager would pass them.
  const tcp = net.createServer();
  const udp = dgram.createSocket('udp4');
  tcp.listen(0, '127.0.0.1', () => udp.bind(0, '127.0.0.1', () => {
    // dgram keeps its handle (and so the fd) under Symbol('state symbol').
    const state = udp[Object.getOwnPropertySymbols(udp).find((s) => s.description === 'state symbol')];
    const env = { TCP_PORT: String(tcp.address().port), UDP_PORT: String(udp.address().port) };
    for (const p of ['rr', 'none']) {
      const r = spawnSync(process.execPath, [__filename], {
        env: { ...process.env, ...env, LISTEN_FD_POLICY: p },
        stdio: ['ignore', 'inherit', 'inherit', tcp._handle.fd, state.handle.fd],
        timeout: 20000,
        killSignal: 'SIGKILL',
      });
      if (r.status !== 0) console.log(`${p}: exited with ${r.status} ${r.signal}`);
    }
    console.log('driver exit 0');
    tcp.close();
    udp.close();
  }));
} else if (cluster.isPrimary) {
  cluster.schedulingPolicy = POLICY === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
  armTimeout(cluster, 15000);
  const out = (line) => console.log(`${POLICY}: ${line}`);
  const tcpPort = Number(process.env.TCP_PORT);
  const udpPort = Number(process.env.UDP_PORT);
  const shapes = new Set();
  let listening = 0;
  const reports = new Map();
  cluster.on('listening', (w, a) => {
    const port = a.port === tcpPort ? 'TCP_PORT' : a.port === udpPort ? 'UDP_PORT' : a.port;
    shapes.add(`${Object.keys(a).sort().join(',')} addressType ${a.addressType} address ${a.address} fd ${a.fd} port ${port}`);
    listening++;
    maybeCheck();
  });
  cluster.on('message', (w, msg) => {
    reports.set(w.id, msg);
    maybeCheck();
  });
  for (let i = 0; i < N; i++) cluster.fork();

  function maybeCheck() {
    if (reports.size === N && listening === 2 * N) check();
  }

  async function check() {
    for (const r of [...reports.values()]) {
      out(`worker: tcp port ${r.tcp === tcpPort ? 'TCP_PORT' : r.tcp}, udp port ${r.udp === udpPort ? 'UDP_PORT' : r.udp}`);
      out(`worker: listen({ fd: 99 }) ${r.badNet}; bind({ fd: 99 }) ${r.badDgram}`);
    }
    for (const s of [...shapes].sort()) out(`'listening': ${s}`);
    const bodies = [];
    for (let i = 0; i < 10; i++) bodies.push(await get(tcpPort));
    out(`GET x10 -> every one answered by a worker ${bodies.every((b) => /^200 worker \d+$/.test(b))}`);
    out(`datagram -> ${(await ask(udpPort)).replace(/\d+/, 'N')}`);
    cluster.disconnect(() => out('disconnected'));
  }
} else {
  const srv = http.createServer((req, res) => {
    res.setHeader('Connection', 'close');
    res.end(`worker ${cluster.worker.id}`);
  });
  const sock = dgram.createSocket('udp4');
  sock.on('message', (m, rinfo) => sock.send(`worker ${cluster.worker.id}`, rinfo.port, rinfo.address));
  const errorOf = (e) => `${e.code} syscall ${e.syscall} message ${e.message}`;
  const badNet = new Promise((resolve) => {
    const s = net.createServer();
    s.on('error', (e) => resolve(errorOf(e)));
    s.listen({ fd: 99 }, () => resolve('listening?'));
  });
  const badDgram = new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.on('error', (e) => resolve(errorOf(e)));
    s.bind({ fd: 99 }, () => resolve('bound?'));
  });
  const tcp = new Promise((resolve) => srv.listen({ fd: 3 }, () => resolve(srv.address().port)));
  const udp = new Promise((resolve) => sock.bind({ fd: 4 }, () => resolve(sock.address().port)));
  Promise.all([tcp, udp, badNet, badDgram]).then(([tcp, udp, badNet, badDgram]) => {
    process.send({ tcp, udp, badNet, badDgram });
  });
}

function get(port) {
  return new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(`${res.statusCode} ${body}`));
    }).on('error', (err) => resolve(`error ${err.code}`));
  });
}

function ask(port) {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    const t = setTimeout(() => { s.close(); resolve('nothing'); }, 5000);
    s.on('message', (m) => { clearTimeout(t); s.close(); resolve(String(m)); });
    s.send('hi', port, '127.0.0.1');
  });
}

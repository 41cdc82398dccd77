'use strict';
// Scenario: listen(0) in a cluster. Three workers each start two servers, A then B, both on
// 127.0.0.1 port 0. Every worker's A gets the same port, every worker's B gets the same port,
// and A and B differ (the key includes the per-worker listen index). 'listening' fires once per
// server. After cluster.disconnect() the port is closed.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');
const net = require('node:net');

const N = 3;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  const eventPorts = new Map(); // worker id -> ports from 'listening' events
  const reported = new Map(); // worker id -> { a, b } from the worker's server.address()
  // The worker's listen callback runs before its 'listening' reaches the primary, so its report
  // can arrive before its last 'listening' event: wait for both.
  let listeningEvents = 0;
  const maybeCheck = () => {
    if (reported.size === N && listeningEvents === 2 * N) check();
  };
  cluster.on('listening', (w, address) => {
    eventPorts.get(w.id).push(address.port);
    listeningEvents++;
    maybeCheck();
  });
  cluster.on('message', (w, msg) => {
    reported.set(w.id, msg);
    maybeCheck();
  });
  for (let i = 0; i < N; i++) eventPorts.set(cluster.fork().id, []);

  async function check() {
    const all = [...reported.values()];
    const a = all[0].a;
    const b = all[0].b;
    console.log(`workers reporting ${all.length}`);
    console.log(`same port ${all.every((r) => r.a === a)}`);
    console.log(`server B same port ${all.every((r) => r.b === b)}`);
    console.log(`A and B differ ${a !== b}`);
    const perWorker = [...eventPorts.values()];
    console.log(`'listening' events per worker ${perWorker.map((p) => p.length).join(',')}`);
    console.log(`'listening' ports are A and B ${perWorker.every((p) => p.length === 2 && p.includes(a) && p.includes(b))}`);
    console.log(`GET A -> ${await get(a)}`);
    console.log(`GET B -> ${await get(b)}`);
    cluster.disconnect(async () => {
      console.log(`after cluster.disconnect: connect A ${await tryConnect(a)}, connect B ${await tryConnect(b)}`);
    });
  }
} else {
  const make = (name) => http.createServer((req, res) => {
    res.setHeader('Connection', 'close');
    res.end(`server ${name}`);
  });
  const a = make('A');
  const b = make('B');
  let ready = 0;
  const onListening = () => {
    if (++ready === 2) process.send({ a: a.address().port, b: b.address().port });
  };
  a.listen(0, '127.0.0.1', onListening);
  b.listen(0, '127.0.0.1', onListening);
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

function tryConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.on('connect', () => { sock.destroy(); resolve('connected'); });
    sock.on('error', (err) => resolve(err.code));
  });
}

'use strict';
// Scenario: graceful drain on SIGTERM. Two workers serve HTTP; a slow request (300 ms) is in
// flight in one of them when the primary sends itself SIGTERM. Its handler calls
// cluster.disconnect(): the listen socket stops accepting at once (a new connection is refused),
// the in-flight request still completes with 200, both workers exit 0 with
// exitedAfterDisconnect, and the primary exits by itself with code 0 (nothing keeps it alive).
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');
const net = require('node:net');

const SLOW_MS = 300;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  const results = { response: 'none', refused: 'not tried', callback: 'not called', exits: [] };
  process.on('exit', (code) => {
    console.log(`in-flight request: ${results.response}`);
    console.log(`new connection after cluster.disconnect(): ${results.refused}`);
    console.log(`cluster.disconnect callback: ${results.callback}`);
    console.log(`worker exits: ${results.exits.sort().join(', ')}`);
    console.log(`primary exit ${code}`);
  });

  let port;
  let listening = 0;
  cluster.on('listening', (w, address) => {
    port = address.port;
    if (++listening === 2) slowRequest();
  });
  cluster.on('exit', (w, code, signal) => {
    results.exits.push(`worker ${w.id} code=${code} signal=${signal} exitedAfterDisconnect=${w.exitedAfterDisconnect}`);
  });
  cluster.on('message', (w, msg) => {
    if (msg === 'got slow request') {
      console.log('slow request is in a worker, sending SIGTERM to the primary');
      process.kill(process.pid, 'SIGTERM');
    }
  });

  process.on('SIGTERM', () => {
    console.log('SIGTERM handler: cluster.disconnect()');
    cluster.disconnect(() => {
      results.callback = `called, workers ${JSON.stringify(Object.keys(cluster.workers))}`;
    });
    const sock = net.connect(port, '127.0.0.1');
    sock.on('connect', () => { results.refused = 'connected'; sock.destroy(); });
    sock.on('error', (err) => { results.refused = err.code; });
  });

  function slowRequest() {
    http.get({ host: '127.0.0.1', port, path: '/slow', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => { results.response = `${res.statusCode} ${body}`; });
    }).on('error', (err) => { results.response = `error ${err.code}`; });
  }

  cluster.fork();
  cluster.fork();
} else {
  const server = http.createServer((req, res) => {
    process.send('got slow request');
    setTimeout(() => {
      res.setHeader('Connection', 'close');
      res.end('slow done');
    }, SLOW_MS);
  });
  server.listen(0, '127.0.0.1');
}

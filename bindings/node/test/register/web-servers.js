'use strict';
// express, fastify and ws servers in the workers: two workers listen on one port (port 0, so
// the cluster picks it and shares it) and the primary's clients get their answers from them.
//   node [--require corral/register] web-servers.js express|fastify|ws
const common = require('./common');

if (common.runAsTestFile(__filename)) return;
const cluster = require('cluster');
const http = require('http');

const WORKERS = 2;
const REQUESTS = 10;
const kind = process.argv[2];
if (!['express', 'fastify', 'ws'].includes(kind)) {
  console.error(`usage: web-servers.js express|fastify|ws (got ${kind})`);
  process.exit(2);
}

if (cluster.isPrimary) {
  common.armTimeout();
  console.log(`runtime: ${common.runtime(cluster)}`);
  let port;
  const listening = new Promise((resolve) => {
    let n = 0;
    cluster.on('listening', (worker, address) => {
      port = address.port;
      if (++n === WORKERS) resolve();
    });
  });
  common.setStage('waiting for the workers to listen');
  // A worker's hello (sent from its listen callback) and its 'listening' may arrive in either order.
  Promise.all([common.collectHellos(cluster, WORKERS), listening]).then(async ([hellos]) => {
    console.log(`workers on corral: ${common.onCorral(hellos)}`);
    common.setStage(`sending ${REQUESTS} ${kind} requests`);
    const answers = [];
    for (let i = 0; i < REQUESTS; i++) answers.push(await (kind === 'ws' ? wsRoundTrip(port, i) : get(port, i)));
    // Which worker answered is the scheduler's call; that each answer is its own worker's is not.
    const good = answers.filter((a, i) => new RegExp(`^${kind} worker (\\d+) \\(corral id (\\1|undefined)\\): ${i}$`).test(a));
    console.log(`${kind}: ${good.length} of ${REQUESTS} answered by a worker`);
    if (good.length !== REQUESTS) console.log(`answers: ${JSON.stringify(answers)}`);
    common.finish(cluster);
  });
  for (let i = 0; i < WORKERS; i++) cluster.fork();
} else {
  const me = `${kind} worker ${cluster.worker.id} (corral id ${common.corralWorkerId})`;
  const ready = () => process.send(common.workerHello(cluster));
  if (kind === 'express') {
    const app = require('express')();
    app.get('/echo/:n', (req, res) => res.type('text').send(`${me}: ${req.params.n}`));
    app.listen(0, '127.0.0.1', ready);
  } else if (kind === 'fastify') {
    const app = require('fastify')();
    app.get('/echo/:n', async (req) => `${me}: ${req.params.n}`);
    app.listen({ port: 0, host: '127.0.0.1' }).then(ready);
  } else {
    const { WebSocketServer } = require('ws');
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' }, ready);
    wss.on('connection', (ws) => ws.on('message', (data) => ws.send(`${me}: ${data}`)));
  }
}

function get(port, i) {
  return new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path: `/echo/${i}`, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve(body));
    }).on('error', (e) => resolve(`error: ${e.message}`));
  });
}

function wsRoundTrip(port, i) {
  const WebSocket = require('ws');
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`);
    ws.on('open', () => ws.send(String(i)));
    ws.on('message', (data) => {
      ws.close();
      resolve(String(data));
    });
    ws.on('error', (e) => resolve(`error: ${e.message}`));
  });
}

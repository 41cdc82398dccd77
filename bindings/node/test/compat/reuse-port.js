'use strict';
// Scenario: listen({ port: 0, host: '127.0.0.1', reusePort: true }) in two workers. Node 22.12+
// turns reusePort: true into exclusive: true, so each worker binds its own SO_REUSEPORT socket
// (port 0: a port of its own, no 'listening' event in the primary, and the server outlives
// cluster.disconnect(), so the workers close it themselves). Node 20 has no reusePort: the
// option is ignored and both listen through the primary on one port. Hence two expectations:
// expected/reuse-port.txt and expected/reuse-port.node20.txt.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const net = require('node:net');

const N = 2;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  let listeningEvents = 0;
  cluster.on('listening', () => { listeningEvents++; });
  const ports = new Map(); // worker id -> the port its server.address() reports
  const exits = [];
  for (let i = 0; i < N; i++) {
    const w = cluster.fork();
    w.on('message', (m) => {
      ports.set(w.id, m.port);
      if (ports.size === N) setTimeout(check, 200); // 'listening' events, if any, arrive first
    });
    w.on('exit', (code, signal) => {
      exits.push(`${code}/${signal}`);
      if (exits.length === N) console.log(`workers exited ${exits.join(',')}`);
    });
  }

  function check() {
    const all = [...ports.values()];
    console.log(`workers reporting ${all.length}`);
    console.log(`same port ${all.every((p) => p === all[0])}`);
    console.log(`'listening' events ${listeningEvents}`);
    Promise.all(all.map((port) => new Promise((resolve) => {
      let got = '';
      net.connect(port, '127.0.0.1').setEncoding('utf8').on('data', (d) => { got += d; })
        .on('end', () => resolve(got)).on('error', (e) => resolve(e.code));
    }))).then((answers) => {
      console.log(`connect to each reported port: ${answers.map((a) => (a === 'ok' ? 'ok' : a)).join(', ')}`);
      for (const w of Object.values(cluster.workers)) w.send('close');
      cluster.disconnect();
    });
  }
} else {
  const server = net.createServer((s) => s.end('ok'));
  server.listen({ port: 0, host: '127.0.0.1', reusePort: true }, () => {
    process.send({ port: server.address().port });
  });
  process.on('message', (m) => {
    if (m === 'close') server.close();
  });
}

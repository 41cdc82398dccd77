'use strict';
// CORRAL_MAX_LISTENERS_PER_WORKER=2: a worker's third server fails with EINVAL, the first two
// serve, and the primary carries on.
const cluster = require(process.env.CORRAL_MODULE);
const http = require('node:http');
if (cluster.isPrimary) {
  const timer = setTimeout(() => {
    console.log('TIMEOUT');
    process.exit(99);
  }, 20000);
  const w = cluster.fork();
  w.on('message', (m) => {
    console.log(m);
    if (m.startsWith('done')) {
      clearTimeout(timer);
      w.kill();
    }
  });
} else {
  const servers = [0, 1, 2].map(() => http.createServer((req, res) => res.end('ok')));
  let settled = 0;
  const ports = [];
  servers.forEach((s, i) => {
    s.on('error', (e) => {
      process.send(`server ${i} error ${e.code} ${e.syscall}`);
      if (++settled === 3) check();
    });
    s.listen(0, '127.0.0.1', () => {
      ports.push(s.address().port);
      process.send(`server ${i} listening`);
      if (++settled === 3) check();
    });
  });
  function check() {
    Promise.all(ports.map((port) => new Promise((resolve) => {
      http.get({ host: '127.0.0.1', port }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      }).on('error', (e) => resolve(e.code));
    }))).then((codes) => process.send(`done ${codes.join(' ')}`));
  }
}
